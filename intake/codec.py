"""Payload encryption: support's free text and customers' details never sit in Temporal
histories in plain text, yet every client and worker holding the keys reads them as before.

Each payload is sealed with AES-GCM under the first configured key; its id travels in the
payload's metadata, so after a rotation (`PAYLOAD_KEYS="k2:...,k1:..."`) payloads sealed with
k1 still open. Payloads without the encrypted encoding (histories recorded before encryption
was turned on) pass through unchanged.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
)

from config.converter import compact_data_converter
from config.settings import Settings

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
NONCE_BYTES = 12  # AES-GCM's standard nonce, random per payload


class PayloadKeyError(ValueError):
    """A payload cannot be opened with the configured keys (unknown key id, or tampered)."""


class EncryptionCodec(PayloadCodec):
    """AES-GCM over whole serialized payloads; the first key encrypts, every key decrypts.

    Stateless apart from its keys: safe to share between clients, workers and the codec
    server."""

    def __init__(self, keys: Sequence[tuple[str, bytes]]) -> None:
        if not keys:
            raise ValueError("an encryption codec needs at least one key")
        self._key_id, key = keys[0]
        self._encrypting = AESGCM(key)
        self._decrypting = {key_id: AESGCM(key) for key_id, key in keys}

    @property
    def key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each payload sealed whole (its metadata too), labelled with the key's id."""
        return [self._seal(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Each encrypted payload opened; any other payload as it is."""
        return [self._open(p) if p.metadata.get("encoding") == ENCODING else p for p in payloads]

    def _seal(self, payload: Payload) -> Payload:
        nonce = os.urandom(NONCE_BYTES)
        key_id = self._key_id.encode()
        # The key id is authenticated too: a payload relabelled with another id fails to open.
        sealed = self._encrypting.encrypt(nonce, payload.SerializeToString(), key_id)
        return Payload(metadata={"encoding": ENCODING, KEY_ID: key_id}, data=nonce + sealed)

    def _open(self, payload: Payload) -> Payload:
        key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
        aes = self._decrypting.get(key_id)
        if aes is None:
            raise PayloadKeyError(
                f"payload encrypted with key {key_id!r}, which PAYLOAD_KEYS does not hold"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            return Payload.FromString(aes.decrypt(nonce, sealed, key_id.encode()))
        except InvalidTag:
            raise PayloadKeyError(f"payload under key {key_id!r} fails authentication") from None


class WithoutKeys(PayloadCodec):
    """No keys configured: nothing is encrypted, and an encrypted payload met anyway (a
    client pointed at a service that encrypts) is one clear error, not the converter's
    "Unknown payload encoding"."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        for payload in payloads:
            if payload.metadata.get("encoding") == ENCODING:
                key_id = payload.metadata.get(KEY_ID, b"").decode(errors="replace")
                raise PayloadKeyError(
                    f"payloads are encrypted (key {key_id!r}) and PAYLOAD_KEYS is unset: set it "
                    "to the service's keys (make run keeps its own in .dunning/demo-payload-key "
                    "and uses it when TEMPORAL_ADDRESS is unset)"
                )
        return list(payloads)


def codec(settings: Settings) -> EncryptionCodec | None:
    """The settings' encryption codec, or None when they configure no key."""
    keys = settings.payload_key_ring()
    return EncryptionCodec(keys) if keys else None


def data_converter(settings: Settings) -> DataConverter:
    """Pydantic payloads, encrypted when the settings hold keys: for every client and worker.

    Failure messages and stack traces are encrypted too (they may quote what failed)."""
    payload_codec = codec(settings)
    if payload_codec is None:
        return dataclasses.replace(compact_data_converter, payload_codec=WithoutKeys())
    return dataclasses.replace(
        compact_data_converter,
        payload_codec=payload_codec,
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
