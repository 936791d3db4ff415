"""Outbound case events: what the product is told about a case, so it can restrict or restore
the customer's access (published as JSON Schema in config/case-event.schema.json).

Pure (no I/O, no Temporal import). Which event falls due when comes from the case's state:
`case.opened` first, `case.paused` for each pause, `case.grace_ending` and
`case.access_restricted` at the policy's offsets from the schedule's origin (held time does not
count, as for reminders), and one outcome event when the case ends. An event's id is fixed by
(case, type, occurrence), so a replay, an activity retry or a redelivery carries the same id
and a receiver dedupes on it. Payloads hold ids and amounts only, never contact data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from workflows.case import CaseState
from workflows.models import ID_PATTERN
from workflows.policy import Outcome

API_VERSION = "2026-12-01"
"""The payloads' shape; a change a receiver could trip on gets a new version."""


class CaseEventType(StrEnum):
    """What happened to the case."""

    OPENED = "case.opened"
    GRACE_ENDING = "case.grace_ending"
    ACCESS_RESTRICTED = "case.access_restricted"
    PAUSED = "case.paused"
    RECOVERED = "case.recovered"
    CANCELLED = "case.cancelled"
    SENT_TO_COLLECTIONS = "case.sent_to_collections"


OUTCOME_EVENTS = {
    Outcome.RECOVERED: CaseEventType.RECOVERED,
    Outcome.CANCELLED: CaseEventType.CANCELLED,
    Outcome.COLLECTIONS: CaseEventType.SENT_TO_COLLECTIONS,
}
ACCESS = {
    CaseEventType.ACCESS_RESTRICTED: "restrict",
    CaseEventType.SENT_TO_COLLECTIONS: "restrict",
    CaseEventType.RECOVERED: "restore",
}
"""What the product should do with the customer's access on each event (none: leave it)."""
_LABELS = {
    CaseEventType.GRACE_ENDING: "before the grace period ends",
    CaseEventType.ACCESS_RESTRICTED: "before access is restricted",
}


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CaseEventData(_Payload):
    """The case as it stands when the event happens: ids, amounts and facts only."""

    case_id: str = Field(pattern=ID_PATTERN)
    invoice_id: str = Field(pattern=ID_PATTERN)
    customer_id: str = Field(pattern=ID_PATTERN)
    subscription_id: str | None = Field(default=None, pattern=ID_PATTERN)
    amount_due: int = Field(ge=0, description="What is still owed, in minor units.")
    amount_paid: int = Field(ge=0, description="What the case has recovered, in minor units.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    status: str = Field(description="The case's status after the event (`DunningStatus`).")
    policy: str = Field(description="The policy the case follows, e.g. `standard v1`.")
    outcome: Outcome | None = Field(default=None, description="How the case ended, if it did.")
    reason: str | None = Field(default=None, description="Why it ended or was paused.")
    access: Literal["restrict", "restore"] | None = Field(
        default=None, description="What to do with the customer's access; null: leave it."
    )
    grace_ends_at: AwareDatetime | None = Field(
        default=None, description="When the grace period ends (as things stand now)."
    )
    restrict_access_at: AwareDatetime | None = Field(
        default=None, description="When access is to be restricted (as things stand now)."
    )


class CaseEvent(_Payload):
    """One outbound event, as POSTed to OUTBOUND_WEBHOOK_URL."""

    id: str = Field(description="Stable per case, type and occurrence: dedupe on it.")
    type: CaseEventType
    created: AwareDatetime
    api_version: str = API_VERSION
    data: CaseEventData

    def body(self) -> bytes:
        """The exact bytes sent and signed."""
        return json.dumps(self.model_dump(mode="json"), separators=(",", ":")).encode()


class PublishEvent(BaseModel):
    """A step: tell the product about the case (one activity; never waits for the receiver)."""

    kind: Literal["publish_event"] = "publish_event"
    event: CaseEventType
    event_id: str


def event_id(case_id: str, event: CaseEventType, occurrence: int) -> str:
    """The id of the `occurrence`-th event of this type for the case (from 1)."""
    return f"{case_id}:{event}:{occurrence}"


def grace_ends_at(state: CaseState) -> datetime | None:
    """When the policy's grace period ends, or None without one."""
    grace = state.policy.grace_period
    return None if grace is None else state.schedule_origin + grace


def restrict_access_at(state: CaseState) -> datetime | None:
    """When the product should restrict access, or None when the policy never does."""
    restrict = state.policy.restrict_access_after
    return None if restrict is None else state.schedule_origin + restrict


def due_event(state: CaseState, now: datetime) -> PublishEvent | None:
    """The first event not yet published whose time has come, or None."""
    return next((step for step, at in _unpublished(state) if at is None or at <= now), None)


def next_event_at(state: CaseState) -> tuple[datetime, str] | None:
    """When the next timed event falls due and what it is (for the case's wakeups)."""
    timed = [(at, _LABELS[step.event]) for step, at in _unpublished(state) if at is not None]
    return min(timed, key=lambda t: t[0], default=None)


def _unpublished(state: CaseState) -> Iterator[tuple[PublishEvent, datetime | None]]:
    """The events the case owes the product, in order, with their time (None: now)."""
    for step, at in _owed(state):
        if step.event_id not in state.events_published:
            yield step, at


def _owed(state: CaseState) -> Iterator[tuple[PublishEvent, datetime | None]]:
    if not state.publishes_events:
        return
    case_id = state.case.case_id

    def step(event: CaseEventType, occurrence: int = 1) -> PublishEvent:
        return PublishEvent(event=event, event_id=event_id(case_id, event, occurrence))

    yield step(CaseEventType.OPENED), None
    if state.outcome is not None:
        yield step(OUTCOME_EVENTS[state.outcome]), None
        return
    if state.pause is not None:
        yield step(CaseEventType.PAUSED, _pauses(state)), None
    if state.held_since is not None:  # the clock stands still while the case is held
        return
    for event, at in [
        (CaseEventType.GRACE_ENDING, grace_ends_at(state)),
        (CaseEventType.ACCESS_RESTRICTED, restrict_access_at(state)),
    ]:
        if at is not None:
            yield step(event), at


def _pauses(state: CaseState) -> int:
    return sum(entry.kind == "paused" for entry in state.timeline)


def case_event(state: CaseState, step: PublishEvent, now: datetime) -> CaseEvent:
    """The event a `PublishEvent` step sends, with the case's figures at `now`."""
    reason = None
    if step.event in OUTCOME_EVENTS.values():
        reason = state.outcome_reason
    elif step.event is CaseEventType.PAUSED and state.pause is not None:
        reason = state.pause.reason
    case = state.case
    data = CaseEventData(
        case_id=case.case_id,
        invoice_id=case.invoice_id,
        customer_id=case.customer_id,
        subscription_id=case.subscription_id,
        amount_due=state.amount_due,
        amount_paid=state.amount_recovered,
        currency=case.currency,
        status=state.status.value,
        policy=state.policy.label,
        outcome=state.outcome,
        reason=reason or None,
        access=ACCESS.get(step.event),
        grace_ends_at=grace_ends_at(state),
        restrict_access_at=restrict_access_at(state),
    )
    return CaseEvent(id=step.event_id, type=step.event, created=now, data=data)


def case_event_schema() -> dict:
    """The JSON Schema of `CaseEvent`, as published in config/case-event.schema.json."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        **CaseEvent.model_json_schema(),
    }


if __name__ == "__main__":
    print(json.dumps(case_event_schema(), indent=2, ensure_ascii=False))
