"""`dunning simulate`: compare policies offline on simulated cases.

    dunning simulate --cases 2000 --seed 7 --policy standard --policy demo@1 [--json]

Prints one row per policy (recovered revenue and its ratio to the first policy, recovery
rate, charges, messages, median days to recover, customers lost, collections), or the whole
report as JSON. Smart-timed policies plan with `--retry-model FILE`, else with a model
trained on simulated history. A mistake (unknown policy, bad world path) is one line on
stderr, exit 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime
from pathlib import Path

from pydantic import ValidationError

from activities.retry_training import ModelFileError, read_model
from config.errors import explain
from config.policies import PolicyError, find_policy, load_policies
from config.settings import Settings
from simulation.simulator import (
    DEFAULT_START,
    DEFAULT_WORLD,
    PolicyResult,
    SimulationError,
    SimulationReport,
    compare,
)
from simulation.world import WorldError
from workflows.money import format_money
from workflows.policy import Policy

PROG = "dunning simulate"
POLICY_SPEC = re.compile(r"^(?P<name>[a-z][a-z0-9_-]*)(?:@(?P<version>[1-9][0-9]*))?$")


class _UsageError(Exception):
    """A malformed command line; printed as one line."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse would print usage and exit 2
        raise _UsageError(message)


def main(argv: list[str]) -> int:
    """Run `dunning simulate` with `argv` (the arguments after `simulate`); the exit code."""
    try:
        args = parser().parse_args(argv)
        policies = _policies(args.policy or ["standard"])
        model = read_model(args.retry_model) if args.retry_model else None
        report = compare(policies, args.world, args.cases, args.seed, args.start, retry_model=model)
    except SystemExit as done:  # --help
        return int(done.code or 0)
    except ValidationError as err:
        return _fail(f"invalid settings: {explain(err)}")
    except (
        _UsageError,
        PolicyError,
        WorldError,
        SimulationError,
        ModelFileError,
        ValueError,
        OSError,
    ) as err:
        return _fail(str(err))
    if args.json:
        print(report.model_dump_json(indent=2, exclude={"policies": {"__all__": {"runs"}}}))
    else:
        print_report(report)
    return 0


def parser() -> argparse.ArgumentParser:
    """The command line of `dunning simulate`."""
    cli = _Parser(prog=PROG, description="Compare dunning policies on simulated cases.")
    cli.add_argument(
        "--world",
        default=DEFAULT_WORLD,
        help=f"world factory as package.module:factory (default {DEFAULT_WORLD})",
    )
    cli.add_argument("--cases", type=_count, default=1000, help="cases to simulate (1000)")
    cli.add_argument("--seed", type=int, default=1, help="seed of cases and world (1)")
    cli.add_argument(
        "--policy",
        action="append",
        metavar="NAME[@VERSION]",
        help="a policy to compare, repeatable; the first is the baseline (default standard)",
    )
    cli.add_argument(
        "--start",
        type=_start,
        default=DEFAULT_START,
        help=f"first failure date, ISO (default {DEFAULT_START:%Y-%m-%d})",
    )
    cli.add_argument(
        "--retry-model",
        type=Path,
        metavar="FILE",
        help="retry-model-v<N>.json for smart-timed policies (default: trained in the world)",
    )
    cli.add_argument("--json", action="store_true", help="print the report as JSON")
    return cli


def print_report(report: SimulationReport) -> None:
    """The report as a plain text table."""
    print(f"{report.cases} cases, world {report.world}, seed {report.seed}")
    if report.retry_model:
        print(f"smart retry timing: {report.retry_model}")
    header = [
        "policy",
        "recovered",
        "vs first",
        "rate",
        "charges",
        "messages",
        "median days",
        "lost",
        "collections",
    ]
    rows = [_row(result) for result in report.policies]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        # The policy name reads left-aligned, figures right-aligned.
        cells = zip(row, widths, strict=True)
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(cells)))


def _row(result: PolicyResult) -> list[str]:
    revenue = ", ".join(format_money(v, c) for c, v in result.recovered_revenue.items())
    ratio = "-" if result.revenue_ratio is None else f"{result.revenue_ratio:.2f}x"
    days = "-" if result.median_days_to_recover is None else f"{result.median_days_to_recover:g}"
    return [
        result.policy,
        revenue or "-",
        ratio,
        f"{result.recovery_rate:.1%}",
        str(result.charges_attempted),
        str(result.messages_sent),
        days,
        str(result.customers_lost),
        str(result.collections),
    ]


def _policies(specs: list[str]) -> list[Policy]:
    settings = Settings()
    known = load_policies(settings.policies_dir, settings.declines_file)
    chosen = []
    for spec in specs:
        match = POLICY_SPEC.match(spec)
        if match is None:
            raise _UsageError(f"--policy {spec!r}: expected NAME or NAME@VERSION, e.g. standard@1")
        version = match["version"]
        chosen.append(find_policy(known, match["name"], int(version) if version else None))
    return chosen


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _start(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _fail(message: str) -> int:
    print(f"{PROG}: {' '.join(message.split())}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
