"""How long the `dunning` command takes to start: `dunning --help` and `import cli`.

    .venv/bin/python bench/cli_startup.py [--runs 11]

Prints the median wall time of `dunning --help`, of `python -c "import cli"` and of
`python -c pass` (the interpreter alone), each run as a fresh process, with each command's
ratio to the bare interpreter. The goal is `dunning --help` under 0.3 s on the development
machine. A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DUNNING = str(Path(sys.executable).parent / "dunning")


def median_seconds(command: list[str], runs: int) -> float:
    """The median wall time of `command` over `runs` fresh processes (after one warm-up)."""
    times = []
    for _ in range(runs + 1):
        began = time.perf_counter()
        subprocess.run(command, cwd=ROOT, capture_output=True, check=True)
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])  # the first run warms the disk cache and .pyc files


def main() -> None:
    """Time the three commands and print one line each."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=11)
    runs = parser.parse_args().runs
    bare = median_seconds([sys.executable, "-c", "pass"], runs)
    print(f"python -c pass          {bare:6.3f} s (median of {runs})")
    for name, command in (
        ("dunning --help", [DUNNING, "--help"]),
        ("python -c 'import cli'", [sys.executable, "-c", "import cli"]),
    ):
        took = median_seconds(command, runs)
        print(f"{name:<23} {took:6.3f} s  ({took / bare:4.1f}x python -c pass)")


if __name__ == "__main__":
    main()
