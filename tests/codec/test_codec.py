"""The encrypting codec and PAYLOAD_KEYS: round trips, rotation, pass-through of payloads
recorded before encryption, and one clear line for every bad key setting."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

from config.converter import compact_data_converter
from config.errors import explain
from config.settings import Settings
from intake.codec import ENCODING, KEY_ID, EncryptionCodec, PayloadKeyError, data_converter
from tests.support.cli import cli_env, dunning, one_line
from workflows.models import PauseRequest

K1 = os.urandom(32)
K2 = os.urandom(16)


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=text.encode())


async def test_a_payload_round_trips_and_its_sealed_form_hides_data_and_metadata() -> None:
    codec = EncryptionCodec([("k1", K1)])
    original = plain('{"reason":"lost her job"}')
    [sealed] = await codec.encode([original])
    assert sealed.metadata == {"encoding": ENCODING, KEY_ID: b"k1"}
    assert b"lost her job" not in sealed.data and b"json/plain" not in sealed.data
    assert await codec.decode([sealed]) == [original]
    [again] = await codec.encode([original])
    assert again.data != sealed.data  # a fresh nonce each time


async def test_payloads_recorded_before_encryption_pass_through_unchanged() -> None:
    codec = EncryptionCodec([("k1", K1)])
    recorded = [plain('"cus_ann"'), Payload(metadata={"encoding": b"binary/null"})]
    assert await codec.decode(recorded) == recorded


async def test_after_a_rotation_the_new_key_encrypts_and_the_old_one_still_decrypts() -> None:
    [old] = await EncryptionCodec([("k1", K1)]).encode([plain("before")])
    rotated = EncryptionCodec([("k2", K2), ("k1", K1)])
    assert await rotated.decode([old]) == [plain("before")]
    [new] = await rotated.encode([plain("after")])
    assert new.metadata[KEY_ID] == b"k2"
    with pytest.raises(PayloadKeyError, match="'k2', which PAYLOAD_KEYS does not hold"):
        await EncryptionCodec([("k1", K1)]).decode([new])


async def test_a_tampered_or_relabelled_payload_fails_to_open() -> None:
    codec = EncryptionCodec([("k2", K2), ("k1", K1)])
    [sealed] = await codec.encode([plain("x")])
    flipped = Payload(
        metadata=sealed.metadata, data=sealed.data[:-1] + bytes([sealed.data[-1] ^ 1])
    )
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID: b"k1"}, data=sealed.data)
    for bad in (flipped, relabelled):
        with pytest.raises(PayloadKeyError, match="fails authentication"):
            await codec.decode([bad])


async def test_the_data_converter_encrypts_pydantic_models_and_failures() -> None:
    settings = Settings(payload_keys=f"k1:{b64(K1)}", temporal_address="x", _env_file=None)
    converter = data_converter(settings)
    request = PauseRequest(reason="call back Friday", actor="support:kim")
    [payload] = await converter.encode([request])
    assert payload.metadata["encoding"] == ENCODING
    assert await converter.decode([payload], [PauseRequest]) == [request]
    failure = Failure()
    await converter.encode_failure(ApplicationError("card of ann@example.com declined"), failure)
    assert b"ann@example.com" not in failure.SerializeToString()
    assert str(await converter.decode_failure(failure)) == "card of ann@example.com declined"


async def test_without_keys_a_cluster_client_keeps_plain_payloads_and_names_what_it_lacks() -> None:
    converter = data_converter(Settings(temporal_address="cluster:7233", _env_file=None))
    plain = await converter.encode([{"reason": "ticket 4411"}])
    assert plain == await compact_data_converter.encode([{"reason": "ticket 4411"}])
    sealed = await data_converter(Settings(payload_keys=f"k1:{b64(K1)}", _env_file=None)).encode(
        ["x"]
    )
    with pytest.raises(PayloadKeyError, match="PAYLOAD_KEYS is unset"):
        await converter.decode(sealed)


def test_the_dev_server_keeps_one_demo_key_across_restarts(tmp_path: Path) -> None:
    kept = tmp_path / "demo-payload-key"
    first = Settings(demo_payload_key_file=kept, _env_file=None).payload_key_ring()
    again = Settings(demo_payload_key_file=kept, _env_file=None).payload_key_ring()
    assert first == again and len(first[0][1]) == 32
    assert kept.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (f"k1:{b64(os.urandom(20))}", "key 'k1' is 20 bytes; AES needs 16, 24 or 32"),
        ("k1:not*base64", "key 'k1' is not valid base64"),
        (f"k1:{b64(K1)},k1:{b64(K2)}", "key id 'k1' is given twice"),
        (b64(K1), "entry 1 is not <key id>:<base64 key>"),
        (f"k1:{b64(K1)},:{b64(K2)}", "entry 2 is not <key id>:<base64 key>"),
    ],
)
def test_bad_payload_keys_are_named_without_the_key(value: str, words: str) -> None:
    with pytest.raises(ValidationError) as bad:
        Settings(payload_keys=value, _env_file=None)
    message = explain(bad.value)
    assert message.startswith("payload_keys: ") and words in message
    assert value.rpartition(":")[2] not in message


def test_the_cli_reports_bad_payload_keys_in_one_line(tmp_path: Path) -> None:
    env = cli_env(tmp_path, PAYLOAD_KEYS=f"k1:{b64(os.urandom(8))}")
    done = dunning(env, "ui-links", cwd=tmp_path)
    one_line(done, 1, "invalid settings: payload_keys: key 'k1' is 8 bytes")
