"""Which policy a new case gets: segment rules, and A/B variants split by customer.

Pure: the starter applies it to a case's facts when the case opens; the offline simulator
applies the same rules. Segments are data (`config/segments.toml`); the first segment whose
every condition matches wins. A segment with variants splits its customers by a stable hash
of the customer id, so a customer stays in one variant across all their cases.
"""

from __future__ import annotations

import hashlib

from pydantic import BaseModel, ConfigDict, Field, model_validator

from workflows.policy import DeclineClass


class CaseFacts(BaseModel):
    """What segment rules may look at; all optional, a rule on a missing fact never matches."""

    plan: str | None = None
    amount: int | None = Field(default=None, description="Minor units of `currency`.")
    currency: str | None = None
    tenure_days: int | None = None
    lifetime_value: int | None = Field(default=None, description="Minor units of `currency`.")
    region: str | None = Field(default=None, description="ISO-3166 country, e.g. JP.")
    decline_class: DeclineClass | None = None


class Variant(BaseModel):
    """One arm of an A/B test: a policy and its share of the customers."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    policy: str
    weight: float = Field(gt=0)


class Segment(BaseModel):
    """A group of cases and the policy (or the A/B variants) they get."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    policy: str | None = None
    experiment: str | None = Field(default=None, description="Names the A/B split's hash.")
    variants: list[Variant] = Field(default_factory=list)
    plans: list[str] = Field(default_factory=list)
    currencies: list[str] = Field(default_factory=list)
    regions: list[str] = Field(default_factory=list)
    decline_classes: list[DeclineClass] = Field(default_factory=list)
    amount_min: int | None = None
    amount_max: int | None = None
    tenure_days_min: int | None = None
    tenure_days_max: int | None = None
    lifetime_value_min: int | None = None

    @model_validator(mode="after")
    def _policy_or_variants(self) -> Segment:
        if (self.policy is None) == (not self.variants):
            raise ValueError(f"segment {self.name}: give either a policy or variants")
        if self.variants and self.experiment is None:
            raise ValueError(f"segment {self.name}: variants need an experiment name")
        names = [v.name for v in self.variants]
        if len(names) != len(set(names)):
            raise ValueError(f"segment {self.name}: variant names repeat")
        return self

    def matches(self, facts: CaseFacts) -> bool:
        """True when every condition the segment sets holds for `facts`."""
        checks = [
            (self.plans, facts.plan, lambda rule, v: v in rule),
            (self.currencies, facts.currency, lambda rule, v: v.upper() in rule),
            (self.regions, facts.region, lambda rule, v: v.upper() in rule),
            (self.decline_classes, facts.decline_class, lambda rule, v: v in rule),
            (self.amount_min, facts.amount, lambda rule, v: v >= rule),
            (self.amount_max, facts.amount, lambda rule, v: v < rule),
            (self.tenure_days_min, facts.tenure_days, lambda rule, v: v >= rule),
            (self.tenure_days_max, facts.tenure_days, lambda rule, v: v < rule),
            (self.lifetime_value_min, facts.lifetime_value, lambda rule, v: v >= rule),
        ]
        for rule, value, holds in checks:
            if rule is None or rule == []:
                continue
            if value is None or not holds(rule, value):
                return False
        return True

    @property
    def policies(self) -> list[str]:
        """Every policy this segment may give a case."""
        return [self.policy] if self.policy else [v.policy for v in self.variants]


class Assignment(BaseModel):
    """The policy a case gets, and why: its segment and, in an A/B test, its variant."""

    segment: str
    policy: str
    variant: str | None = None


class SegmentRules(BaseModel):
    """The ordered segments; the last should match everything (no conditions)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    segments: list[Segment] = Field(min_length=1)

    def assign(self, facts: CaseFacts, customer_id: str) -> Assignment:
        """The first matching segment's policy, or its variant for this customer."""
        for segment in self.segments:
            if segment.matches(facts):
                if segment.policy is not None:
                    return Assignment(segment=segment.name, policy=segment.policy)
                variant = assign_variant(customer_id, segment.experiment, segment.variants)
                return Assignment(segment=segment.name, policy=variant.policy, variant=variant.name)
        raise ValueError("no segment matches this case: end the rules with a catch-all segment")


def assign_variant(customer_id: str, experiment: str, variants: list[Variant]) -> Variant:
    """The variant a customer is in: a stable hash of (experiment, customer), split by weight.

    The same customer always lands in the same variant of an experiment, and a new experiment
    name reshuffles everyone, so one test's split does not bias the next."""
    digest = hashlib.sha256(f"{experiment}:{customer_id}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") / 2**64 * sum(v.weight for v in variants)
    for variant in variants:
        if point < variant.weight:
            return variant
        point -= variant.weight
    return variants[-1]
