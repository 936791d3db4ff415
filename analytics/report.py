"""Recovery analytics from the case store: how many cases came back, how much money, how fast.

A report covers the cases *opened* in a range of days (UTC, both ends included) and groups
them by policy (name and version), A/B variant, segment, decline class and channel. Amounts
stay in minor units per currency and are never added across currencies. Counting happens in
the database (GROUP BY); only recovered cases' open and close times come back row by row, for
the median, which SQLite and PostgreSQL do not compute alike.

Definitions, so two readers get the same numbers:
- recovery rate: recovered cases over all cases opened in the range, open ones included
  (a range of recent cases reads low until its cases finish);
- amount due at opening: the row's amount due plus what was recovered (a case lowers its
  amount due by exactly what it recovers); recovered amount: all money recovered, partial
  payments on cases that did not end recovered included;
- days to recover: closed_at - opened_at of recovered cases, in days (fractions kept);
- messages count only those with status `sent`; messages per recovered case: messages sent to
  recovered cases over recovered cases;
- by channel: a channel's cases are those with at least one message sent on it, and its
  messages are those sent on it;
- feedback: a reason counts the cases that gave it on the "tell us why" page, once per case
  however often it was given (a case that gave two reasons counts under both); answered
  counts the cases that gave any;
- page actions: the customer's own steps on the recovery page, read from the audit trail:
  pay (`pay_now`: the case charged at the customer's request), card
  (`payment_method_updated` by the customer), plan (`plan_chosen`), promise (`promise_made`).
  A recovered case is credited to the last of them before it closed (so no case counts
  twice, and a card update counts only when it was followed by the recovery, with no other
  step of the customer's in between); its share is
  of all cases, and of recovered cases.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field, model_validator
from sqlalchemy import ColumnElement, FromClause, case, func, or_, select

from activities.store import Case, CaseEvent, CaseStore, CustomerFeedback, Message
from analytics.ab import ABComparison, Arm, compare_variants
from workflows.models import CaseStatus, FeedbackReason

CASES = Case.__table__
MESSAGES = Message.__table__
EVENTS = CaseEvent.__table__
FEEDBACK = CustomerFeedback.__table__
CUSTOMER = "customer"
SENT = "sent"
RECOVERED = CaseStatus.RECOVERED.value
OUTCOMES = (CaseStatus.RECOVERED.value, CaseStatus.CANCELLED.value, CaseStatus.COLLECTIONS.value)
DAY = timedelta(days=1)


class Dimension(StrEnum):
    """What a report can group cases by."""

    POLICY = "policy"
    VARIANT = "variant"
    SEGMENT = "segment"
    DECLINE_CLASS = "decline_class"
    CHANNEL = "channel"


class Period(BaseModel):
    """The days whose opened cases a report covers, in UTC; either end may be open."""

    since: date | None = None
    until: date | None = Field(default=None, description="Included: the whole day counts.")

    @model_validator(mode="after")
    def _in_order(self) -> Period:
        if self.since and self.until and self.since > self.until:
            raise ValueError(f"--since {self.since} is after --until {self.until}")
        return self

    def conditions(self) -> list[ColumnElement[bool]]:
        """SQL conditions on `cases.opened_at` selecting the period's cases."""
        opened = CASES.c.opened_at
        conditions = []
        if self.since:
            conditions.append(opened >= datetime.combine(self.since, time(), UTC))
        if self.until:
            conditions.append(opened < datetime.combine(self.until, time(), UTC) + DAY)
        return conditions

    @property
    def label(self) -> str:
        """The period in words, for titles: "cases opened 2026-03-01 to 2026-03-31"."""
        if self.since and self.until:
            return f"cases opened {self.since} to {self.until}"
        if self.since:
            return f"cases opened from {self.since}"
        if self.until:
            return f"cases opened up to {self.until}"
        return "all cases"


class CurrencyFigures(BaseModel):
    """One currency's cases and money, in that currency's minor units."""

    currency: str
    cases: int
    recovered_cases: int
    recovery_rate: float | None
    amount_due: int = Field(description="Due when the cases opened, minor units.")
    amount_recovered: int = Field(description="Recovered, partial payments included.")


class OutcomeMix(BaseModel):
    """How many cases ended each way; `open` ones have not ended yet."""

    recovered: int = 0
    cancelled: int = 0
    collections: int = 0
    open: int = 0


class Figures(BaseModel):
    """The recovery figures of a set of cases."""

    cases: int = 0
    recovered_cases: int = 0
    recovery_rate: float | None = Field(default=None, description="None without cases.")
    outcomes: OutcomeMix = Field(default_factory=OutcomeMix)
    currencies: list[CurrencyFigures] = Field(default_factory=list)
    median_days_to_recover: float | None = None
    messages_sent: int = 0
    messages_per_recovered_case: float | None = None


class Group(Figures):
    """The figures of one group: `key` holds the grouped columns, `label` shows them."""

    label: str
    key: dict[str, str | int | None]


class FeedbackCounts(BaseModel):
    """What one group's customers told us on the "tell us why" page: how many cases answered,
    and how many cases gave each reason (every reason listed, zeros included)."""

    label: str
    key: dict[str, str | int | None]
    answered: int = 0
    reasons: dict[FeedbackReason, int] = Field(
        default_factory=lambda: dict.fromkeys(FeedbackReason, 0)
    )


class FeedbackFigures(BaseModel):
    """The reasons customers gave: over all cases, by policy and by segment."""

    totals: FeedbackCounts = Field(
        default_factory=lambda: FeedbackCounts(label="all cases", key={})
    )
    by_policy: list[FeedbackCounts] = Field(default_factory=list)
    by_segment: list[FeedbackCounts] = Field(default_factory=list)


class PageAction(StrEnum):
    """A step the customer takes on the recovery page that can bring the money back."""

    PAY = "pay"
    CARD = "card"
    PLAN = "plan"
    PROMISE = "promise"


class ActionFigures(BaseModel):
    """How often customers took one page action, and the cases it recovered."""

    action: PageAction
    cases: int = Field(description="Cases in which the customer took it.")
    recovered: int = Field(description="Recovered cases whose last customer step it was.")
    share_of_cases: float | None = Field(description="`recovered` over all cases.")
    share_of_recovered: float | None = Field(description="`recovered` over recovered cases.")


class Report(BaseModel):
    """Everything `dunning report` shows; `experiments` compares each A/B segment's variants,
    `feedback` and `page_actions` are the customer's side."""

    period: Period
    totals: Figures
    groups: dict[Dimension, list[Group]]
    experiments: list[ABComparison]
    feedback: FeedbackFigures = Field(default_factory=FeedbackFigures)
    page_actions: list[ActionFigures] = Field(default_factory=list)


@dataclass(frozen=True)
class Grouping:
    """How a dimension groups cases: the key columns, where its cases and messages come from."""

    names: tuple[str, ...]
    case_keys: tuple[ColumnElement[Any], ...]
    message_keys: tuple[ColumnElement[Any], ...]
    cases_from: FromClause
    label: Callable[[dict[str, Any]], str]


def _reached() -> FromClause:
    """(case, channel) once per channel a case got at least one sent message on."""
    return (
        select(MESSAGES.c.case_id, MESSAGES.c.channel)
        .where(MESSAGES.c.status == SENT)
        .distinct()
        .subquery("reached")
    )


def _groupings() -> dict[Dimension | None, Grouping]:
    reached = _reached()

    def same(*names: str) -> dict[str, Any]:
        columns = tuple(CASES.c[name] for name in names)
        return {"names": names, "case_keys": columns, "message_keys": columns}

    def variant_label(key: dict[str, Any]) -> str:
        if key["variant"] is None:
            return "(no variant)"
        return f"{key['segment'] or '(no segment)'}/{key['variant']}"

    return {
        None: Grouping(**same(), cases_from=CASES, label=lambda key: "all cases"),
        Dimension.POLICY: Grouping(
            **same("policy", "policy_version"),
            cases_from=CASES,
            label=lambda key: f"{key['policy']} v{key['policy_version']}",
        ),
        Dimension.VARIANT: Grouping(
            **same("segment", "variant"), cases_from=CASES, label=variant_label
        ),
        Dimension.SEGMENT: Grouping(
            **same("segment"),
            cases_from=CASES,
            label=lambda key: key["segment"] or "(no segment)",
        ),
        Dimension.DECLINE_CLASS: Grouping(
            **same("decline_class"),
            cases_from=CASES,
            label=lambda key: key["decline_class"] or "(unknown)",
        ),
        Dimension.CHANNEL: Grouping(
            names=("channel",),
            case_keys=(reached.c.channel,),
            message_keys=(MESSAGES.c.channel,),
            cases_from=CASES.join(reached, reached.c.case_id == CASES.c.case_id),
            label=lambda key: key["channel"],
        ),
    }


GROUPINGS = _groupings()


def recovery_report(
    store: CaseStore, since: date | None = None, until: date | None = None
) -> Report:
    """The recovery figures of the cases opened from `since` to `until` (UTC days, both
    included; None leaves that end open), overall and by every dimension."""
    period = Period(since=since, until=until)
    with store.engine.connect() as connection:
        found = {
            dimension: _figures(connection, grouping, period)
            for dimension, grouping in GROUPINGS.items()
        }
        feedback = FeedbackFigures(
            totals=_feedback(connection, None, period)[0],
            by_policy=_feedback(connection, Dimension.POLICY, period),
            by_segment=_feedback(connection, Dimension.SEGMENT, period),
        )
        actions = _page_actions(connection, period)
    totals = found.pop(None).get((), {})
    groups = {
        dimension: [
            _group(dimension, key, figures)
            for key, figures in sorted(by_key.items(), key=lambda item: group_order(item[0]))
        ]
        for dimension, by_key in found.items()
    }
    totals = Figures(**totals)
    return Report(
        period=period,
        totals=totals,
        groups=groups,
        experiments=_experiments(groups),
        feedback=feedback,
        page_actions=[
            ActionFigures(
                action=action,
                cases=len(took),
                recovered=actions.credited[action],
                share_of_cases=_rate(actions.credited[action], totals.cases),
                share_of_recovered=_rate(actions.credited[action], totals.recovered_cases),
            )
            for action, took in actions.took.items()
        ],
    )


def _group(dimension: Dimension, key: tuple, figures: dict[str, Any]) -> Group:
    grouping = GROUPINGS[dimension]
    named = dict(zip(grouping.names, key, strict=True))
    return Group(label=grouping.label(named), key=named, **figures)


def group_order(key: tuple) -> tuple:
    """Groups in key order; a group missing a value (no variant, no segment) comes last."""
    values = tuple((value is None, "" if value is None else value) for value in key)
    return (None in key, values)


def _figures(connection, grouping: Grouping, period: Period) -> dict[tuple, dict[str, Any]]:
    """Each group's figures (as Figures fields), keyed by its key values."""
    where = period.conditions()
    nkeys = len(grouping.case_keys)
    tallies: dict[tuple, _Tally] = defaultdict(_Tally)

    counts = (
        select(
            *grouping.case_keys,
            CASES.c.currency,
            CASES.c.status,
            func.count(),
            func.sum(CASES.c.amount_due + CASES.c.amount_recovered),
            func.sum(CASES.c.amount_recovered),
        )
        .select_from(grouping.cases_from)
        .where(*where)
        .group_by(*grouping.case_keys, CASES.c.currency, CASES.c.status)
    )
    for row in connection.execute(counts):
        key, (currency, status, cases, due, recovered) = tuple(row[:nkeys]), row[nkeys:]
        tallies[key].add_cases(currency, status, cases, int(due or 0), int(recovered or 0))

    messages = (
        select(*grouping.message_keys, CASES.c.status, func.count())
        .select_from(MESSAGES.join(CASES, MESSAGES.c.case_id == CASES.c.case_id))
        .where(*where, MESSAGES.c.status == SENT)
        .group_by(*grouping.message_keys, CASES.c.status)
    )
    for row in connection.execute(messages):
        key, (status, sent) = tuple(row[:nkeys]), row[nkeys:]
        tallies[key].add_messages(status, sent)

    # Days between two instants differ by dialect in SQL; one row per recovered case is cheap.
    recovered = (
        select(*grouping.case_keys, CASES.c.opened_at, CASES.c.closed_at)
        .select_from(grouping.cases_from)
        .where(*where, CASES.c.status == RECOVERED, CASES.c.closed_at.is_not(None))
    )
    for row in connection.execute(recovered):
        key, (opened_at, closed_at) = tuple(row[:nkeys]), row[nkeys:]
        tallies[key].days.append((closed_at - opened_at) / DAY)

    return {key: tally.figures() for key, tally in tallies.items() if tally.cases}


class _Tally:
    """Counts of one group as they come back from the database."""

    def __init__(self) -> None:
        self.currencies: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self.outcomes: dict[str, int] = defaultdict(int)
        self.messages_sent = 0
        self.messages_to_recovered = 0
        self.days: list[float] = []

    @property
    def cases(self) -> int:
        return sum(figures[0] for figures in self.currencies.values())

    def add_cases(self, currency: str, status: str, cases: int, due: int, recovered: int) -> None:
        figures = self.currencies[currency]
        figures[0] += cases
        if status == RECOVERED:
            figures[1] += cases
        figures[2] += due
        figures[3] += recovered
        self.outcomes[status if status in OUTCOMES else "open"] += cases

    def add_messages(self, status: str, sent: int) -> None:
        self.messages_sent += sent
        if status == RECOVERED:
            self.messages_to_recovered += sent

    def figures(self) -> dict[str, Any]:
        recovered = self.outcomes[RECOVERED]
        return {
            "cases": self.cases,
            "recovered_cases": recovered,
            "recovery_rate": _rate(recovered, self.cases),
            "outcomes": OutcomeMix(**self.outcomes),
            "currencies": [
                CurrencyFigures(
                    currency=currency,
                    cases=cases,
                    recovered_cases=won,
                    recovery_rate=_rate(won, cases),
                    amount_due=due,
                    amount_recovered=amount,
                )
                for currency, (cases, won, due, amount) in sorted(self.currencies.items())
            ],
            "median_days_to_recover": statistics.median(self.days) if self.days else None,
            "messages_sent": self.messages_sent,
            "messages_per_recovered_case": _rate(self.messages_to_recovered, recovered),
        }


def _feedback(connection, dimension: Dimension | None, period: Period) -> list[FeedbackCounts]:
    """The cases that answered and the cases per reason, of each group (of all cases for
    None: one entry, with zeros when nobody answered), in group order."""
    grouping = GROUPINGS[dimension]
    keys = grouping.case_keys
    answered_from = FEEDBACK.join(CASES, FEEDBACK.c.case_id == CASES.c.case_id)
    cases = func.count(FEEDBACK.c.case_id.distinct())
    counts: dict[tuple, FeedbackCounts] = {}

    def counts_of(key: tuple) -> FeedbackCounts:
        if key not in counts:
            named = dict(zip(grouping.names, key, strict=True))
            counts[key] = FeedbackCounts(label=grouping.label(named), key=named)
        return counts[key]

    answered = (
        select(*keys, cases).select_from(answered_from).where(*period.conditions()).group_by(*keys)
    )
    for row in connection.execute(answered):
        counts_of(tuple(row[: len(keys)])).answered = row[-1]
    by_reason = (
        select(*keys, FEEDBACK.c.reason, cases)
        .select_from(answered_from)
        .where(*period.conditions(), FEEDBACK.c.reason.in_(list(FeedbackReason)))
        .group_by(*keys, FEEDBACK.c.reason)
    )
    for row in connection.execute(by_reason):
        key, (reason, found) = tuple(row[: len(keys)]), row[len(keys) :]
        counts_of(key).reasons[FeedbackReason(reason)] = found
    if dimension is None:
        return [counts_of(())]
    return [counts[key] for key in sorted(counts, key=group_order)]


# The audit trail's kinds and actors that are the customer's own steps on the recovery page.
_ACTION_EVENTS = {
    PageAction.PAY: (EVENTS.c.kind == "pay_now") & (EVENTS.c.actor == CUSTOMER),
    PageAction.CARD: (EVENTS.c.kind == "payment_method_updated") & (EVENTS.c.actor == CUSTOMER),
    PageAction.PLAN: EVENTS.c.kind == "plan_chosen",
    PageAction.PROMISE: EVENTS.c.kind == "promise_made",
}


@dataclass
class _Actions:
    """Which cases took each page action, and how many recovered cases each is credited with."""

    took: dict[PageAction, set[str]]
    credited: dict[PageAction, int]


def _page_actions(connection, period: Period) -> _Actions:
    """Every page action of the period's cases, one row each (a case takes a handful at most):
    the last one of a recovered case is credited with its recovery."""
    action = case(*((condition, name.value) for name, condition in _ACTION_EVENTS.items()))
    rows = connection.execute(
        select(EVENTS.c.case_id, EVENTS.c.seq, action, CASES.c.status)
        .select_from(EVENTS.join(CASES, EVENTS.c.case_id == CASES.c.case_id))
        .where(
            *period.conditions(),
            or_(*_ACTION_EVENTS.values()),
            or_(CASES.c.closed_at.is_(None), EVENTS.c.at <= CASES.c.closed_at),
        )
        .order_by(EVENTS.c.case_id, EVENTS.c.seq)
    )
    took: dict[PageAction, set[str]] = {name: set() for name in PageAction}
    last: dict[str, PageAction] = {}
    for case_id, _seq, name, status in rows:
        took[PageAction(name)].add(case_id)
        if status == RECOVERED:
            last[case_id] = PageAction(name)  # ordered by seq: the latest wins
    credited = dict.fromkeys(PageAction, 0)
    for name in last.values():
        credited[name] += 1
    return _Actions(took=took, credited=credited)


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _experiments(groups: dict[Dimension, list[Group]]) -> list[ABComparison]:
    """Each segment with variants: its variants compared with the control."""
    arms: dict[str, list[Arm]] = defaultdict(list)
    for group in groups[Dimension.VARIANT]:
        if group.key["variant"] is not None and group.key["segment"] is not None:
            arm = Arm(
                variant=group.key["variant"], cases=group.cases, recovered=group.recovered_cases
            )
            arms[group.key["segment"]].append(arm)
    return [compare_variants(segment, found) for segment, found in sorted(arms.items())]
