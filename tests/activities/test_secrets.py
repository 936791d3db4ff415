"""`serve` and `worker` refuse to run with a secret that is unset or guessable, except in the
explicit demo mode, whose links are signed with a random secret it keeps."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from activities.notify.links import InvalidToken, make_token, verify_token
from config.settings import SecretsProblem, Settings

DUNNING = str(Path(sys.executable).parent / "dunning")
STRONG = "0f1c6d2b9a7e4c3f8d5a1b2c"
NOW = datetime(2026, 11, 1, tzinfo=UTC)


def settings(tmp_path: Path, **values: object) -> Settings:
    """Settings from `values` alone: no environment variable or .env file leaks in."""
    defaults: dict[str, object] = {
        "self_service_secret": None,
        "stripe_webhook_secret": None,
        "billing_events_secret": None,
        "demo_mode": False,
        "demo_secret_file": tmp_path / "demo-self-service-secret",
    }
    return Settings(_env_file=None, **{**defaults, **values})


def test_worker_needs_a_self_service_secret(tmp_path: Path):
    assert settings(tmp_path).secret_problems(serving=False) == ["SELF_SERVICE_SECRET is not set"]
    assert settings(tmp_path, self_service_secret=STRONG).secret_problems(serving=False) == []


@pytest.mark.parametrize(
    "value, why",
    [
        ("dev-only-self-service-secret", "is a known default"),
        ("changeme", "is a known default"),
        ("Secret", "is a known default"),
        ("short-secret-15", "is shorter than 16 characters"),
        ("                         ", "is not set"),
    ],
)
def test_known_or_short_secrets_are_refused(tmp_path: Path, value: str, why: str):
    problems = settings(tmp_path, self_service_secret=value).secret_problems(serving=False)

    assert problems == [f"SELF_SERVICE_SECRET {why}"]


def test_serving_needs_a_way_for_billing_events_to_come_in(tmp_path: Path):
    ready = settings(tmp_path, self_service_secret=STRONG)

    assert ready.secret_problems(serving=True) == [
        "set STRIPE_WEBHOOK_SECRET or BILLING_EVENTS_SECRET, or no billing event can come in"
    ]
    events = settings(tmp_path, self_service_secret=STRONG, billing_events_secret=STRONG)
    assert events.secret_problems(serving=True) == []


def test_serving_needs_the_secrets_of_the_configured_providers(tmp_path: Path):
    configured = settings(
        tmp_path,
        self_service_secret=STRONG,
        billing_events_secret="changeme",
        gateway="stripe",
        stripe_api_key="sk_test_123",
        email_provider="sendgrid",
        sendgrid_api_key="SG.key",
        sms_provider="twilio",
        twilio_account_sid="AC123",
        twilio_auth_token="0123456789",
        twilio_from_number="+15005550006",
    )

    assert configured.secret_problems(serving=True) == [
        "STRIPE_WEBHOOK_SECRET is not set",
        "TWILIO_AUTH_TOKEN is shorter than 16 characters",
        "BILLING_EVENTS_SECRET is a known default",
        "SENDGRID_WEBHOOK_PUBLIC_KEY is not set",
    ]
    assert configured.secret_problems(serving=False) == []  # the worker verifies nothing


def test_in_app_webhooks_need_a_strong_secret(tmp_path: Path):
    product = settings(
        tmp_path,
        self_service_secret=STRONG,
        in_app_webhook_url="https://product.example.com/hooks",
        in_app_webhook_secret="secret",
    )

    assert product.secret_problems(serving=False) == ["IN_APP_WEBHOOK_SECRET is a known default"]


def test_the_refusal_is_one_line_naming_every_problem(tmp_path: Path):
    with pytest.raises(SecretsProblem) as refused:
        settings(tmp_path, self_service_secret="changeme").check_secrets(serving=True)

    message = str(refused.value)
    assert message.startswith("refusing to start: SELF_SERVICE_SECRET is a known default; set ")
    assert "\n" not in message
    assert "changeme" not in message  # a secret is never printed, not even a weak one


def test_an_unset_secret_signs_with_one_nobody_knows(tmp_path: Path):
    first, second = settings(tmp_path), settings(tmp_path)
    secret = first.self_service_secret.get_secret_value()
    token = make_token("in_1", secret, NOW, timedelta(days=1))

    assert verify_token(token, secret, NOW) == "in_1"
    with pytest.raises(InvalidToken):
        verify_token(token, second.self_service_secret.get_secret_value(), NOW)
    with pytest.raises(InvalidToken):
        verify_token(token, "dev-only-self-service-secret", NOW)


def test_demo_mode_needs_no_secret_and_keeps_its_own(tmp_path: Path):
    demo = settings(tmp_path).in_demo_mode()
    kept = tmp_path / "demo-self-service-secret"

    assert demo.secret_problems(serving=True) == []
    assert kept.read_text().strip() == demo.self_service_secret.get_secret_value()
    assert len(demo.self_service_secret.get_secret_value()) >= 32
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    restarted = settings(tmp_path, demo_mode=True)  # DEMO_MODE=true, after a restart
    assert restarted.self_service_secret == demo.self_service_secret
    assert restarted.secret_problems(serving=True) == []


def test_demo_mode_keeps_a_secret_that_is_set(tmp_path: Path):
    demo = settings(tmp_path, self_service_secret=STRONG).in_demo_mode()

    assert demo.self_service_secret.get_secret_value() == STRONG
    assert not (tmp_path / "demo-self-service-secret").exists()


def test_demo_mode_comes_from_the_environment(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("DEMO_MODE", "true")
    monkeypatch.setenv("DEMO_SECRET_FILE", str(tmp_path / "kept"))
    monkeypatch.delenv("SELF_SERVICE_SECRET", raising=False)

    demo = Settings(_env_file=None)

    assert demo.demo_mode
    assert (tmp_path / "kept").read_text().strip() == demo.self_service_secret.get_secret_value()


def bare_env(tmp_path: Path) -> dict[str, str]:
    """An environment with no secret, a Temporal address nobody answers and a fresh store."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.endswith(("_SECRET", "_TOKEN", "_KEY")) and name != "DEMO_MODE"
    }
    return {
        **env,
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
    }


@pytest.mark.parametrize(
    "command",
    [
        [DUNNING, "serve"],
        [DUNNING, "worker"],
        [DUNNING, "worker", "--serve"],
        [sys.executable, str(Path(__file__).parents[2] / "worker.py")],
    ],
    ids=["serve", "worker", "worker --serve", "python worker.py"],
)
def test_serve_and_worker_refuse_to_start_without_secrets(tmp_path: Path, command: list[str]):
    done = subprocess.run(
        command, cwd=tmp_path, env=bare_env(tmp_path), capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert done.stderr.count("\n") == 1, done.stderr
    assert "refusing to start: SELF_SERVICE_SECRET is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_refuses_a_public_default_secret(tmp_path: Path):
    env = {
        **bare_env(tmp_path),
        "SELF_SERVICE_SECRET": "dev-only-self-service-secret",
        "BILLING_EVENTS_SECRET": STRONG,
    }
    done = subprocess.run(
        [DUNNING, "serve"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 1
    assert done.stderr.strip() == (
        "dunning: refusing to start: SELF_SERVICE_SECRET is a known default "
        "(see README, Production; or run the demo: `dunning worker --demo`)"
    )
