"""Running `dunning` as a user would: a clean environment, one line on stderr per error."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

DUNNING = str(Path(sys.executable).parent / "dunning")
SECRETS = {
    "SELF_SERVICE_SECRET": "cli-test-self-service-secret-71f3",
    "BILLING_EVENTS_SECRET": "cli-test-billing-events-secret-0c9e",
}


def cli_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """The CLI's environment: nothing of ours from outside, a store in `tmp_path`, and no
    Temporal unless the test gives one."""
    inherited = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "USER")}
    return {
        **inherited,
        **SECRETS,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'dunning.db'}",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
        "RECEIVER_PORT": "0",
        **settings,
    }


def dunning(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run `dunning ARGS` as a user would (in `cwd`, so no stray .env is read)."""
    return subprocess.run(
        [DUNNING, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def one_line(done: subprocess.CompletedProcess, code: int, words: str) -> str:
    """The single stderr line of a command that ended with `code`, checked for `words`."""
    assert done.returncode == code, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("dunning: ") and words in lines[0], lines[0]
    return lines[0]


def zone_at_local_hour(hour: int) -> str:
    """A fixed-offset zone where it is `hour` o'clock now (wall clock): the CLI checks quiet
    hours on the real clock, the case runs on the server's."""
    offset = (hour - datetime.now(UTC).hour) % 24
    offset = offset - 24 if offset > 14 else offset
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"
