"""A/B comparison of a segment's variants: recovery rates and whether a difference is real.

Pure: counts in, verdicts out. The control is the variant named `control` by the caller, or
else the first variant in alphabetical order, so the answer never depends on the order rows
came back from the database (name the control arm `control` or `a-...` and it comes first).
Each other variant's rate is compared with the control's by the normal approximation for the
difference of two proportions, at 95% confidence:

    d = p_v - p_c,  se = sqrt(p_c (1 - p_c) / n_c + p_v (1 - p_v) / n_v),  d ± 1.96 se

An interval that contains 0 is "not significant". The approximation is rough for small arms
(a few dozen cases) and for rates near 0% or 100%: read those verdicts with care.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

from pydantic import BaseModel, Field, model_validator

Z_95 = 1.96
"""The two-sided 95% quantile of the standard normal distribution, as usually rounded."""


class Arm(BaseModel):
    """One variant's counts: its cases and how many of them were recovered."""

    variant: str
    cases: int = Field(ge=0)
    recovered: int = Field(ge=0)

    @model_validator(mode="after")
    def _recovered_within_cases(self) -> Arm:
        if self.recovered > self.cases:
            raise ValueError(f"variant {self.variant}: {self.recovered} recovered of {self.cases}")
        return self

    @property
    def rate(self) -> float | None:
        """Recovered cases over cases; None for an arm without cases."""
        return self.recovered / self.cases if self.cases else None


class Verdict(StrEnum):
    """What a variant's difference from the control means."""

    CONTROL = "control"
    HIGHER = "significantly higher"
    LOWER = "significantly lower"
    NOT_SIGNIFICANT = "not significant"
    NO_CASES = "no cases"
    """The variant or the control has no cases: nothing to compare."""


class ArmComparison(BaseModel):
    """A variant's recovery rate and, but for the control, its difference from the control
    (a share: 0.05 is five percentage points) with the 95% confidence interval."""

    variant: str
    cases: int
    recovered: int
    recovery_rate: float | None
    difference: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    verdict: Verdict


class ABComparison(BaseModel):
    """A segment's experiment: every variant against the control, control first."""

    segment: str
    control: str
    confidence: float = 0.95
    arms: list[ArmComparison]


def difference_interval(control: Arm, variant: Arm, z: float = Z_95) -> tuple[float, float, float]:
    """The variant's rate minus the control's, and the interval's low and high ends.

    Both arms need at least one case."""
    p_c, p_v = control.rate, variant.rate
    if p_c is None or p_v is None:
        raise ValueError("both arms need cases to compare their rates")
    difference = p_v - p_c
    se = math.sqrt(p_c * (1 - p_c) / control.cases + p_v * (1 - p_v) / variant.cases)
    return difference, difference - z * se, difference + z * se


def compare_variants(segment: str, arms: Sequence[Arm], control: str | None = None) -> ABComparison:
    """Each variant of `segment` against the control (`control`, else the first by name)."""
    if not arms:
        raise ValueError(f"segment {segment}: no variants to compare")
    by_name = {arm.variant: arm for arm in arms}
    if len(by_name) != len(arms):
        raise ValueError(f"segment {segment}: a variant appears twice")
    control = control if control is not None else min(by_name)
    if control not in by_name:
        raise ValueError(f"segment {segment}: no variant named {control}")
    base = by_name[control]
    ordered = [base] + [by_name[name] for name in sorted(by_name) if name != control]
    results = [_compared(arm, base) for arm in ordered]
    return ABComparison(segment=segment, control=control, arms=results)


def _compared(arm: Arm, control: Arm) -> ArmComparison:
    figures = {"variant": arm.variant, "cases": arm.cases, "recovered": arm.recovered}
    figures["recovery_rate"] = arm.rate
    if arm is control:
        return ArmComparison(**figures, verdict=Verdict.CONTROL)
    if not arm.cases or not control.cases:
        return ArmComparison(**figures, verdict=Verdict.NO_CASES)
    difference, low, high = difference_interval(control, arm)
    if low <= 0 <= high:
        verdict = Verdict.NOT_SIGNIFICANT
    else:
        verdict = Verdict.HIGHER if difference > 0 else Verdict.LOWER
    return ArmComparison(
        **figures, difference=difference, ci_low=low, ci_high=high, verdict=verdict
    )
