"""`dunning policies check` reads config/pre-dunning.toml as a worker would: the windows it
loaded, or one line naming the file and the field that is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

DUNNING = str(Path(sys.executable).parent / "dunning")


def check(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DUNNING, "policies", "check"],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_shipped_windows_load(tmp_path: Path):
    done = check(tmp_path)

    assert done.returncode == 0, done.stderr
    assert "ok  pre-dunning: cards 31d, 7d ahead, renewals 14d ahead" in done.stdout


def test_a_bad_window_is_one_line_naming_the_file_and_field(tmp_path: Path):
    bad = tmp_path / "pre-dunning.toml"
    bad.write_text("[pre_dunning]\ncard_windows = [30, 0]\n")

    done = check(tmp_path, PRE_DUNNING_FILE=str(bad))

    assert done.returncode == 1
    assert f"{bad}: card_windows" in done.stderr
    assert "each window is a number of days from 1 to 366" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
