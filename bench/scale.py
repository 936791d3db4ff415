"""Every figure of the cost-and-scale bounds (README, "Performance") from one run.

    .venv/bin/python bench/scale.py [--memory-cases 10000] [--load-cases 10000]
        [--database-url postgresql://...]

Runs the benches one after another, each on its own servers, and ends with one table: the
billable actions and history size per outcome path (`actions.py`), case start plus first step
against a no-op workflow (`throughput.py`), worker memory with sleeping cases (`memory.py`),
the weekly cap's count at a million message rows on PostgreSQL (`weekly_cap.py`), and cases
across two workers with injected faults (`load.py`). With the issue's sizes (10,000 sleeping
cases, 10,000 load cases) a 2-core machine takes more than an hour; smaller sizes print the
same figures per case. A benchmark, not a test: it prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SUMMARY_WORDS = ("bound", "ratio", "cases/s", "per case", "duplicates", "p50", "RSS")
"""A line of a bench's output that names one of these is a figure for the closing table."""


def run(name: str, *args: str) -> list[str]:
    """Run one bench, echoing its output; the lines that carry figures."""
    command = [sys.executable, str(BENCH / name), *args]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    output = [line for line in done.stdout.splitlines() if "WARN" not in line]
    print("\n".join(output), flush=True)
    if done.returncode != 0:
        print(done.stderr[-2000:], flush=True)
        return [f"{name}: failed (exit {done.returncode})"]
    figures = [line for line in output if any(word in line for word in SUMMARY_WORDS)]
    return [f"{name} ({time.monotonic() - began:.0f} s):", *(f"  {line}" for line in figures)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memory-cases", type=int, default=10_000)
    parser.add_argument("--load-cases", type=int, default=10_000)
    parser.add_argument("--database-url", help="PostgreSQL for the cap and load")
    args = parser.parse_args()
    database = ["--database-url", args.database_url] if args.database_url else []
    summary = [
        *run("actions.py"),
        *run("throughput.py"),
        *run("memory.py", "--cases", str(args.memory_cases)),
        *run("weekly_cap.py", *database),
        *run("load.py", "--cases", str(args.load_cases), *database),
    ]
    print("\nSummary\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
