"""Recovery analytics: the report, the A/B comparison, the recovery curve and `report` CLI,
on SQLite and PostgreSQL, against figures worked out by hand from a fixed set of cases."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError
from sqlalchemy import create_engine, make_url, text
from sqlmodel import SQLModel

from activities.store import CaseEvent, CaseStore, Message
from analytics.ab import Arm, Verdict, compare_variants, difference_interval
from analytics.cli import main
from analytics.curve import Curve, CurveLine, recovery_curve, render_html
from analytics.report import Dimension, PageAction, Period, Report, recovery_report
from workflows.models import CaseRecord, CaseStatus, ChargeRequest, ChargeResult
from workflows.policy import DeclineClass

TOKYO = timezone(timedelta(hours=9))
MARCH = {"since": date(2026, 3, 1), "until": date(2026, 3, 31)}


def _march(day: int, hour: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


RECOVERED, CANCELLED = CaseStatus.RECOVERED, CaseStatus.CANCELLED
COLLECTIONS, ACTIVE, PAUSED = CaseStatus.COLLECTIONS, CaseStatus.ACTIVE, CaseStatus.PAUSED
SOFT, HARD = DeclineClass.RETRY_LATER, DeclineClass.NEVER_RETRY
ACTION = DeclineClass.NEEDS_CUSTOMER_ACTION

# id, currency, due at opening, recovered, status, policy, version, segment, variant,
# decline class, opened, closed. Days to recover: u1 3.0, u2 7.5, j1 0.125, j2 5.0.
CASES = [
    ("u1", "USD", 4900, 4900, RECOVERED, "standard", 1, "large", "control", SOFT,
     _march(2, 10), _march(5, 10)),
    ("u2", "USD", 9900, 9900, RECOVERED, "patient", 2, "large", "patient", SOFT,
     _march(3), _march(10, 12)),
    ("u3", "USD", 4900, 0, CANCELLED, "standard", 1, "large", "control", HARD,
     _march(4), _march(20)),
    ("u4", "USD", 2000, 1000, COLLECTIONS, "patient", 2, "large", "patient", ACTION,
     _march(5), _march(30)),
    ("u5", "USD", 4900, 0, ACTIVE, "standard", 1, "default", None, SOFT,
     _march(1), None),
    ("j1", "JPY", 4980, 4980, RECOVERED, "standard", 1, "default", None, SOFT,
     _march(2, 15), _march(2, 18)),
    ("j2", "JPY", 9960, 9960, RECOVERED, "patient", 2, "default", None, SOFT,
     _march(7), _march(12)),
    # 08:30 on 1 April in Tokyo is 23:30 on 31 March in UTC: a March case.
    ("j3", "JPY", 4980, 0, PAUSED, "standard", 1, "default", None, None,
     datetime(2026, 4, 1, 8, 30, tzinfo=TOKYO), None),
    # Outside March, one minute before and right at its ends.
    ("o1", "USD", 4900, 4900, RECOVERED, "standard", 1, "default", None, SOFT,
     datetime(2026, 2, 28, 23, 59, tzinfo=UTC), _march(1, 11)),
    ("o2", "JPY", 4980, 4980, RECOVERED, "standard", 1, "default", None, SOFT,
     datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 4, 3, tzinfo=UTC)),
]  # fmt: skip

# case, step, channel, status. Sent in March: 9, of which 7 to recovered cases.
MESSAGES = [
    ("u1", "reminder-1", "email", "sent"),
    ("u1", "reminder-1", "sms", "sent"),
    ("u2", "reminder-1", "email", "sent"),
    ("u2", "reminder-2", "email", "sent"),
    ("u2", "reminder-3", "email", "failed"),
    ("u3", "reminder-1", "email", "sent"),
    ("u3", "reminder-1", "sms", "skipped"),
    ("u4", "reminder-1", "sms", "sent"),
    ("u4", "reminder-2", "email", "refused"),
    ("j1", "reminder-1", "in_app", "sent"),
    ("j2", "reminder-1", "email", "sent"),
    ("j2", "reminder-2", "email", "sent"),
    ("j2", "reminder-2", "sms", "unconfirmed"),
    ("o1", "reminder-1", "email", "sent"),
    ("o2", "reminder-1", "email", "sent"),
    ("o2", "reminder-1", "sms", "sent"),
]

# case: attempts, the last approved when the case was recovered by a charge.
ATTEMPTS = {"u1": 2, "u2": 3, "u3": 1, "j2": 1}

# case, reason, submission: the "tell us why" answers. In March, by policy: standard v1
# answered u3, u5, j3 (want_to_cancel, cannot_afford, disputing); patient v2 answered u4, j2
# (cannot_afford and other, card_changed). By segment: large u3, u4; default u5, j2, j3.
# u3's second submission repeats its reason and u4 gave two: a case counts once per reason.
FEEDBACK = [
    ("u3", "want_to_cancel", "k1"),
    ("u3", "want_to_cancel", "k2"),
    ("u4", "cannot_afford", "k1"),
    ("u4", "other", "k2"),
    ("u5", "cannot_afford", "k1"),
    ("j2", "card_changed", "k1"),
    ("j3", "disputing", "k1"),
    ("o1", "other", "k1"),  # opened in February
]

# case: its audit lines (kind, actor) in order, an hour apart from opening. Page actions taken
# in March: pay u1, j1; card u1, j2, u5; plan u2, u3; promise u4, j2 (j1's promise, after it
# closed, does not count). Credited to the last one of a recovered case: u1 pay (after its
# card), j1 pay (support's card update is not the customer's), u2 plan (the biller's payment
# of an installment is not a page action), j2 card (after its promise). Of 8 cases and 4
# recovered: pay 2, card 1, plan 1, promise 0.
EVENTS = {
    "u1": [("payment_method_updated", "customer"), ("pay_now", "customer")],
    "u2": [("plan_chosen", "customer"), ("payment_received", "stripe")],
    "u3": [("plan_chosen", "customer")],
    "u4": [("promise_made", "customer")],
    "j1": [("payment_method_updated", "support:kim"), ("pay_now", "customer")],
    "j2": [("promise_made", "customer"), ("payment_method_updated", "customer")],
    "u5": [("payment_method_updated", "customer")],  # still open: taken, not credited
    "o2": [("pay_now", "customer")],  # opened in April
}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path) -> Iterator[CaseStore]:
    """A store holding the cases above, and nothing else."""
    if request.param == "sqlite":
        store = CaseStore(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        # DATABASE_URL's PostgreSQL, or the suite's own (see conftest's `postgres_url`).
        url = make_url(request.getfixturevalue("postgres_url"))
        # A schema of our own: other suites create and drop the same tables in `public`,
        # and two runs at once would trip over each other's CREATE TABLE.
        schema = f"report_{os.getpid()}"
        with create_engine(url).begin() as connection:
            connection.execute(text(f"CREATE SCHEMA IF NOT EXISTS {schema}"))
        url = url.update_query_dict({"options": f"-csearch_path={schema}"})
        store = CaseStore(url.render_as_string(hide_password=False))
        SQLModel.metadata.drop_all(store.engine)
    store.create_schema()
    _seed(store)
    yield store
    store.engine.dispose()
    if request.param == "postgresql":
        with create_engine(url).begin() as connection:
            connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))


def _seed(store: CaseStore) -> None:
    currencies = {}
    for row in CASES:
        case_id, currency, due, recovered, status, policy, version = row[:7]
        segment, variant, decline_class, opened_at, closed_at = row[7:]
        currencies[case_id] = currency
        store.record_case(
            CaseRecord(
                case_id=case_id,
                invoice_id=f"in_{case_id}",
                customer_id=f"cus_{case_id}",
                segment=segment,
                variant=variant,
                decline_class=decline_class,
                status=status,
                amount_due=due - recovered,  # the row keeps what is still due
                amount_recovered=recovered,
                currency=currency,
                policy=policy,
                policy_version=version,
                opened_at=opened_at,
                closed_at=closed_at,
            )
        )
    with store.session() as session:
        for case_id, step, channel, status in MESSAGES:
            session.add(
                Message(
                    case_id=case_id,
                    customer_id=f"cus_{case_id}",
                    step=step,
                    channel=channel,
                    template="reminder_gentle",
                    recipient=f"cus_{case_id}",
                    body="Please update your card.",
                    status=status,
                    created_at=_march(1),
                )
            )
        session.commit()
    for case_id, count in ATTEMPTS.items():
        for attempt in range(1, count + 1):
            request = ChargeRequest(
                case_id=case_id,
                invoice_id=f"in_{case_id}",
                customer_id=f"cus_{case_id}",
                attempt=attempt,
                amount=4900,
                currency=currencies[case_id],
            )
            approved = attempt == count and case_id != "u3"
            decline = None if approved else "insufficient_funds"
            store.record_attempt(request, ChargeResult(approved=approved, decline_code=decline))
    opened = {row[0]: row[10] for row in CASES}
    for case_id, reason, submission in FEEDBACK:
        store.record_feedback(case_id, f"cus_{case_id}", reason, "", submission)
    with store.session() as session:
        for case_id, lines in EVENTS.items():
            for seq, (kind, actor) in enumerate(lines, start=1):
                at = opened[case_id] + timedelta(hours=seq)
                session.add(CaseEvent(case_id=case_id, seq=seq, at=at, kind=kind, actor=actor))
        # After j1 closed (3 hours after opening): a late step credits nothing.
        late = opened["j1"] + timedelta(hours=5)
        session.add(CaseEvent(case_id="j1", seq=9, at=late, kind="promise_made", actor="customer"))
        session.commit()


def _group(report: Report, dimension: Dimension, label: str):
    return next(g for g in report.groups[dimension] if g.label == label)


def _labels(report: Report, dimension: Dimension) -> list[str]:
    return [g.label for g in report.groups[dimension]]


# The report: all cases -------------------------------------------------------------------


def test_recovery_rate_and_money_per_currency_never_added_across_currencies(store):
    report = recovery_report(store, **MARCH)

    by_currency = {c.currency: c for c in report.totals.currencies}
    assert list(by_currency) == ["JPY", "USD"]
    jpy, usd = by_currency["JPY"], by_currency["USD"]
    assert (jpy.cases, jpy.recovered_cases, jpy.recovery_rate) == (3, 2, pytest.approx(2 / 3))
    assert (jpy.amount_due, jpy.amount_recovered) == (19920, 14940)
    assert (usd.cases, usd.recovered_cases, usd.recovery_rate) == (5, 2, 0.4)
    # The amount due at opening, not what is left; u4's partial payment counts as recovered.
    assert (usd.amount_due, usd.amount_recovered) == (26600, 15800)
    assert (report.totals.cases, report.totals.recovered_cases) == (8, 4)
    assert report.totals.recovery_rate == 0.5


def test_outcome_mix_counts_paused_and_active_cases_as_open(store):
    outcomes = recovery_report(store, **MARCH).totals.outcomes

    assert outcomes.model_dump() == {"recovered": 4, "cancelled": 1, "collections": 1, "open": 2}


def test_median_days_to_recover_and_messages_per_recovered_case(store):
    totals = recovery_report(store, **MARCH).totals

    assert totals.median_days_to_recover == 4.0  # of 0.125, 3.0, 5.0 and 7.5
    assert totals.messages_sent == 9  # failed, skipped, refused and unconfirmed do not count
    assert totals.messages_per_recovered_case == 7 / 4


# The report: groupings -------------------------------------------------------------------


def test_grouped_by_policy_name_and_version(store):
    report = recovery_report(store, **MARCH)

    assert _labels(report, Dimension.POLICY) == ["patient v2", "standard v1"]
    patient = _group(report, Dimension.POLICY, "patient v2")
    assert patient.key == {"policy": "patient", "policy_version": 2}
    assert (patient.cases, patient.recovered_cases) == (3, 2)
    assert patient.recovery_rate == pytest.approx(2 / 3)
    assert patient.outcomes.model_dump() == {
        "recovered": 2,
        "cancelled": 0,
        "collections": 1,
        "open": 0,
    }
    assert patient.median_days_to_recover == 6.25  # of 5.0 and 7.5
    assert (patient.messages_sent, patient.messages_per_recovered_case) == (5, 2.0)
    money = {c.currency: (c.cases, c.recovered_cases, c.amount_due, c.amount_recovered)
             for c in patient.currencies}  # fmt: skip
    assert money == {"JPY": (1, 1, 9960, 9960), "USD": (2, 1, 11900, 10900)}

    standard = _group(report, Dimension.POLICY, "standard v1")
    assert (standard.cases, standard.recovered_cases, standard.recovery_rate) == (5, 2, 0.4)
    assert standard.median_days_to_recover == 1.5625  # of 0.125 and 3.0
    assert (standard.messages_sent, standard.messages_per_recovered_case) == (4, 1.5)
    money = {c.currency: (c.cases, c.recovered_cases, c.amount_due, c.amount_recovered)
             for c in standard.currencies}  # fmt: skip
    assert money == {"JPY": (2, 1, 9960, 4980), "USD": (3, 1, 14700, 4900)}


def test_grouped_by_variant_segment_and_decline_class(store):
    report = recovery_report(store, **MARCH)

    def counts(dimension: Dimension) -> dict[str, tuple[int, int]]:
        return {g.label: (g.cases, g.recovered_cases) for g in report.groups[dimension]}

    assert counts(Dimension.VARIANT) == {
        "large/control": (2, 1),
        "large/patient": (2, 1),
        "(no variant)": (4, 2),
    }
    assert _labels(report, Dimension.VARIANT)[-1] == "(no variant)"
    assert _group(report, Dimension.VARIANT, "large/patient").key == {
        "segment": "large",
        "variant": "patient",
    }
    assert counts(Dimension.SEGMENT) == {"default": (4, 2), "large": (4, 2)}
    assert counts(Dimension.DECLINE_CLASS) == {
        "needs_customer_action": (1, 0),
        "never_retry": (1, 0),
        "retry_later": (5, 4),
        "(unknown)": (1, 0),
    }
    assert _labels(report, Dimension.DECLINE_CLASS)[-1] == "(unknown)"
    assert _group(report, Dimension.DECLINE_CLASS, "retry_later").recovery_rate == 0.8


def test_grouped_by_channel_counts_messages_sent_and_cases_reached_on_it(store):
    report = recovery_report(store, **MARCH)

    figures = {
        g.label: (g.messages_sent, g.cases, g.recovered_cases, g.recovery_rate)
        for g in report.groups[Dimension.CHANNEL]
    }
    # u3's skipped SMS, j2's unconfirmed SMS and u4's refused email reached nobody.
    assert figures == {
        "email": (6, 4, 3, 0.75),
        "in_app": (1, 1, 1, 1.0),
        "sms": (2, 2, 1, 0.5),
    }
    email = _group(report, Dimension.CHANNEL, "email")
    assert email.messages_per_recovered_case == pytest.approx(5 / 3)
    assert {c.currency: c.cases for c in email.currencies} == {"JPY": 1, "USD": 3}


# The report: date range -------------------------------------------------------------------


def test_date_range_keeps_cases_opened_in_it_by_utc_day_both_ends_included(store):
    middle = recovery_report(store, since=date(2026, 3, 4), until=date(2026, 3, 5))
    assert (middle.totals.cases, middle.totals.recovered_cases) == (2, 0)  # u3 and u4
    assert middle.totals.recovery_rate == 0.0
    [usd] = middle.totals.currencies
    assert (usd.currency, usd.amount_due, usd.amount_recovered) == ("USD", 6900, 1000)
    assert middle.totals.messages_sent == 2
    assert middle.totals.median_days_to_recover is None
    assert middle.totals.messages_per_recovered_case is None

    assert recovery_report(store, since=date(2026, 3, 1), until=date(2026, 3, 1)).totals.cases == 1
    last_day = recovery_report(store, since=date(2026, 3, 31), until=date(2026, 3, 31))
    assert [g.key["policy"] for g in last_day.groups[Dimension.POLICY]] == ["standard"]
    assert last_day.totals.currencies[0].amount_due == 4980  # j3, opened in Tokyo's April
    assert recovery_report(store, since=date(2026, 4, 1)).totals.recovered_cases == 1  # o2


def test_without_a_range_every_case_counts(store):
    report = recovery_report(store)

    assert (report.totals.cases, report.totals.recovered_cases) == (10, 6)
    assert {c.currency: (c.cases, c.recovered_cases) for c in report.totals.currencies} == {
        "JPY": (4, 3),
        "USD": (6, 3),
    }
    assert report.totals.messages_sent == 12


def test_an_empty_range_has_no_rates(store):
    report = recovery_report(store, since=date(2027, 1, 1))

    assert report.totals.cases == 0
    assert report.totals.recovery_rate is None
    assert report.totals.currencies == []
    assert all(groups == [] for groups in report.groups.values())


def test_since_after_until_is_refused():
    with pytest.raises(ValidationError, match="after"):
        Period(since=date(2026, 3, 2), until=date(2026, 3, 1))


def test_the_report_names_each_segments_experiment(store):
    [experiment] = recovery_report(store, **MARCH).experiments

    assert (experiment.segment, experiment.control) == ("large", "control")
    control, patient = experiment.arms
    assert (control.variant, control.verdict) == ("control", Verdict.CONTROL)
    # 1 of 2 against 1 of 2: d = 0, se = sqrt(.25/2 + .25/2) = 0.5, 0 ± 0.98.
    assert (patient.variant, patient.difference) == ("patient", 0.0)
    assert patient.ci_low == pytest.approx(-0.98)
    assert patient.ci_high == pytest.approx(0.98)
    assert patient.verdict == Verdict.NOT_SIGNIFICANT


def test_the_report_parses_back_from_its_json(store):
    report = recovery_report(store, **MARCH)

    assert Report.model_validate_json(report.model_dump_json()) == report


# The customer's side: feedback reasons and page actions ----------------------------------

REASONS = ["cannot_afford", "card_changed", "disputing", "want_to_cancel", "other"]


def _reasons(counts) -> tuple:
    return (counts.answered, *(counts.reasons[r] for r in REASONS))


def test_feedback_reasons_count_cases_once_per_reason_over_all_cases(store):
    feedback = recovery_report(store, **MARCH).feedback

    # answered, cannot_afford, card_changed, disputing, want_to_cancel, other
    assert _reasons(feedback.totals) == (5, 2, 1, 1, 1, 1)


def test_feedback_reasons_by_policy_and_by_segment(store):
    feedback = recovery_report(store, **MARCH).feedback

    assert {g.label: _reasons(g) for g in feedback.by_policy} == {
        "patient v2": (2, 1, 1, 0, 0, 1),
        "standard v1": (3, 1, 0, 1, 1, 0),
    }
    assert [g.label for g in feedback.by_segment] == ["default", "large"]
    assert {g.label: _reasons(g) for g in feedback.by_segment} == {
        "default": (3, 1, 1, 1, 0, 0),
        "large": (2, 1, 0, 0, 1, 1),
    }
    assert feedback.by_policy[0].key == {"policy": "patient", "policy_version": 2}


def test_feedback_follows_the_period_of_the_cases(store):
    february = recovery_report(store, until=date(2026, 2, 28)).feedback

    assert _reasons(february.totals) == (1, 0, 0, 0, 0, 1)  # o1
    assert [g.label for g in february.by_policy] == ["standard v1"]
    nothing = recovery_report(store, since=date(2026, 5, 1)).feedback
    assert _reasons(nothing.totals) == (0, 0, 0, 0, 0, 0)
    assert (nothing.by_policy, nothing.by_segment) == ([], [])


def test_each_recovered_case_is_credited_to_the_customers_last_page_action(store):
    actions = {a.action: a for a in recovery_report(store, **MARCH).page_actions}

    assert list(actions) == [PageAction.PAY, PageAction.CARD, PageAction.PLAN, PageAction.PROMISE]
    figures = {
        name: (a.cases, a.recovered, a.share_of_cases, a.share_of_recovered)
        for name, a in actions.items()
    }
    assert figures == {
        PageAction.PAY: (2, 2, 2 / 8, 2 / 4),
        PageAction.CARD: (3, 1, 1 / 8, 1 / 4),
        PageAction.PLAN: (2, 1, 1 / 8, 1 / 4),
        PageAction.PROMISE: (2, 0, 0.0, 0.0),
    }


def test_page_actions_of_cases_outside_the_period_do_not_count(store):
    april = {a.action: a for a in recovery_report(store, since=date(2026, 4, 1)).page_actions}

    assert (april[PageAction.PAY].cases, april[PageAction.PAY].recovered) == (1, 1)  # o2
    assert april[PageAction.PAY].share_of_cases == 1.0
    assert all(a.cases == 0 for name, a in april.items() if name != PageAction.PAY)
    empty = recovery_report(store, since=date(2026, 5, 1)).page_actions
    assert [(a.cases, a.share_of_cases, a.share_of_recovered) for a in empty] == [
        (0, None, None)
    ] * 4


# A/B comparison ---------------------------------------------------------------------------


def _arms(**counts: tuple[int, int]) -> list[Arm]:
    return [Arm(variant=name, recovered=r, cases=n) for name, (r, n) in counts.items()]


def test_a_clearly_better_variant_is_significantly_higher():
    # 40/100 vs 55/100: d = 0.15, se = sqrt(.4*.6/100 + .55*.45/100) = sqrt(0.004875)
    # = 0.0698212, 1.96 se = 0.1368496.
    result = compare_variants("large", _arms(patient=(55, 100), control=(40, 100)))

    assert result.control == "control"
    control, patient = result.arms
    assert (control.recovery_rate, control.difference) == (0.4, None)
    assert patient.recovery_rate == 0.55
    assert patient.difference == pytest.approx(0.15)
    assert patient.ci_low == pytest.approx(0.0131504, abs=1e-7)
    assert patient.ci_high == pytest.approx(0.2868496, abs=1e-7)
    assert patient.verdict == Verdict.HIGHER


def test_an_interval_containing_zero_is_not_significant():
    # 40/100 vs 45/100: the same se as above, 0.05 ± 0.1368496.
    _, patient = compare_variants("large", _arms(control=(40, 100), patient=(45, 100))).arms

    assert patient.ci_low == pytest.approx(-0.0868496, abs=1e-7)
    assert patient.ci_high == pytest.approx(0.1868496, abs=1e-7)
    assert patient.verdict == Verdict.NOT_SIGNIFICANT


def test_a_clearly_worse_variant_is_significantly_lower():
    # 40/100 vs 20/100: se = sqrt(.0024 + .0016) = 0.0632456, 1.96 se = 0.1239613.
    _, harsh = compare_variants("large", _arms(control=(40, 100), harsh=(20, 100))).arms

    assert harsh.difference == pytest.approx(-0.2)
    assert harsh.ci_low == pytest.approx(-0.3239613, abs=1e-7)
    assert harsh.ci_high == pytest.approx(-0.0760387, abs=1e-7)
    assert harsh.verdict == Verdict.LOWER


def test_arms_of_different_sizes():
    # 30/200 = .15 vs 45/150 = .30: se = sqrt(.1275/200 + .21/150) = sqrt(.0020375)
    # = 0.0451387, 1.96 se = 0.0884719.
    difference, low, high = difference_interval(
        Arm(variant="control", recovered=30, cases=200), Arm(variant="b", recovered=45, cases=150)
    )

    assert difference == pytest.approx(0.15)
    assert (low, high) == (pytest.approx(0.0615281, abs=1e-7), pytest.approx(0.2384719, abs=1e-7))


def test_the_control_is_the_first_variant_by_name_unless_named():
    arms = _arms(patient=(5, 10), control=(4, 10), aggressive=(3, 10))

    assert compare_variants("s", arms).control == "aggressive"
    named = compare_variants("s", arms, control="control")
    assert [a.variant for a in named.arms] == ["control", "aggressive", "patient"]
    with pytest.raises(ValueError, match="no variant named"):
        compare_variants("s", arms, control="gentle")


def test_variants_without_cases_or_with_equal_zero_rates():
    result = compare_variants("s", _arms(a=(0, 10), b=(0, 10), c=(0, 0)))

    _, b, c = result.arms
    assert (b.difference, b.ci_low, b.ci_high) == (0.0, 0.0, 0.0)
    assert b.verdict == Verdict.NOT_SIGNIFICANT  # [0, 0] contains 0
    assert (c.recovery_rate, c.difference, c.verdict) == (None, None, Verdict.NO_CASES)


def test_an_arm_cannot_recover_more_cases_than_it_has():
    with pytest.raises(ValidationError):
        Arm(variant="a", recovered=3, cases=2)


# The recovery curve -----------------------------------------------------------------------


def test_curve_by_policy_is_the_cumulative_share_recovered_by_each_day(store):
    curve = recovery_curve(store, by="policy", **MARCH)

    assert curve.days == 7  # u2 recovered after 7.5 days, the last
    patient, standard = curve.lines
    assert (patient.label, patient.cases) == ("patient v2", 3)
    assert patient.recovered == [0, 0, 0, 0, 0, 1, 1, 2]  # j2 on day 5, u2 on day 7
    assert patient.shares[4:] == [0.0, pytest.approx(1 / 3), pytest.approx(1 / 3),
                                  pytest.approx(2 / 3)]  # fmt: skip
    assert (standard.label, standard.cases) == ("standard v1", 5)
    # j1 after 3 hours counts on day 0; u1 after exactly 72 hours on day 3, not day 2.
    assert standard.recovered == [1, 1, 1, 2, 2, 2, 2, 2]
    assert standard.shares[0] == 0.2
    assert standard.shares[3] == 0.4


def test_curve_by_variant_leaves_out_cases_outside_experiments(store):
    curve = recovery_curve(store, by="variant", days=10, **MARCH)

    assert [(line.label, line.cases) for line in curve.lines] == [
        ("large/control", 2),
        ("large/patient", 2),
    ]
    control, patient = curve.lines
    assert len(control.shares) == 11
    assert control.shares[2:4] == [0.0, 0.5]
    assert patient.shares[6:8] == [0.0, 0.5]
    assert patient.shares[10] == 0.5


def test_curve_is_drawn_as_a_self_contained_html_page(store):
    html = render_html(recovery_curve(store, by="policy", **MARCH))

    assert html.startswith("<!DOCTYPE html>")
    assert "<svg" in html and "<polyline" in html
    assert "Recovery curve by policy, cases opened 2026-03-01 to 2026-03-31" in html
    assert "standard v1" in html and "patient v2" in html  # the legend
    assert "days since the payment failed" in html  # the x axis
    assert "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)
    assert "http://" not in html and "https://" not in html


def test_curve_labels_are_escaped_and_an_empty_curve_still_renders():
    line = CurveLine(label="<b>new</b>", key={}, cases=1, recovered=[0, 1], shares=[0.0, 1.0])
    html = render_html(Curve(period=Period(), by="variant", days=1, lines=[line]))
    assert "&lt;b&gt;new&lt;/b&gt;" in html and "<b>" not in html

    empty = render_html(Curve(period=Period(since=date(2027, 1, 1)), by="policy", days=1, lines=[]))
    assert "No cases in this range" in empty
    assert "cases opened from 2027-01-01" in empty


# The command line ---------------------------------------------------------------------------


def _url(store: CaseStore) -> str:
    return store.engine.url.render_as_string(hide_password=False)


def test_cli_prints_a_table_with_money_formatted_per_currency(store, capsys):
    code = main(["report", "--since", "2026-03-01", "--until", "2026-03-31",
                 "--database-url", _url(store)])  # fmt: skip

    out = capsys.readouterr().out
    assert code == 0
    assert "Recovery report: cases opened 2026-03-01 to 2026-03-31 (UTC)" in out
    assert "Outcomes: 4 recovered, 1 cancelled, 1 collections, 2 open" in out
    assert "¥19,920" in out and "¥14,940" in out  # JPY due and recovered
    assert "$266.00" in out and "$158.00" in out  # USD due and recovered
    assert "standard v1" in out and "large/patient" in out and "in_app" in out
    assert "A/B test in segment large (control: control)" in out
    assert "not significant" in out
    assert "Why customers have not paid" in out
    # answered, then cannot_afford, card_changed, disputing, want_to_cancel, other
    assert re.search(r"^all cases\s+5\s+2\s+1\s+1\s+1\s+1$", out, re.M)
    assert re.search(r"^patient v2\s+2\s+1\s+1\s+0\s+0\s+1$", out, re.M)
    assert re.search(r"^large\s+2\s+1\s+0\s+0\s+1\s+1$", out, re.M)
    assert "Recovered through the recovery page" in out
    assert re.search(r"^pay\s+2\s+2\s+25\.0%\s+50\.0%$", out, re.M)
    assert re.search(r"^promise\s+2\s+0\s+0\.0%\s+0\.0%$", out, re.M)


def test_cli_by_shows_one_grouping(store, capsys):
    code = main(["report", "--by", "channel", "--database-url", _url(store)])

    out = capsys.readouterr().out
    assert code == 0
    assert "By channel" in out and "By policy" not in out and "A/B test" not in out
    assert "Why customers have not paid" not in out and "recovery page" not in out


def test_cli_by_segment_shows_the_reasons_by_segment_alone(store, capsys):
    code = main(["report", "--by", "segment", "--since", "2026-03-01", "--until", "2026-03-31",
                 "--database-url", _url(store)])  # fmt: skip

    out = capsys.readouterr().out.split("Why customers have not paid")[1]
    assert code == 0
    assert re.search(r"^default\s+3\s+1\s+1\s+1\s+0\s+0$", out, re.M)
    assert "patient v2" not in out and "all cases" not in out


def test_cli_json_parses_back_into_the_report(store, capsys):
    code = main(["report", "--json", "--since", "2026-03-01", "--until", "2026-03-31",
                 "--database-url", _url(store)])  # fmt: skip

    report = Report.model_validate_json(capsys.readouterr().out)
    assert code == 0
    assert report == recovery_report(store, **MARCH)
    assert report.groups[Dimension.CHANNEL][0].label == "email"


def test_cli_writes_the_chart(store, tmp_path, capsys):
    chart = tmp_path / "curve.html"

    code = main(["report", "--by", "variant", "--chart", str(chart), "--database-url",
                 _url(store)])  # fmt: skip

    assert code == 0
    assert "<svg" in chart.read_text(encoding="utf-8")
    assert "Recovery curve by variant" in chart.read_text(encoding="utf-8")
    assert capsys.readouterr().err == f"chart: {chart}\n"


@pytest.mark.parametrize("flag", ["--since", "--until"])
@pytest.mark.parametrize("value", ["2026-02-30", "20260301", "2026-W10-1", "yesterday"])
def test_cli_bad_date_is_one_line_and_exit_1(capsys, flag, value):
    code = main(["report", flag, value])

    captured = capsys.readouterr()
    assert code == 1
    assert captured.err == f"dunning report: {flag} '{value}' is not a date: use YYYY-MM-DD\n"
    assert captured.out == ""


def test_cli_since_after_until_is_one_line(capsys):
    code = main(["report", "--since", "2026-03-02", "--until", "2026-03-01"])

    assert code == 1
    assert capsys.readouterr().err == (
        "dunning report: --since 2026-03-02 is after --until 2026-03-01\n"
    )


def test_cli_chart_by_segment_is_refused(capsys, tmp_path):
    code = main(["report", "--by", "segment", "--chart", str(tmp_path / "c.html")])

    assert code == 1
    assert capsys.readouterr().err.startswith("dunning report: --chart draws one line per")
    assert not (tmp_path / "c.html").exists()


def test_cli_unreachable_database_is_one_line(capsys):
    # Port 1 refuses at once: nothing listens there.
    code = main(["report", "--database-url", "postgresql+psycopg://postgres@127.0.0.1:1/test"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("dunning report: cannot read the store (postgresql+psycopg: ")
    assert "OperationalError" in err and "Connection refused" in err
    assert err.endswith("; check DATABASE_URL or --database-url\n")
    assert err.count("\n") == 1


def test_cli_store_without_tables_says_so(capsys, tmp_path):
    (tmp_path / "empty.db").touch()

    code = main(["report", "--database-url", f"sqlite:///{tmp_path / 'empty.db'}"])

    assert code == 1
    assert capsys.readouterr().err == (
        "dunning report: cannot read the store (sqlite: OperationalError: no such table: "
        "cases); check DATABASE_URL or --database-url\n"
    )


def test_cli_missing_sqlite_store_is_one_line_and_creates_nothing(capsys, tmp_path):
    missing = tmp_path / "nowhere" / "store.db"

    code = main(["report", "--database-url", f"sqlite:///{missing}"])

    assert code == 1
    assert capsys.readouterr().err == (
        f"dunning report: no store at {missing}: check DATABASE_URL or --database-url\n"
    )
    assert not missing.parent.exists()
