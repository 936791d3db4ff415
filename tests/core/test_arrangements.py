"""What a customer arranges on the recovery page, in the pure core: payment plans (offers,
installments, a failed plan) and a promise to pay. Times are explicit; nothing runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from tests.support.core import AMOUNT, HARD, at, charge, make_policy, open_case, send, send_due
from workflows.arrangements import installment_charge_at, quote, split_amount
from workflows.case import CaseState
from workflows.decide import Charge, Finish, Notify, Wait, decide
from workflows.models import (
    CaseStatus,
    ChargeResult,
    DisputeOpened,
    FeedbackGiven,
    FeedbackReason,
    Installment,
    PaymentReceived,
    PayNow,
    PlanChosen,
    PromiseToPay,
)
from workflows.policy import Outcome, PlanOffer, Policy
from workflows.steps import charge_request, fold_charge, fold_signal

PLANS = [
    {"installments": 2, "every": timedelta(days=30), "min_installment": 1000},
    {"installments": 3, "every": timedelta(days=30), "min_installment": 1000},
]


@pytest.fixture
def offering() -> Policy:
    """The small policy, offering 2 or 3 monthly installments and a promise within 14 days."""
    return make_policy(payment_plans=PLANS, promise_within=timedelta(days=14))


def arrange(state: CaseState, choice: PlanChosen | PromiseToPay, now: datetime) -> None:
    """The customer's choice on the page, and its confirmation message sent at once."""
    fold_signal(state, choice, now)
    step = decide(state, now)
    template = "plan_confirmed" if isinstance(choice, PlanChosen) else "promise_confirmed"
    assert isinstance(step, Notify) and step.template == template, step
    send(state, step, now)
    assert state.confirmation is None


@pytest.mark.parametrize(
    ("amount", "parts", "expected"),
    [(4900, 2, [2450, 2450]), (4900, 3, [1634, 1633, 1633]), (5, 3, [3, 1, 1])],
)
def test_installments_add_up_to_the_amount_due(amount: int, parts: int, expected: list[int]):
    assert split_amount(amount, parts) == expected
    assert sum(split_amount(amount, parts)) == amount


def test_a_plan_below_its_minimum_installment_is_not_offered() -> None:
    offer = PlanOffer(installments=3, min_installment=2000)
    assert quote(offer, 4900, at(1)) is None
    due = [i.due_at for i in quote(PlanOffer(installments=2), 4900, at(1)).installments]
    assert due == [at(1), at(1) + timedelta(days=30)]


def test_a_declined_installment_is_retried_then_the_plan_fails() -> None:
    installment = Installment(number=1, amount=100, due_at=at(5))
    retries = [timedelta(days=1), timedelta(days=3)]
    charges = [installment_charge_at(installment, n, retries) for n in range(4)]
    assert charges == [at(5), at(6), at(8), None]


def test_open_case_offers_the_policys_plans_and_a_promise_window(offering: Policy) -> None:
    state = open_case(offering)

    view = state.view("wait", None, "", at(2))

    assert [[i.amount for i in q.installments] for q in view.plan_offers] == [
        [2450, 2450],
        [1634, 1633, 1633],
    ]
    assert view.promise_by == at(16)
    assert open_case(make_policy()).view("wait", None, "", at(2)).plan_offers == []


def test_a_plan_charges_each_installment_on_its_date_and_recovers(offering: Policy) -> None:
    state = open_case(offering)
    send_due(state, at(1))
    arrange(state, PlanChosen(installments=2), at(2))

    first = decide(state, at(2))
    assert isinstance(first, Charge) and first.installment == 1
    assert charge_request(state, first, at(2)).amount == 2450
    charge(state, first, at(2), approved=True)

    waiting = decide(state, at(3))
    assert isinstance(waiting, Wait) and waiting.until == at(2) + timedelta(days=30)
    # No reminder or retry while the plan runs, however long it takes.
    assert isinstance(decide(state, at(20)), Wait)

    second = decide(state, at(2) + timedelta(days=30))
    assert isinstance(second, Charge) and second.installment == 2
    charge(state, second, at(2) + timedelta(days=30), approved=True)

    assert state.status is CaseStatus.RECOVERED
    assert (state.amount_due, state.amount_recovered) == (0, AMOUNT)
    assert [i.paid for i in state.plan] == [True, True]


def test_a_partial_payment_from_elsewhere_makes_the_last_installment_smaller(
    offering: Policy,
) -> None:
    state = open_case(offering)
    arrange(state, PlanChosen(installments=2), at(2))
    charge(state, decide(state, at(2)), at(2), approved=True)
    fold_signal(state, PaymentReceived(amount=1000, actor="biller"), at(10))

    last = decide(state, at(2) + timedelta(days=30))

    assert isinstance(last, Charge)
    assert charge_request(state, last, at(2) + timedelta(days=30)).amount == AMOUNT - 2450 - 1000


def test_a_plan_whose_installment_fails_past_its_retries_resumes_dunning(
    offering: Policy,
) -> None:
    state = open_case(offering)
    send_due(state, at(1))
    arrange(state, PlanChosen(installments=2), at(2))
    now = at(2)
    for _ in range(3):  # the due date and two retries (days 1 and 3 after it)
        step = decide(state, now)
        assert isinstance(step, Charge) and step.installment == 1
        charge(state, step, now)
        now = decide(state, now).until if state.plan else now

    assert state.plan == [] and "plan_ended" in [e.kind for e in state.timeline]
    # The clock was held from day 2 to day 5, so the schedule resumes three days later: the
    # day-1 retry is due at once (after the least gap between charges).
    assert state.time_held == timedelta(days=3)
    assert isinstance(decide(state, at(5, 20)), Wait)
    step = decide(state, at(5, 21))
    assert isinstance(step, Charge) and step.label == "retry 1 of 2"


def test_a_hard_decline_ends_the_plan_at_once(offering: Policy) -> None:
    state = open_case(offering)
    arrange(state, PlanChosen(installments=3), at(2))
    charge(state, decide(state, at(2)), at(2), code=HARD)

    assert state.plan == [] and state.awaiting == "never_retry"


def test_a_promise_holds_everything_until_its_date_then_charges(offering: Policy) -> None:
    state = open_case(offering)
    send_due(state, at(1))
    arrange(state, PromiseToPay(pay_on=at(9)), at(2))

    held = decide(state, at(4))
    assert isinstance(held, Wait) and held.until == at(9)

    step = decide(state, at(9))
    assert isinstance(step, Charge) and step.promised
    charge(state, step, at(9), approved=True)
    assert state.status is CaseStatus.RECOVERED


def test_a_broken_promise_resumes_dunning_where_it_stopped(offering: Policy) -> None:
    state = open_case(offering)
    send_due(state, at(1))
    arrange(state, PromiseToPay(pay_on=at(9)), at(2))

    charge(state, decide(state, at(9)), at(9))

    assert state.promise is None and "promise_broken" in [e.kind for e in state.timeline]
    # Seven days were held: the day-1 retry (due before the promise) comes now.
    step = decide(state, at(9, 22))
    assert isinstance(step, Charge) and step.scheduled


@pytest.mark.parametrize(
    ("pay_on", "words"),
    [(at(1), "after today"), (at(17), "no later than 2026-11-16")],
)
def test_a_promise_outside_the_window_is_refused(offering: Policy, pay_on, words) -> None:
    state = open_case(offering)

    refusal = state.refuse_promise(PromiseToPay(pay_on=pay_on), at(2))

    assert refusal is not None and words in refusal
    fold_signal(state, PromiseToPay(pay_on=pay_on), at(2))
    assert state.promise is None


def test_arrangements_are_refused_when_held_running_or_not_offered(offering: Policy) -> None:
    state = open_case(offering)
    assert "no plan of 4" in state.refuse_plan(PlanChosen(installments=4), at(2))
    fold_signal(state, PlanChosen(installments=2), at(2))
    assert "already running" in state.refuse_plan(PlanChosen(installments=3), at(2))
    assert "already running" in state.refuse_promise(PromiseToPay(pay_on=at(5)), at(2))

    disputed = open_case(offering)
    fold_signal(disputed, DisputeOpened(reason="chargeback"), at(2))
    assert "on hold" in disputed.refuse_plan(PlanChosen(installments=2), at(2))
    assert open_case(make_policy()).refuse_promise(PromiseToPay(pay_on=at(5)), at(2)) == (
        "this invoice offers no promise to pay"
    )


def test_feedback_is_one_reason_in_the_timeline(offering: Policy) -> None:
    state = open_case(offering)

    fold_signal(state, FeedbackGiven(reason=FeedbackReason.CANNOT_AFFORD), at(2))

    assert (state.timeline[-1].kind, state.timeline[-1].detail) == ("feedback", "cannot_afford")
    assert state.timeline[-1].actor == "customer"


def test_a_finished_case_offers_nothing(offering: Policy) -> None:
    state = open_case(offering)
    fold_signal(state, PaymentReceived(amount=AMOUNT), at(2))

    assert isinstance(decide(state, at(2)), Finish)
    assert state.plan_quotes(at(2)) == [] and state.promise_by(at(2)) is None
    assert state.outcome is Outcome.RECOVERED


@pytest.mark.parametrize(
    "plans",
    [
        [{"installments": 2, "every": timedelta(days=30), "retries": [timedelta(days=30)]}],
        [{"installments": 2}, {"installments": 2}],
    ],
)
def test_a_policy_with_impossible_plans_is_refused(plans: list[dict]) -> None:
    with pytest.raises(ValueError, match="retries|one offer"):
        make_policy(payment_plans=plans)


def test_pay_now_charges_all_that_is_due_even_while_a_plan_or_pause_waits(
    offering: Policy,
) -> None:
    state = open_case(offering)
    arrange(state, PlanChosen(installments=2), at(2))
    charge(state, decide(state, at(2)), at(2), approved=True)  # installment 1
    fold_signal(state, PayNow(), at(5))

    step = decide(state, at(5))

    assert isinstance(step, Charge) and step.requested
    assert charge_request(state, step, at(5)).amount == AMOUNT - 2450
    charge(state, step, at(5), approved=True)
    assert state.status is CaseStatus.RECOVERED
    assert state.outcome_reason == "paid by the customer on the recovery page"


def test_a_declined_pay_now_leaves_the_case_as_it_was(offering: Policy) -> None:
    state = open_case(offering)
    send_due(state, at(1))
    fold_signal(state, PayNow(), at(1, 12))
    charge(state, decide(state, at(1, 12)), at(1, 12))

    assert state.payment_requested_at is None and state.status is CaseStatus.ACTIVE
    # The schedule is untouched: retry 1 still comes on day 2.
    step = decide(state, at(1, 23))
    assert isinstance(step, Wait) and step.until == at(2)


def test_pay_now_is_refused_while_disputed(offering: Policy) -> None:
    state = open_case(offering)
    fold_signal(state, DisputeOpened(reason="chargeback"), at(2))

    assert "on hold" in state.refuse_pay_now()
    fold_signal(state, PayNow(), at(2))
    assert state.payment_requested_at is None


@pytest.mark.parametrize("biller_first", [True, False], ids=["biller first", "charge first"])
def test_an_installment_the_biller_also_reports_counts_once(offering: Policy, biller_first: bool):
    state = open_case(offering)
    arrange(state, PlanChosen(installments=2), at(2))
    step = decide(state, at(2))
    # Stripe's invoice_payment.paid for the installment's own PaymentIntent.
    reported = PaymentReceived(amount=2450, reference="pi_inst1", actor="stripe")
    approved = ChargeResult(approved=True, reference="pi_inst1")

    if biller_first:
        fold_signal(state, reported, at(2))
    fold_charge(state, step, approved, at(2))
    if not biller_first:
        fold_signal(state, reported, at(2))

    assert (state.amount_due, state.amount_recovered) == (AMOUNT - 2450, 2450)
    assert [i.paid for i in state.plan] == [True, False]


def test_a_partial_payment_from_the_biller_lowers_what_is_due(offering: Policy) -> None:
    state = open_case(offering)

    fold_signal(state, PaymentReceived(amount=900, reference="pi_other", actor="stripe"), at(2))

    assert (state.amount_due, state.status) == (AMOUNT - 900, CaseStatus.ACTIVE)
    assert [q.installments[0].amount for q in state.plan_quotes(at(2))] == [2000, 1334]
