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
    default_policy: str = "standard"

    gateway: Literal["simulated"] = "simulated"
    notifier: Literal["outbox"] = "outbox"

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("set both TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY, or neither")
        return self

    @property
    def uses_dev_server(self) -> bool:
        """True when no cluster is configured and the bundled dev server should run."""
        return self.temporal_address is None
