"""`dunning worker` stops cleanly on SIGTERM and Ctrl-C: the dev server it started stops with
it, with or without the receiver beside it (an orphaned dev server keeps its ports and its
database locked, and the next `make run` cannot start)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.receiver import free_port

DUNNING = str(Path(sys.executable).parent / "dunning")


def children_of(pid: int) -> list[int]:
    """The processes `pid` started, read from /proc (Linux)."""
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # a zombie has exited


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="reads /proc (Linux)")
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
@pytest.mark.parametrize("serve", [False, True], ids=["worker", "worker+receiver"])
def test_the_dev_server_stops_with_the_worker(tmp_path: Path, how: signal.Signals, serve: bool):
    env = {
        **os.environ,
        "DEV_SERVER_PORT": str(free_port()),
        "DEV_SERVER_UI_PORT": str(free_port()),
        "RECEIVER_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
    }
    command = [DUNNING, "worker", "--demo", *(["--serve"] if serve else [])]
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 60
        while "Worker polling" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        dev_servers = children_of(worker.pid)
        assert dev_servers, "the worker started no dev server"

        worker.send_signal(how)
        worker.wait(timeout=30)

        deadline = time.monotonic() + 10
        while any(alive(pid) for pid in dev_servers) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(alive(pid) for pid in dev_servers), "the dev server outlived the worker"
    finally:
        if worker.poll() is None:
            worker.kill()
