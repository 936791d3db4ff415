"""Billable actions of a case, counted from its real history the way Temporal Cloud bills.

Counted per event: a run's start (the first and each continue-as-new), each activity scheduled
plus each retry attempt, each timer, each signal and accepted update the case received, each
search-attribute upsert, each marker but a version marker, each signal the case sent and each
child it started. Version markers (`workflow.patched`) are not counted: Temporal Cloud bills a
side effect or a local activity, and exempts versioning: its marker records no work on the
server, and the upsert of `TemporalChangeVersion` it brings is exempt by name. Queries and
heartbeats are billed too but leave no event, so a history cannot show them.

The bound the issue sets: at most ``2 x steps + support actions + 3``, where a step is a
charge attempt or a notify step, a support action a signal or update received, and the three
open and close the case.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent

PATCH_MARKER = "core_patch"
"""The marker `workflow.patched` records: versioning, not billed."""

CHANGE_VERSION = "TemporalChangeVersion"
"""The search attribute `workflow.patched` upserts: exempt from billing."""

HISTORY_LIMIT = 12 * 1024
"""The encoded size a whole case's history should stay under (issue 15)."""

BILLED = {
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED: "start",
    EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED: "activity",
    EventType.EVENT_TYPE_TIMER_STARTED: "timer",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED: "signal",
    EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED: "update",
    EventType.EVENT_TYPE_UPSERT_WORKFLOW_SEARCH_ATTRIBUTES: "upsert",
    EventType.EVENT_TYPE_MARKER_RECORDED: "marker",
    EventType.EVENT_TYPE_SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: "signal sent",
    EventType.EVENT_TYPE_START_CHILD_WORKFLOW_EXECUTION_INITIATED: "child",
}
"""Event types that stand for one billable action each, by the name the bench prints."""


def billable_actions(events: Iterable[HistoryEvent]) -> Counter[str]:
    """The billable actions in a case's events (all its runs), by kind; ``activity:<type>``
    counts each activity type's share of the ``activity`` total, retries included."""
    actions: Counter[str] = Counter()
    for event in events:
        kind = BILLED.get(event.event_type)
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            retries = event.activity_task_started_event_attributes.attempt - 1
            actions["activity"] += retries
            actions["retry"] += retries
            continue
        if kind is None:
            continue
        if kind == "marker" and event.marker_recorded_event_attributes.marker_name == PATCH_MARKER:
            continue
        if kind == "upsert" and _versioning_only(event):
            continue
        actions[kind] += 1
        if kind == "activity":
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            actions[f"activity:{name}"] += 1
    return actions


def _versioning_only(event: HistoryEvent) -> bool:
    fields = event.upsert_workflow_search_attributes_event_attributes.search_attributes
    return set(fields.indexed_fields) == {CHANGE_VERSION}


def total(actions: Counter[str]) -> int:
    """All billable actions of a `billable_actions` count (its per-type shares left out)."""
    return sum(n for kind, n in actions.items() if kind in BILLED.values())


def history_size(events: Iterable[HistoryEvent]) -> int:
    """The encoded size of the events in bytes, as the server stores them."""
    return sum(event.ByteSize() for event in events)


@dataclass(frozen=True)
class CaseCost:
    """What one case cost against the issue's bound."""

    actions: int
    steps: int
    support: int
    history_bytes: int

    @property
    def bound(self) -> int:
        """At most two actions per step (its wait and its activity), one per support signal
        or update, and three to open and close."""
        return 2 * self.steps + self.support + 3

    @property
    def ratio(self) -> float:
        """Actions over the bound: at most 1.0 meets it."""
        return self.actions / self.bound


def case_cost(events: list[HistoryEvent], steps: int, support: int) -> CaseCost:
    """The cost of a case from its events, given its steps (charge attempts and notify
    steps) and the support signals and updates it received."""
    return CaseCost(
        actions=total(billable_actions(events)),
        steps=steps,
        support=support,
        history_bytes=history_size(events),
    )
