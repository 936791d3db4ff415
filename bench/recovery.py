"""Recovered revenue: the fixed schedule against smart retry timing, on the synthetic world.

    .venv/bin/python bench/recovery.py [--cases 2000] [--seed 1]

Trains a retry model on a month of simulated history under the standard policy (other
customers than those evaluated), then runs the standard (fixed) and smart policies over the
same evaluation cases and prints recovered revenue and the ratio. Then it shows how the smart
policy's result moves with the amount of training history. A benchmark: it prints figures
and asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.policies import find_policy, load_policies  # noqa: E402
from config.settings import Settings  # noqa: E402
from simulation.simulator import (  # noqa: E402
    DEFAULT_START,
    DEFAULT_WORLD,
    compare,
    train_retry_model,  # noqa: E402
)


def main(cases: int, seed: int) -> None:
    settings = Settings(_env_file=None)
    policies = load_policies(settings.policies_dir, settings.declines_file)
    fixed, smart = find_policy(policies, "standard"), find_policy(policies, "smart")

    report = compare([fixed, smart], DEFAULT_WORLD, cases, seed)
    base, tuned = report.policies[0], report.policies[1]
    print(f"{cases} cases, seed {seed}; {report.retry_model or ''}")
    for result in (base, tuned):
        print(
            f"  {result.policy:<12} recovered {result.recovered_revenue['USD'] / 100:>12,.2f} USD"
            f"  rate {result.recovery_rate:6.1%}  charges {result.charges_attempted:>6}"
        )
    print(f"  smart / fixed recovered revenue: {tuned.revenue_ratio:.3f}")

    print("smart timing by training history (cases of the month before):")
    for history in (50, 200, 500, cases):
        model = train_retry_model(fixed, DEFAULT_WORLD, history, seed, DEFAULT_START)
        run = compare([fixed, smart], DEFAULT_WORLD, cases, seed, retry_model=model).policies[1]
        print(
            f"  {history:>6} cases ({model.trained_on:>5} attempts): {run.revenue_ratio:.3f}x fixed"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args()
    main(arguments.cases, arguments.seed)
