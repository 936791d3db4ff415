"""Smart retry timing, pure: the planner's candidates and limits, exploration, the features,
the gradient-boosted retry model and its evaluation, and the case's use of a plan.

Histories are synthetic and seeded with a planted pattern a working model must find: each
customer's charges pass on the day of the month they paid on before (their own payday,
different for every customer), rarely otherwise.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from config.policies import find_policy, load_policies
from tests.support.core import charge, open_case, play, send
from workflows.decide import Charge, Wait, decide, next_charge_at
from workflows.models import ChargeResult, PaymentMethodUpdated, PlanRequest
from workflows.policy import DeclineClass, Policy
from workflows.retry_model import RetryModel, evaluate, fit, weights
from workflows.retry_planner import (
    attempt_features,
    candidate_slots,
    feature_block,
    plan_retries,
)
from workflows.smart_retry import (
    FEATURES,
    MIN_HISTORY,
    SLOT_HOURS,
    AttemptRecord,
    PlanFacts,
    RetryPlan,
)
from workflows.steps import fold_charge, replan_facts

CONFIG = Path(__file__).resolve().parents[2] / "config"
FAILED_AT = datetime(2026, 11, 3, 9, 17, tzinfo=UTC)
TRAINED_AT = datetime(2026, 11, 1, tzinfo=UTC)
ZONES = ["Asia/Tokyo", "America/New_York", "Europe/Berlin"]


@pytest.fixture(scope="module")
def smart() -> Policy:
    """The shipped smart policy (six retries, a little exploration)."""
    policies = load_policies(CONFIG / "policies", CONFIG / "declines.toml")
    return find_policy(policies, "smart")


def greedy(policy: Policy) -> Policy:
    """`policy` without exploration: every plan is the model's best."""
    return variant(policy, exploration=0.0)


def variant(policy: Policy, **changes: object) -> Policy:
    return Policy.model_validate({**policy.model_dump(), **changes})


def facts(**changes: object) -> PlanFacts:
    """A soft decline of a Tokyo customer's Visa card, failed on FAILED_AT; they paid their
    earlier invoices on the 25th."""
    data: dict[str, object] = {
        "case_id": "case-1",
        "decline_code": "insufficient_funds",
        "decline_class": DeclineClass.RETRY_LATER,
        "card_brand": "visa",
        "failed_at": FAILED_AT,
        "opened_at": FAILED_AT,
        "amount": 4900,
        "currency": "USD",
        "time_zones": ["Asia/Tokyo"],
        "paid_history": paid_on(25, "Asia/Tokyo"),
    }
    data.update(changes)
    return PlanFacts.model_validate(data)


def paid_on(day: int, zone: str, months: int = 4) -> list[datetime]:
    """Payments on `day` of each of the `months` months before November 2026, at 10:00."""
    return [datetime(2026, 10 - m, day, 10, tzinfo=ZoneInfo(zone)) for m in range(months)]


def planted_history(count: int, seed: int = 7) -> list[AttemptRecord]:
    """Retries of many customers, each with their own payday; a charge passes mostly on that
    local day of the month, hardly ever on another."""
    rng = random.Random(seed)
    history = []
    for n in range(count):
        zone = rng.choice(ZONES)
        payday = rng.randint(1, 28)
        failed_at = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(24 * 270))
        at = failed_at + timedelta(hours=rng.randrange(12, 480))
        on_payday = at.astimezone(ZoneInfo(zone)).day == payday
        record_facts = facts(
            case_id=f"case-{n}",
            failed_at=failed_at,
            opened_at=failed_at,
            time_zones=[zone],
            attempt=rng.randint(1, 4),
            card_brand=rng.choice(["visa", "mastercard"]),
            paid_history=paid_on(payday, zone),
        )
        approved = rng.random() < (0.6 if on_payday else 0.03)
        history.append(AttemptRecord(facts=record_facts, at=at, approved=approved))
    return history


@pytest.fixture(scope="module")
def planted() -> RetryModel:
    """A model fitted on 4000 attempts of the planted pattern."""
    return fit(planted_history(4000), version=3, now=TRAINED_AT)


def local_days(plan: RetryPlan, case: PlanFacts) -> list[int]:
    zone = ZoneInfo(case.time_zones[0])
    return [(case.failed_at + o).astimezone(zone).day for o in plan.offsets]


# Falling back to the fixed schedule --------------------------------------------------------


def test_without_a_model_the_plan_is_the_fixed_schedule(smart: Policy) -> None:
    plan = plan_retries(None, facts(), greedy(smart))

    assert plan.offsets == smart.retries
    assert plan.model_version is None
    assert plan.reason == "fixed schedule: no retry model"


def test_with_too_little_history_the_plan_is_the_fixed_schedule_and_says_so(
    smart: Policy,
) -> None:
    model = fit(planted_history(MIN_HISTORY - 50), version=1, now=TRAINED_AT)

    plan = plan_retries(model, facts(), greedy(smart))

    assert plan.offsets == smart.retries
    assert plan.reason == f"fixed schedule: only {MIN_HISTORY - 50} attempts of history"


def test_a_replan_without_a_model_keeps_the_fixed_retries_not_yet_due(smart: Policy) -> None:
    after_two = facts(
        retries_done=2,
        attempt=3,
        last_charge_at=FAILED_AT + smart.retries[1],
        planned_at=FAILED_AT + smart.retries[1],
    )

    plan = plan_retries(None, after_two, greedy(smart))

    assert plan.offsets == smart.retries[2:]


@pytest.mark.parametrize(
    "codes",
    [
        {"decline_code": "stolen_card"},
        {"decline_code": "expired_card"},
        {"decline_code": "generic_decline", "advice_code": "do_not_try_again"},
        {"decline_code": "do_not_honor", "network_decline_code": "14", "card_brand": "visa"},
        {"decline_code": "do_not_honor", "network_advice_code": "03", "card_brand": "mastercard"},
    ],
    ids=["stolen", "expired", "advice", "visa-category-1", "mastercard-stop"],
)
@pytest.mark.parametrize("with_model", [True, False], ids=["model", "no-model"])
def test_never_retry_decline_gets_no_retries(
    smart: Policy, planted: RetryModel, codes: dict[str, str], with_model: bool
) -> None:
    plan = plan_retries(planted if with_model else None, facts(**codes), smart)

    assert plan.offsets == []
    assert plan.reason.startswith("no retries:")


def test_a_spent_budget_plans_nothing(smart: Policy, planted: RetryModel) -> None:
    plan = plan_retries(planted, facts(retries_done=len(smart.retries)), smart)

    assert plan == RetryPlan(offsets=[], reason="no retries left in the budget")


# The limits a smart plan keeps -------------------------------------------------------------


@pytest.mark.parametrize("zone", ZONES)
def test_smart_plan_keeps_budget_spacing_window_and_contact_hours(
    smart: Policy, planted: RetryModel, zone: str
) -> None:
    case = facts(time_zones=[zone], paid_history=paid_on(10, zone))

    plan = plan_retries(planted, case, greedy(smart))

    assert plan.model_version == 3
    assert len(plan.offsets) == len(smart.retries)
    assert plan.offsets == sorted(plan.offsets)
    gaps = [b - a for a, b in zip(plan.offsets, plan.offsets[1:], strict=False)]
    assert min(gaps) >= smart.min_retry_gap
    assert plan.offsets[0] >= smart.min_retry_gap
    assert plan.offsets[-1] <= smart.collections_after - timedelta(days=1)
    for offset in plan.offsets:
        local = (FAILED_AT + offset).astimezone(ZoneInfo(zone))
        assert local.hour in SLOT_HOURS
        assert smart.contact_hours.allows(FAILED_AT + offset, zone)


def test_a_replan_starts_after_the_last_charge_and_counts_the_retries_made(
    smart: Policy, planted: RetryModel
) -> None:
    last = FAILED_AT + timedelta(days=6, hours=3)
    case = facts(retries_done=4, attempt=5, declines=5, last_charge_at=last, planned_at=last)

    plan = plan_retries(planted, case, greedy(smart))

    assert len(plan.offsets) == len(smart.retries) - 4
    assert FAILED_AT + plan.offsets[0] >= last + smart.min_retry_gap


def test_smart_plan_respects_the_card_network_cap(smart: Policy, planted: RetryModel) -> None:
    visa = smart.declines.networks["visa"]
    capped = variant(
        smart,
        declines={
            **smart.declines.model_dump(),
            "networks": {"visa": {**visa.model_dump(), "max_attempts": 3}},
        },
    )

    plan = plan_retries(planted, facts(declines=1), greedy(capped))

    assert len(plan.offsets) == 2  # three attempts in 30 days: the failure and two retries
    assert "only 2 of 6 retries fit" in plan.reason


def test_zones_that_share_no_contact_hour_plan_in_the_first_zone(
    smart: Policy, planted: RetryModel
) -> None:
    case = facts(time_zones=["Pacific/Honolulu", "Asia/Tokyo", "Europe/London"])

    first_zone = case.model_copy(update={"time_zones": ["Pacific/Honolulu"]})
    assert candidate_slots(case, smart).times() == candidate_slots(first_zone, smart).times()
    assert len(candidate_slots(first_zone, smart)) > 0


# What the model learns ---------------------------------------------------------------------


@pytest.mark.parametrize("payday", [5, 12, 20])
def test_the_plan_finds_each_customers_own_payday(
    smart: Policy, planted: RetryModel, payday: int
) -> None:
    case = facts(paid_history=paid_on(payday, "Asia/Tokyo"))

    plan = plan_retries(planted, case, greedy(smart))

    # The window (4 to 23 November) holds one such day: the plan charges on it.
    assert payday in local_days(plan, case)


def test_the_model_rates_a_customers_payday_above_other_days(planted: RetryModel) -> None:
    case = facts(paid_history=paid_on(12, "Asia/Tokyo"))
    slots = candidate_slots(case, greedy_smart())
    chances = planted.success_chances([feature_block(slots, case)])
    local = [at.astimezone(ZoneInfo("Asia/Tokyo")).day for at in slots.times()]
    on = [c for c, d in zip(chances, local, strict=True) if d == 12]
    off = [c for c, d in zip(chances, local, strict=True) if d not in (11, 12, 13)]

    assert min(on) > 3 * max(off)


def greedy_smart() -> Policy:
    policies = load_policies(CONFIG / "policies", CONFIG / "declines.toml")
    return greedy(find_policy(policies, "smart"))


def test_evaluation_on_held_out_attempts_shows_skill_and_calibration(
    planted: RetryModel,
) -> None:
    report = evaluate(planted, planted_history(1500, seed=99))

    assert report.attempts == 1500
    assert report.log_loss < report.base_log_loss
    assert report.skill > 0.2
    # Three in five passing charges are the planted 3% background, which no model can tell
    # apart: the best possible AUC is about 0.70.
    assert report.auc is not None and report.auc > 0.64
    bands = report.calibration
    assert bands[-1].observed > 3 * bands[0].observed
    for band in bands:
        assert abs(band.predicted - band.observed) < 0.05


def test_a_model_with_no_skill_scores_none(planted: RetryModel) -> None:
    rng = random.Random(3)
    noise = [r.model_copy(update={"approved": rng.random() < 0.2}) for r in planted_history(800, 5)]

    report = evaluate(fit(noise, 1, TRAINED_AT), planted_history(800, seed=6))

    assert report.skill < 0.05


def test_fit_is_deterministic_whatever_the_order() -> None:
    history = planted_history(600)
    shuffled = random.Random(1).sample(history, len(history))
    block = [feature_block(candidate_slots(facts(), greedy_smart()), facts())]

    one = fit(history, 1, TRAINED_AT).success_chances(block)
    two = fit(shuffled, 1, TRAINED_AT).success_chances(block)

    assert one == two


def test_training_needs_both_outcomes() -> None:
    declined = [r.model_copy(update={"approved": False}) for r in planted_history(300)]

    with pytest.raises(ValueError, match="both approved and declined"):
        fit(declined, 1, TRAINED_AT)


def test_explored_attempts_weigh_more_but_never_more_than_the_cap() -> None:
    records = planted_history(3)
    records[1] = records[1].model_copy(update={"propensity": 0.25})
    records[2] = records[2].model_copy(update={"propensity": 0.001})

    raw = weights(records) * (1 + 4 + 20) / 3

    assert raw.tolist() == pytest.approx([1.0, 4.0, 20.0])


# Features ----------------------------------------------------------------------------------


def test_features_are_local_to_the_customer_and_know_their_pay_cycle() -> None:
    case = facts(paid_history=paid_on(25, "Asia/Tokyo"))
    at = datetime(2026, 11, 25, 4, 17, tzinfo=UTC)  # 13:17 on the 25th in Tokyo

    block = attempt_features(AttemptRecord(facts=case, at=at, approved=False))
    assert block.times.shape == (1, len(FEATURES) - len(block.case))
    row = dict(zip(FEATURES, [*block.case, *block.times[0].tolist()], strict=True))

    assert row["decline_code"] == "insufficient_funds"
    assert row["card_brand"] == "visa"
    assert row["local_hour"] == 13
    assert row["day_of_month"] == 25
    assert row["weekday"] == 2  # a Wednesday
    assert row["days_after_paid_day_of_month"] == 0
    assert row["payments_known"] == 4
    assert row["hours_since_failure"] == pytest.approx((at - FAILED_AT) / timedelta(hours=1))


def test_a_customer_with_no_history_has_unknown_pay_cycle_features() -> None:
    case = facts(paid_history=[])
    block = attempt_features(AttemptRecord(facts=case, at=FAILED_AT, approved=False))
    row = dict(zip(FEATURES, [*block.case, *block.times[0].tolist()], strict=True))

    assert row["payments_known"] == 0
    assert np.isnan(row["days_after_paid_day_of_month"])
    assert np.isnan(row["days_after_paid_fortnight"])


# Exploration -------------------------------------------------------------------------------


def test_exploration_moves_a_share_of_first_retries_and_records_their_chance(
    smart: Policy, planted: RetryModel
) -> None:
    exploring = variant(smart, exploration=0.2)
    plans = [plan_retries(planted, facts(case_id=f"case-{n}"), exploring) for n in range(400)]
    explored = [p for p in plans if p.explored]
    slots = len(candidate_slots(facts(), exploring))

    assert 50 <= len(explored) <= 110  # 20% of 400, give or take chance
    greedy_chance = 0.8 + 0.2 / slots  # chosen as the best, or drawn as it
    for plan in plans:
        if plan.explored:
            assert plan.propensity in (pytest.approx(0.2 / slots), pytest.approx(greedy_chance))
        else:
            assert plan.propensity == pytest.approx(greedy_chance)
    assert all("exploring" in p.reason for p in explored)


def test_exploration_is_fixed_by_the_case_and_attempt(smart: Policy, planted: RetryModel) -> None:
    exploring = variant(smart, exploration=0.2)

    first = [plan_retries(planted, facts(case_id=f"c{n}"), exploring) for n in range(50)]
    again = [plan_retries(planted, facts(case_id=f"c{n}"), exploring) for n in range(50)]

    assert first == again


def test_a_greedy_plan_chose_its_time_for_sure(smart: Policy, planted: RetryModel) -> None:
    plan = plan_retries(planted, facts(), greedy(smart))

    assert plan.propensity == 1.0
    assert not plan.explored


# The case follows and renews its plan ------------------------------------------------------


def test_fixed_timing_is_the_default() -> None:
    policies = load_policies(CONFIG / "policies", CONFIG / "declines.toml")
    assert find_policy(policies, "standard", 1).retry_timing == "fixed"
    assert open_case(find_policy(policies, "standard", 1)).planned_retries is None


def test_a_declined_planned_retry_asks_for_a_new_plan_and_keeps_the_pinned_model(
    smart: Policy,
) -> None:
    state = open_case(smart)
    origin = state.case.failure.failed_at
    first = RetryPlan(
        offsets=[timedelta(days=2, hours=3), timedelta(days=9)],
        model_version=3,
        reason="smart schedule from model v3 (3000 attempts)",
        propensity=0.95,
    )
    state.follow_plan(first, origin)
    assert state.retry_model_version == 3
    assert next_charge_at(state) == origin + timedelta(days=2, hours=3)

    due = origin + timedelta(days=2, hours=3)
    step = decide(state, due)
    assert isinstance(step, Charge) and step.scheduled
    charge(state, step, due)

    assert state.plan_outdated
    replan = state.plan_facts(due)
    assert (replan.attempt, replan.retries_done, replan.declines) == (2, 1, 2)
    assert replan.last_charge_at == due
    assert replan.model_version == 3
    second = RetryPlan(offsets=[timedelta(days=12)], model_version=4, reason="again")
    state.follow_plan(second, due)

    assert not state.plan_outdated
    assert state.planned_retries == [timedelta(days=2, hours=3), timedelta(days=12)]
    assert state.retry_model_version == 3  # pinned for the case's life
    assert next_charge_at(state) == origin + timedelta(days=12)


def test_an_approved_retry_or_a_fixed_policy_never_asks_again(smart: Policy) -> None:
    state = open_case(smart)
    origin = state.case.failure.failed_at
    state.follow_plan(RetryPlan(offsets=[timedelta(days=1)], reason="test"), origin)
    due = origin + timedelta(days=1)
    charge(state, decide(state, due), due, approved=True)
    assert not state.plan_outdated

    fixed = open_case(variant(smart, retry_timing="fixed"))
    steps = play(fixed, origin, origin + timedelta(days=30))
    assert any(isinstance(step, Charge) for _, step in steps)
    assert not fixed.plan_outdated


def test_a_hard_decline_keeps_the_plan_until_a_new_card_declines_softly(smart: Policy) -> None:
    state = open_case(smart)
    origin = state.case.failure.failed_at
    plan = RetryPlan(offsets=[timedelta(days=1), timedelta(days=4)], reason="test")
    state.follow_plan(plan, origin)
    due = origin + timedelta(days=1)
    charge(state, decide(state, due), due, code="stolen_card")

    assert not state.plan_outdated  # nothing to plan: the case waits for a new card
    assert state.planned_retries == plan.offsets

    state.update_payment_method(
        PaymentMethodUpdated(payment_method="pm_new", actor="customer"), due
    )
    later = due + timedelta(hours=1)
    step = decide(state, later)
    while not isinstance(step, Charge):  # the reminder the hard decline brought, a wait
        if isinstance(step, Wait):
            later = step.until
        else:
            send(state, step, later)
        step = decide(state, later)
    assert not step.scheduled
    charge(state, step, later, code="insufficient_funds")

    assert state.plan_outdated
    assert state.plan_facts(later).decline_code == "insufficient_funds"


def test_the_last_retry_of_the_budget_asks_for_no_plan(smart: Policy) -> None:
    state = open_case(smart)
    origin = state.case.failure.failed_at
    offsets = [timedelta(days=d) for d in range(1, len(smart.retries) + 1)]
    state.follow_plan(RetryPlan(offsets=offsets, reason="test"), origin)
    for offset in offsets:
        due = origin + offset
        step = decide(state, due)
        while not isinstance(step, Charge):
            send(state, step, due)
            step = decide(state, due)
        charge(state, step, due)
        if offset != offsets[-1]:
            assert state.plan_outdated
            state.follow_plan(
                RetryPlan(offsets=offsets[state.scheduled_retries_done :], reason="again"), due
            )

    assert state.scheduled_retries_done == len(smart.retries)
    assert not state.plan_outdated  # nothing left to plan


def test_the_charge_replans_from_the_facts_the_case_has_after_the_decline(smart: Policy) -> None:
    # The charge activity plans a declined retry's successors itself (`replan_facts`, from
    # the facts sent with the charge and its answer): they must be the case's own facts once
    # the decline is folded in, or the plan would differ from `plan_retries`'.
    state = open_case(smart)
    origin = state.case.failure.failed_at
    state.follow_plan(RetryPlan(offsets=[timedelta(days=1), timedelta(days=3)], reason="t"), origin)
    due = origin + timedelta(days=1)
    step = decide(state, due)
    assert isinstance(step, Charge) and step.scheduled
    sent = PlanRequest(
        **state.plan_facts(due).model_dump(),
        invoice_id="in_1",
        customer_id="cus_1",
        policy_name=smart.name,
        policy_version=smart.version,
    )
    result = ChargeResult(approved=False, decline_code="card_velocity_exceeded")
    fold_charge(state, step, result, due)

    assert state.plan_outdated
    decline_class = smart.declines.classify(result)
    replanned = replan_facts(sent, step.scheduled, result, decline_class)
    assert PlanFacts.model_validate(replanned.model_dump(include=set(PlanFacts.model_fields))) == (
        state.plan_facts(due)
    )
