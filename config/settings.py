"""Service settings from the environment (or a `.env` file), with embedded defaults.

With nothing set, the service runs on one machine with no accounts: SQLite, the bundled
Temporal dev server, the simulated gateway and the outbox notifier. Only its secrets have no
usable default: `serve` and `worker` refuse to start without them outside demo mode
(`Settings.check_secrets`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from datetime import time
from pathlib import Path
from typing import Literal

from pydantic import Field, PrivateAttr, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_DIR = Path(__file__).parent

# Secrets printed in docs, samples and our own old default: they protect nothing.
KNOWN_DEFAULT_SECRETS = frozenset(
    {
        "dev-only-self-service-secret",
        "changeme",
        "change-me",
        "change_me",
        "secret",
        "password",
        "default",
        "example",
        "test",
        "whsec_test",
        "whsec_...",
        "your-secret-here",
    }
)
MIN_SECRET_LENGTH = 16


class SecretsProblem(ValueError):
    """The service would run with a secret that is unset or guessable; one line says which."""


def demo_secret(path: Path) -> str:
    """The demo's self-service secret: random the first time, then read back from `path`
    (mode 0600), so the links in demo messages survive a restart."""
    try:
        kept = path.read_text().strip()
    except FileNotFoundError:
        kept = ""
    if len(kept) >= MIN_SECRET_LENGTH:
        return kept
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    draft = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    os.replace(draft, path)  # atomic: a reader sees no secret or the whole one
    return secret


AES_KEY_BYTES = (16, 24, 32)  # AES-128, AES-192, AES-256
PAYLOAD_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def payload_key_ring(text: str) -> list[tuple[str, bytes]]:
    """`PAYLOAD_KEYS` ("k2:<base64>,k1:<base64>") as (key id, AES key) pairs, the encrypting
    key first; a `ValueError` naming the bad entry (never the key) otherwise."""
    ring: list[tuple[str, bytes]] = []
    for number, entry in enumerate(text.split(","), start=1):
        key_id, colon, encoded = entry.strip().partition(":")
        if not colon or not PAYLOAD_KEY_ID.fullmatch(key_id):
            raise ValueError(
                f"entry {number} is not <key id>:<base64 key> (ids: letters, digits, . _ -)"
            )
        if any(key_id == known for known, _ in ring):
            raise ValueError(f"key id {key_id!r} is given twice")
        try:
            key = base64.b64decode(encoded.strip(), validate=True)
        except binascii.Error:
            raise ValueError(f"key {key_id!r} is not valid base64") from None
        if len(key) not in AES_KEY_BYTES:
            raise ValueError(
                f"key {key_id!r} is {len(key)} bytes; AES needs 16, 24 or 32 "
                "(make one: openssl rand -base64 32)"
            )
        ring.append((key_id, key))
    return ring


def weakness(value: str) -> str | None:
    """Why `value` is no secret (a known default, or too short to resist guessing), or None."""
    if value.strip().lower() in KNOWN_DEFAULT_SECRETS:
        return "is a known default"
    if len(value.strip()) < MIN_SECRET_LENGTH:
        return f"is shorter than {MIN_SECRET_LENGTH} characters"
    return None


class Settings(BaseSettings):
    """Everything an operator may set; environment variable names are the field names."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = "sqlite:///.dunning/dunning.db"

    temporal_address: str | None = Field(
        default=None, description="host:port of a Temporal cluster; unset runs the dev server."
    )
    temporal_namespace: str = "default"
    temporal_api_key: SecretStr | None = None
    temporal_tls: bool = False
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    task_queue: str = "dunning"

    dev_server_db: Path = Path(".dunning/temporal.db")
    dev_server_port: int = 7233
    dev_server_ui_port: int = 8233

    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(
        default=None,
        description="Serve the worker's Prometheus /metrics (dunning's and the SDK's) here; "
        "unset: none (the receiver always serves /metrics on its own port).",
    )
    temporal_metrics_address: str | None = Field(
        default=None,
        description="host:port the Temporal SDK's own Prometheus exporter binds; unset with "
        "METRICS_PORT set: a free local port, read through the worker's /metrics.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text", description="json: one object per line (time, level, logger, case id)."
    )
    # Worker tuning (README, "Performance").
    worker_activity_slots: int = Field(
        default=16,
        ge=1,
        le=1000,
        description="Activities one worker runs at once, and the threads it runs them on: an "
        "activity accepted beyond the threads would wait with its timeout running.",
    )
    worker_cache_size: int = Field(
        default=500,
        ge=0,
        le=100_000,
        description="Cases a worker keeps in memory between steps (max_cached_workflows). A "
        "sleeping case evicted from the cache is replayed from its history when it wakes.",
    )
    worker_sandbox: bool = Field(
        default=False,
        description="Run workflows in the SDK's sandbox, which re-imports the workflow modules "
        "for every case it loads (about 60 ms of CPU and a copy of the modules per cached "
        "case). Off by default: the tests run every workflow sandboxed and replay recorded "
        "histories, which is where a nondeterministic call is caught.",
    )

    policies_dir: Path = CONFIG_DIR / "policies"
    declines_file: Path = CONFIG_DIR / "declines.toml"
    segments_file: Path = CONFIG_DIR / "segments.toml"
    retry_models_dir: Path = Field(
        default=Path(".dunning/models"),
        description="Where `dunning model train` writes retry-model-v<N>.skops; smart retry "
        "timing uses the newest (none there: the policy's fixed schedule).",
    )

    pre_dunning_file: Path = Field(
        default=CONFIG_DIR / "pre-dunning.toml",
        description="Pre-dunning's windows, channels and contact hours ([pre_dunning]).",
    )
    pre_dunning_at: time = Field(
        default=time(6, 0),
        description="When (UTC, HH:MM) the daily pre-dunning schedule scans for expiring "
        "cards and renewals; notices still wait for each customer's contact hours.",
    )

    gateway: Literal["simulated", "stripe"] = "simulated"
    stripe_api_key: SecretStr | None = Field(default=None, description="sk_live_... / rk_...")
    stripe_api_base: str | None = Field(
        default=None, description="Another Stripe API base URL (a local fake in tests)."
    )
    stripe_webhook_secret: SecretStr | None = Field(default=None, description="whsec_...")
    stripe_webhook_tolerance: int = Field(default=300, ge=1, description="Seconds.")

    billing_events_secret: SecretStr | None = Field(
        default=None, description="HMAC secret of POST /events (provider-neutral events)."
    )
    receiver_host: str = "127.0.0.1"
    receiver_port: int = 8000
    receiver_body_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds a sender has to deliver a body."
    )
    event_sweep_seconds: int = Field(
        default=60,
        ge=1,
        description="How often the worker carries out stored billing events that no delivery "
        "finished (pending while Temporal was down, or failed).",
    )

    # Email: "outbox" keeps messages in the store; "sendgrid" sends them.
    email_provider: Literal["outbox", "sendgrid"] = "outbox"
    sendgrid_api_key: SecretStr | None = None
    sendgrid_host: str = "https://api.sendgrid.com"
    sendgrid_template_ids: dict[str, str] = Field(
        default_factory=dict,
        description="Template name → SendGrid dynamic template id, to use SendGrid's templates.",
    )
    sendgrid_unsubscribe_group_id: int | None = Field(
        default=None, description="The dunning unsubscribe group (ASM)."
    )
    sendgrid_webhook_public_key: str | None = Field(
        default=None, description="Event webhook verification key (base64 ECDSA public key)."
    )
    email_from: str = "billing@example.com"
    email_from_name: str = "Billing"

    # SMS: "outbox" keeps messages in the store; "twilio" sends them.
    sms_provider: Literal["outbox", "twilio"] = "outbox"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_base_url: str | None = Field(
        default=None, description="Another Twilio API base URL (a local fake in tests)."
    )
    twilio_from_number: str | None = None
    twilio_messaging_service_sid: str | None = None
    public_base_url: str = Field(
        default="",
        description="Where customers and providers reach this service (links in messages, the "
        "recovery page, status callbacks, inbound SMS); default: http://localhost:RECEIVER_PORT.",
    )

    # Who the messages and the recovery page speak for.
    company_name: str = Field(default="Example Co", min_length=1, max_length=80)
    support_email: str = Field(
        default="support@example.com", description="Named in every message and on every page."
    )
    support_phone: str | None = Field(default=None, description="Shown beside the email.")
    brand_colour: str = Field(
        default="#1f5f99",
        pattern=r"^#[0-9A-Fa-f]{6}$",
        description="Buttons and headings (#rrggbb); dark enough for white text on it.",
    )
    logo_url: str | None = Field(
        default=None, description="An https image shown atop the recovery page and emails."
    )
    collections_agency_name: str | None = Field(
        default=None,
        max_length=80,
        description="The agency unpaid invoices pass to, named in the final notice and the "
        "collections message; unset: the company's own collections team.",
    )
    collections_contact: str | None = Field(
        default=None,
        max_length=120,
        description="Email or phone the final notice and the collections message give for a "
        "debt in collections; unset: the support contact.",
    )

    # In-app: a notification row, plus an optional signed webhook to the product.
    in_app_webhook_url: str | None = None
    in_app_webhook_secret: SecretStr | None = None

    # Outbound case events (case.opened, case.access_restricted, ...) for the product.
    outbound_webhook_url: str | None = Field(
        default=None,
        description="Where signed case events are POSTed; unset: they are stored, not sent.",
    )
    outbound_webhook_secret: SecretStr | None = Field(
        default=None, description="Signs them (Dunning-Signature); needed with the URL."
    )
    outbound_webhook_timeout: float = Field(
        default=5.0, gt=0, le=60, description="Seconds a receiver has to answer one delivery."
    )
    outbound_delivery_seconds: int = Field(
        default=15, ge=1, description="How often the worker retries events that are due."
    )

    # At most this many messages per customer in any 7 days, across all their cases.
    messages_per_week: int = Field(default=4, ge=1)

    fault_rate: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="Testing aid, never for production: the share of calls the simulated "
        "gateway and the outbox notifier fail (half as a 5xx, half as a timeout after acting), "
        "drawn per idempotency key and attempt so retries can succeed. 0: off.",
    )

    self_service_url: str = Field(
        default="",
        description="The page where a customer settles a case ({token} names the case and the "
        "purpose); default: PUBLIC_BASE_URL/recover?token={token}, served by the receiver.",
    )
    self_service_secret: SecretStr | None = Field(
        default=None,
        description="Signs self-service and unsubscribe links. Unset: a random secret for this "
        "process only (demo mode: one kept in DEMO_SECRET_FILE); `serve` and `worker` refuse "
        "to start without one outside demo mode.",
    )
    self_service_valid_days: int = Field(default=30, ge=1)
    unsubscribe_url: str = Field(
        default="",
        description="One-click email unsubscribe ({token}); default: PUBLIC_BASE_URL/unsubscribe.",
    )

    demo_mode: bool = Field(
        default=False,
        description="The local demo (`dunning worker --demo`): no secret is required and "
        "links are signed with a random secret kept in DEMO_SECRET_FILE.",
    )
    demo_secret_file: Path = Path(".dunning/demo-self-service-secret")

    payload_keys: SecretStr | None = Field(
        default=None,
        description="Encrypts every payload in Temporal histories (AES-GCM): "
        '"k2:<base64>,k1:<base64>", the first encrypts, all decrypt (rotation). Unset: with '
        "the bundled dev server, a key kept in DEMO_PAYLOAD_KEY_FILE; with a cluster, none.",
    )
    demo_payload_key_file: Path = Path(".dunning/demo-payload-key")
    codec_server_port: int = 8081
    codec_server_host: str = "127.0.0.1"
    codec_server_token: SecretStr | None = Field(
        default=None,
        description="The bearer token the Temporal UI (or `temporal --codec-auth`) must send "
        "to `dunning codec-server`.",
    )
    codec_server_origins: str = Field(
        default="",
        description="Comma-separated origins whose pages may call the codec server (CORS); "
        "default: the dev server's UI (localhost and 127.0.0.1, DEV_SERVER_UI_PORT).",
    )
    temporal_ui_url: str = Field(
        default="",
        description="The Temporal UI `dunning ui-links` links to; default: the dev server's "
        "UI, http://localhost:DEV_SERVER_UI_PORT.",
    )

    # True when SELF_SERVICE_SECRET was unset and this process signs with a random one.
    _self_service_secret_generated: bool = PrivateAttr(default=False)

    @property
    def unsubscribe_link(self) -> str:
        """Where an email's unsubscribe link and List-Unsubscribe header point."""
        return self.unsubscribe_url or f"{self.public_base_url}/unsubscribe?token={{token}}"

    @property
    def account_link(self) -> str:
        """The customer's account page: every open invoice, one payment, the card."""
        return f"{self.public_base_url}/account?token={{token}}"

    @field_validator("payload_keys")
    @classmethod
    def _payload_keys_parse(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and value.get_secret_value().strip():
            payload_key_ring(value.get_secret_value())
            return value
        return None

    def payload_key_ring(self) -> list[tuple[str, bytes]]:
        """The keys payloads are encrypted (first) and decrypted with; empty: no encryption.

        With the bundled dev server and no PAYLOAD_KEYS, a key kept beside the dev server's
        state (every `dunning` command of the demo reads the same one)."""
        if self.payload_keys is not None:
            return payload_key_ring(self.payload_keys.get_secret_value())
        if self.uses_dev_server:
            # A kept random secret of 256 bits, hashed to exactly an AES-256 key.
            kept = demo_secret(self.demo_payload_key_file)
            return [("demo", hashlib.sha256(kept.encode()).digest())]
        return []

    @property
    def ui_url(self) -> str:
        """The Temporal UI's address, without a trailing slash."""
        return (self.temporal_ui_url or f"http://localhost:{self.dev_server_ui_port}").rstrip("/")

    @property
    def codec_origins(self) -> list[str]:
        """The origins allowed to call the codec server."""
        given = [o.strip().rstrip("/") for o in self.codec_server_origins.split(",")]
        port = self.dev_server_ui_port
        return [o for o in given if o] or [f"http://localhost:{port}", f"http://127.0.0.1:{port}"]

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY, or neither")
        if not self.public_base_url:
            self.public_base_url = f"http://localhost:{self.receiver_port}"
        self.public_base_url = self.public_base_url.rstrip("/")
        if not self.public_base_url.startswith(("http://", "https://")):
            raise ValueError("PUBLIC_BASE_URL must start with http:// or https://")
        if not self.self_service_url:
            self.self_service_url = f"{self.public_base_url}/recover?token={{token}}"
        if "{token}" not in self.self_service_url:
            raise ValueError("SELF_SERVICE_URL must contain {token}")
        if self.gateway == "stripe" and self.stripe_api_key is None:
            raise ValueError("GATEWAY=stripe needs STRIPE_API_KEY")
        if self.email_provider == "sendgrid" and self.sendgrid_api_key is None:
            raise ValueError("EMAIL_PROVIDER=sendgrid needs SENDGRID_API_KEY")
        if self.sms_provider == "twilio":
            if not (self.twilio_account_sid and self.twilio_auth_token):
                raise ValueError(
                    "SMS_PROVIDER=twilio needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN"
                )
            if not (self.twilio_from_number or self.twilio_messaging_service_sid):
                raise ValueError(
                    "SMS_PROVIDER=twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
                )
        if self.outbound_webhook_url is not None:
            if not self.outbound_webhook_url.startswith(("http://", "https://")):
                raise ValueError("OUTBOUND_WEBHOOK_URL must start with http:// or https://")
            secret = self.outbound_webhook_secret
            if secret is None or not secret.get_secret_value().strip():
                raise ValueError("OUTBOUND_WEBHOOK_URL needs OUTBOUND_WEBHOOK_SECRET to sign with")
        if not (self.self_service_secret and self.self_service_secret.get_secret_value().strip()):
            if self.demo_mode:
                self.self_service_secret = SecretStr(demo_secret(self.demo_secret_file))
            else:  # links signed now verify only in this process: nobody can forge them
                self.self_service_secret = SecretStr(secrets.token_urlsafe(32))
                self._self_service_secret_generated = True
        return self

    def in_demo_mode(self) -> Settings:
        """These settings for the demo: no secret is required, and unless SELF_SERVICE_SECRET
        is set, links are signed with the demo's kept secret."""
        if not self._self_service_secret_generated:
            return self.model_copy(update={"demo_mode": True})
        demo = self.model_copy(
            update={
                "demo_mode": True,
                "self_service_secret": SecretStr(demo_secret(self.demo_secret_file)),
            }
        )
        demo._self_service_secret_generated = False
        return demo

    def secret_problems(self, serving: bool) -> list[str]:
        """What keeps these settings from running for real, one line each: a needed secret
        unset or guessable. The worker needs SELF_SERVICE_SECRET (its messages carry signed
        links); `serving` the receiver also needs the secrets of the configured providers and
        one way for billing events to come in. None in demo mode."""
        if self.demo_mode:
            return []
        generated = self._self_service_secret_generated
        needed = {"SELF_SERVICE_SECRET": None if generated else self.self_service_secret}
        if self.in_app_webhook_url:
            needed["IN_APP_WEBHOOK_SECRET"] = self.in_app_webhook_secret
        if self.outbound_webhook_url:
            needed["OUTBOUND_WEBHOOK_SECRET"] = self.outbound_webhook_secret
        inflow = []
        if serving:
            if self.gateway == "stripe":
                needed["STRIPE_WEBHOOK_SECRET"] = self.stripe_webhook_secret
            if self.sms_provider == "twilio":
                needed["TWILIO_AUTH_TOKEN"] = self.twilio_auth_token
            # Whichever of these is set verifies what comes in: it must not be guessable.
            for name, value in [
                ("STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret),
                ("BILLING_EVENTS_SECRET", self.billing_events_secret),
            ]:
                if value is not None:
                    needed.setdefault(name, value)
            if self.stripe_webhook_secret is None and self.billing_events_secret is None:
                inflow.append(
                    "set STRIPE_WEBHOOK_SECRET or BILLING_EVENTS_SECRET, or no billing event "
                    "can come in"
                )
            if self.email_provider == "sendgrid" and not self.sendgrid_webhook_public_key:
                inflow.append("SENDGRID_WEBHOOK_PUBLIC_KEY is not set")  # public: never weak
        problems = []
        for name, value in needed.items():
            if value is None or not value.get_secret_value():
                problems.append(f"{name} is not set")
            elif why := weakness(value.get_secret_value()):
                problems.append(f"{name} {why}")
        return problems + inflow

    def check_secrets(self, serving: bool) -> None:
        """Raise `SecretsProblem` (one line) unless `secret_problems` finds nothing."""
        problems = self.secret_problems(serving)
        if problems:
            raise SecretsProblem(
                f"refusing to start: {'; '.join(problems)} "
                "(see README, Production; or run the demo: `dunning worker --demo`)"
            )

    @property
    def uses_dev_server(self) -> bool:
        """True when no cluster is configured and the bundled dev server should run."""
        return self.temporal_address is None
