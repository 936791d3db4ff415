"""Segment rules and A/B variants: which policy a new case gets."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.policies import PolicyError, load_policies, load_segments
from config.settings import CONFIG_DIR, Settings
from intake.cases import CaseOpener
from intake.events import BillingEvent
from workflows.policy import DeclineClass
from workflows.segments import CaseFacts, SegmentRules, Variant, assign_variant

RULES = SegmentRules.model_validate(
    {
        "segments": [
            {"name": "hard", "decline_classes": ["never_retry"], "policy": "card-first"},
            {"name": "vip", "lifetime_value_min": 100_000, "plans": ["pro"], "policy": "gentle"},
            {"name": "jp", "regions": ["JP"], "currencies": ["JPY"], "policy": "standard-jp"},
            {
                "name": "large",
                "amount_min": 50_000,
                "experiment": "large-2026-12",
                "variants": [
                    {"name": "control", "policy": "standard", "weight": 50},
                    {"name": "patient", "policy": "patient", "weight": 50},
                ],
            },
            {"name": "default", "policy": "standard"},
        ]
    }
)


@pytest.mark.parametrize(
    ("facts", "segment", "policy"),
    [
        (CaseFacts(decline_class=DeclineClass.NEVER_RETRY, plan="pro"), "hard", "card-first"),
        (CaseFacts(plan="pro", lifetime_value=250_000), "vip", "gentle"),
        (CaseFacts(plan="basic", lifetime_value=250_000), "default", "standard"),
        (CaseFacts(region="jp", currency="jpy"), "jp", "standard-jp"),
        (CaseFacts(region="JP", currency="USD"), "default", "standard"),
        (CaseFacts(amount=49_999), "default", "standard"),
        (CaseFacts(), "default", "standard"),  # a rule on a missing fact never matches
    ],
)
def test_the_first_matching_segment_gives_the_policy(facts, segment, policy):
    assignment = RULES.assign(facts, "cus_1")

    assert (assignment.segment, assignment.policy, assignment.variant) == (segment, policy, None)


def test_a_customer_keeps_one_variant_across_cases():
    variants = {
        RULES.assign(CaseFacts(amount=amount), "cus_42").variant for amount in (50_000, 90_000)
    }

    assert len(variants) == 1


def test_variants_split_customers_by_their_weights():
    variants = [
        Variant(name="a", policy="p", weight=70),
        Variant(name="b", policy="q", weight=20),
        Variant(name="c", policy="r", weight=10),
    ]
    counts = Counter(assign_variant(f"cus_{n}", "exp-1", variants).name for n in range(20_000))

    assert abs(counts["a"] / 20_000 - 0.7) < 0.015
    assert abs(counts["b"] / 20_000 - 0.2) < 0.015
    assert abs(counts["c"] / 20_000 - 0.1) < 0.015


def test_a_new_experiment_reshuffles_customers():
    variants = [Variant(name="a", policy="p", weight=1), Variant(name="b", policy="q", weight=1)]
    first = [assign_variant(f"cus_{n}", "exp-1", variants).name for n in range(2_000)]
    second = [assign_variant(f"cus_{n}", "exp-2", variants).name for n in range(2_000)]

    agree = sum(x == y for x, y in zip(first, second, strict=True)) / 2_000
    assert 0.4 < agree < 0.6  # independent splits, not the same one again


@pytest.mark.parametrize(
    ("segment", "message"),
    [
        ({"name": "x"}, "give either a policy or variants"),
        (
            {"name": "x", "variants": [{"name": "a", "policy": "p", "weight": 1}]},
            "variants need an experiment name",
        ),
        ({"name": "x", "policy": "p", "amount_minimum": 5}, "Extra inputs are not permitted"),
    ],
)
def test_a_bad_segment_is_refused_with_its_reason(segment, message):
    with pytest.raises(ValidationError, match=message):
        SegmentRules.model_validate({"segments": [segment]})


def test_segments_naming_an_unknown_policy_fail_at_load(tmp_path: Path):
    path = tmp_path / "segments.toml"
    path.write_text('[[segments]]\nname = "all"\npolicy = "nope"\n')
    policies = load_policies(CONFIG_DIR / "policies", CONFIG_DIR / "declines.toml")

    with pytest.raises(PolicyError, match="segment all names unknown policy 'nope'"):
        load_segments(path, policies)


def test_a_case_records_its_segment_and_variant(tmp_path: Path):
    segments = tmp_path / "segments.toml"
    segments.write_text(
        '[[segments]]\nname = "trial"\nexperiment = "exp"\n'
        'variants = [{ name = "a", policy = "standard", weight = 1 },'
        ' { name = "b", policy = "demo", weight = 1 }]\n'
    )
    settings = Settings(segments_file=segments, _env_file=None)
    event = BillingEvent.model_validate(
        {
            "invoice_id": "in_1",
            "customer": {"customer_id": "cus_7"},
            "amount_due": 4900,
            "currency": "usd",
            "failed_at": datetime(2026, 11, 1, tzinfo=UTC),
        }
    )

    opener = CaseOpener.from_settings(settings)
    case = opener.case_input(event)
    named = opener.case_input(event.model_copy(update={"policy": "demo"}))

    assert case.segment == "trial"
    assert (case.variant, case.policy_name) in {("a", "standard"), ("b", "demo")}
    assert (named.segment, named.variant, named.policy_name) == ("named by the event", None, "demo")


def test_the_shipped_segments_load():
    policies = load_policies(CONFIG_DIR / "policies", CONFIG_DIR / "declines.toml")

    rules = load_segments(CONFIG_DIR / "segments.toml", policies)

    assert rules.assign(CaseFacts(), "cus_1").policy == "smart"
