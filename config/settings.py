"""Service settings from the environment (or a `.env` file), with embedded defaults.

With nothing set, the service runs on one machine with no accounts: SQLite, the bundled
Temporal dev server, the simulated gateway and the outbox notifier.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

CONFIG_DIR = Path(__file__).parent


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

    policies_dir: Path = CONFIG_DIR / "policies"
    declines_file: Path = CONFIG_DIR / "declines.toml"
    segments_file: Path = CONFIG_DIR / "segments.toml"
    retry_models_dir: Path = Field(
        default=Path(".dunning/models"),
        description="Where `dunning model train` writes retry-model-v<N>.json; smart retry "
        "timing uses the newest (none there: the policy's fixed schedule).",
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
        default="http://localhost:8000",
        description="Where providers reach this service (status callbacks, inbound SMS).",
    )

    # In-app: a notification row, plus an optional signed webhook to the product.
    in_app_webhook_url: str | None = None
    in_app_webhook_secret: SecretStr | None = None

    # At most this many messages per customer in any 7 days, across all their cases.
    messages_per_week: int = Field(default=4, ge=1)

    self_service_url: str = Field(
        default="http://localhost:8000/update-payment-method?token={token}",
        description="The page where a customer fixes their payment; {token} names the case.",
    )
    self_service_secret: SecretStr = Field(
        default=SecretStr("dev-only-self-service-secret"),
        description="Signs self-service tokens: set your own in production.",
    )
    self_service_valid_days: int = Field(default=30, ge=1)
    unsubscribe_url: str = Field(
        default="",
        description="One-click email unsubscribe ({token}); default: PUBLIC_BASE_URL/unsubscribe.",
    )

    @property
    def unsubscribe_link(self) -> str:
        """Where an email's unsubscribe link and List-Unsubscribe header point."""
        return self.unsubscribe_url or f"{self.public_base_url}/unsubscribe?token={{token}}"

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY, or neither")
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
        return self

    @property
    def uses_dev_server(self) -> bool:
        """True when no cluster is configured and the bundled dev server should run."""
        return self.temporal_address is None
