"""Late fees in the pure core: what a policy's fee comes to, when a case adds it, and that
it adds it once, never while the case is held or after it ended."""

from __future__ import annotations

import tomllib
from datetime import timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from tests.support.core import AMOUNT, at, make_policy, open_case, play, summary
from workflows.decide import AddLateFee, Wait, decide
from workflows.late_fee import late_fee_amount
from workflows.models import (
    DisputeOpened,
    PauseRequest,
    PlanChosen,
    PromiseToPay,
    ResumeRequest,
)
from workflows.policy import LateFee, Outcome
from workflows.steps import fold_late_fee, late_fee_request, notify_request


def fee_policy(**late_fee: object):
    """The small core policy (reminders on days 0, 3, 5; collections on day 10) with a fee."""
    return make_policy(late_fee={"after": timedelta(days=4), **late_fee})


# Amounts -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fee", "due", "expected"),
    [
        ({"fixed": 500}, 4900, 500),
        ({"fixed": 500, "cap": 300}, 4900, 300),
        ({"percent": "1.5"}, 4900, 74),  # 73.5 rounds half up
        ({"percent": "1.5"}, 4910, 74),  # 73.65
        ({"percent": "1.5"}, 4870, 73),  # 73.05
        ({"percent": 10}, 4980, 498),
        ({"percent": 10, "cap": 400}, 4980, 400),
        ({"percent": 10, "cap": 400}, 1000, 100),
        ({"percent": "0.1"}, 4, 0),  # a fraction of a minor unit: nothing
        ({"percent": 5}, 4980, 249),  # a zero-decimal currency (JPY) is in minor units too
        ({"percent": 100}, 4980, 4980),
    ],
)
def test_fee_is_fixed_or_a_percentage_rounded_to_the_minor_unit_and_capped(fee, due, expected):
    assert late_fee_amount(LateFee(after=timedelta(days=1), **fee), due) == expected


@pytest.mark.parametrize(
    ("fee", "message"),
    [
        ({}, "exactly one of `fixed` and `percent`"),
        ({"fixed": 500, "percent": 2}, "exactly one of `fixed` and `percent`"),
        ({"fixed": 0}, "greater than 0"),
        ({"percent": 0}, "greater than 0"),
        ({"percent": "100.5"}, "less than or equal to 100"),
        ({"fixed": 500, "cap": -1}, "greater than 0"),
        ({"fixed": 500, "after": "PT0S"}, "greater than 0"),
    ],
)
def test_bad_fee_tables_are_refused_with_the_reason(fee, message):
    with pytest.raises(ValidationError, match=message):
        LateFee.model_validate({"after": "P14D", **fee})


def test_fee_must_come_before_collections():
    with pytest.raises(ValidationError, match="late_fee.after: must come before collections"):
        make_policy(late_fee={"after": timedelta(days=10), "fixed": 500})


def test_policies_have_no_fee_unless_they_say_so():
    state = open_case(make_policy())
    steps = summary(play(state, at(1, 9), at(30)))
    assert not [row for row in steps if row[1] == "late_fee"]
    assert state.late_fee is None


def test_a_policy_files_fee_table_reads_exactly():
    table = tomllib.loads('[late_fee]\nafter = "P4D"\npercent = 1.1\ncap = 1000\n')
    policy = make_policy(**table)
    assert policy.late_fee == LateFee(after=timedelta(days=4), percent=Decimal("1.1"), cap=1000)
    assert late_fee_amount(policy.late_fee, 1500) == 17  # 16.5 exactly: half up, not to even


# Timing ------------------------------------------------------------------------------------


def test_fee_is_added_once_when_its_time_comes_and_the_messages_after_name_it():
    state = open_case(fee_policy(fixed=500))
    steps = summary(play(state, at(1, 9), at(30)))
    fees = [row for row in steps if row[1] == "late_fee"]
    assert fees == [(at(5, 9), "late_fee", "a late fee of 500 USD")]
    assert state.late_fee == 500
    assert [e.kind for e in state.timeline].count("late_fee") == 1
    # The final notice on day 5 goes after the fee, and its request names it.
    final = next(i for i, row in enumerate(steps) if "final_notice" in row[2])
    assert final > steps.index(fees[0])


def test_case_waits_for_the_fee_as_for_any_other_step():
    state = open_case(fee_policy(fixed=500))
    play(state, at(1, 9), at(4, 9))  # retries on days 1 and 2, the firm reminder on day 4
    step = decide(state, at(4, 12))
    assert step == Wait(until=at(5, 9), reason="before the late fee")


def test_percentage_is_of_what_is_still_due_when_the_fee_falls_due():
    state = open_case(fee_policy(percent=10))
    state.amount_due = 2000  # a partial payment came in meanwhile
    step = decide(state, at(5, 9))
    assert step == AddLateFee(amount=200, label="a late fee of 200 USD")


def test_fee_is_never_added_twice_once_recorded():
    state = open_case(fee_policy(fixed=500))
    step = decide(state, at(5, 9))
    assert isinstance(step, AddLateFee)
    fold_late_fee(state, step, "ii_1", at(5, 9))
    assert not isinstance(decide(state, at(5, 9)), AddLateFee)
    assert not isinstance(decide(state, at(9, 9)), AddLateFee)


def test_a_fee_the_biller_refused_is_not_asked_for_again_nor_named():
    state = open_case(fee_policy(fixed=500))
    step = decide(state, at(5, 9))
    fold_late_fee(state, step, None, at(5, 9), "Stripe rejected the request (resource_missing)")
    assert state.late_fee is None and state.late_fee_done
    assert state.timeline[-1].kind == "late_fee_failed"
    assert not isinstance(decide(state, at(6, 9)), AddLateFee)


def test_a_fee_that_comes_to_nothing_asks_the_biller_for_nothing():
    state = open_case(fee_policy(percent="0.001"))
    step = decide(state, at(5, 9))
    assert step.amount == 0 and late_fee_request(state, step) is None
    fold_late_fee(state, step, None, at(5, 9))
    assert state.late_fee is None and not isinstance(decide(state, at(6, 9)), AddLateFee)


def test_the_fee_request_carries_the_case_key():
    state = open_case(fee_policy(fixed=500))
    request = late_fee_request(state, decide(state, at(5, 9)))
    assert request.idempotency_key == "dunning:case-1:late-fee"
    assert (request.amount, request.currency, request.customer_id) == (500, "USD", "cus_1")


def test_messages_name_the_fee_only_once_it_was_added():
    state = open_case(fee_policy(fixed=500))
    step = decide(state, at(1, 9))
    assert notify_request(state, step, at(1, 9)).late_fee is None
    fold_late_fee(state, AddLateFee(amount=500, label="fee"), "ii_1", at(5, 9))
    assert notify_request(state, step, at(5, 9)).late_fee == 500


@pytest.mark.parametrize(
    "hold",
    [
        lambda s, now: s.hold(PauseRequest(reason="ticket", actor="support"), now),
        lambda s, now: s.open_dispute(DisputeOpened(reason="fraudulent", actor="stripe"), now),
        lambda s, now: s.make_promise(PromiseToPay(pay_on=at(8), actor="customer"), now),
        lambda s, now: s.choose_plan(PlanChosen(installments=2, actor="customer"), now),
    ],
    ids=["paused", "disputed", "promised", "plan"],
)
def test_no_fee_while_the_case_is_held(hold):
    policy = make_policy(
        late_fee={"after": timedelta(days=4), "fixed": 500},
        promise_within=timedelta(days=14),
        payment_plans=[{"installments": 2}],
    )
    state = open_case(policy)
    hold(state, at(4, 12))
    for day in (5, 6, 7):
        assert not isinstance(decide(state, at(day, 10)), AddLateFee)


def test_time_held_moves_the_fee_on():
    state = open_case(fee_policy(fixed=500))
    state.hold(PauseRequest(reason="ticket", actor="support"), at(2, 9))
    state.release(ResumeRequest(actor="support"), at(4, 9))
    assert not isinstance(decide(state, at(6, 8)), AddLateFee)
    assert isinstance(decide(state, at(7, 9)), AddLateFee)


def test_no_fee_after_the_case_ended():
    state = open_case(fee_policy(fixed=500))
    state.conclude(Outcome.CANCELLED, "cancelled by support", at(2))
    assert not isinstance(decide(state, at(6, 9)), AddLateFee)
    assert state.late_fee is None and state.amount_due == AMOUNT
