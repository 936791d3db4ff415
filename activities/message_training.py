"""Message models on disk and the reminder history they are fitted on.

A model is `message-model-v<N>.json` beside the retry models (`RETRY_MODELS_DIR`), written by
`dunning model train` the way retry models are: whole, then linked into place, never
replaced, so the version a case is pinned to stays what it was. It is plain JSON (a
`MessageModel`): advice per segment, nothing that runs.

A reminder's answer is what its customer did within `OUTCOME_WINDOW` of it, read from the
store: the audit trail (paid, a new card, a plan or promise chosen; cancelled, disputed) and
the suppression list (opted out). A customer acts on their own cases, so every case of theirs
counts.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from activities.notify.contacts import contact_zones
from activities.retry_training import ModelFileError, ModelFiles
from activities.store import (
    CASE_SCOPE,
    CaseStore,
    CustomerProfile,
    Message,
    MessageStatus,
    contact_key,
)
from config.errors import explain
from workflows.message_timing import (
    OUTCOME_WINDOW,
    MessageModel,
    MessageOutcome,
    fit_messages,
    segment_of,
)
from workflows.policy import Channel, Tone

MESSAGE_FILES = ModelFiles("message-model", ".json")

REMINDER_TONES = {
    "reminder_gentle": Tone.GENTLE,
    "reminder_firm": Tone.FIRM,
    "final_notice": Tone.FINAL,
    # Written for a card that cannot pay or must be confirmed, in the reminder's tone, which
    # the row does not keep; the learner tells only final notices apart.
    "card_update": Tone.GENTLE,
    "authentication_needed": Tone.GENTLE,
}
"""The templates of reminder steps, and the tone each stands for."""

ACTED = {"payment_received", "plan_chosen", "promise_made"}
"""Audit kinds that answer a reminder whoever reported them: the customer paid (their
biller says so), or chose a plan or a promise on the recovery page."""
ACTED_BY_CUSTOMER = {"pay_now", "payment_method_updated"}
"""Kinds that answer a reminder only when the customer did it (as analytics/report.py counts
page actions): a card support entered, a charge an operator asked for, are not answers."""
LOST = {"dispute_opened"}
LOST_BY_CUSTOMER = {"cancel"}
OPT_OUTS = {"opted_out", "unsubscribed"}
"""Suppression reasons that are the customer's choice; a bounce or a bad number is not."""
UNDELIVERED = {"bounced", "dropped", "blocked", "undelivered", "failed", "canceled"}
"""What a provider may report later of a message that never reached the customer."""
CUSTOMER = "customer"


@dataclass
class _Step:
    """One reminder step: its rows (a row per channel it went out on), and its customer."""

    rows: list[Message]
    customer: CustomerProfile | None

    @property
    def at(self) -> datetime:
        return min(r.step_at or r.created_at for r in self.rows)

    @property
    def delivered(self) -> bool:
        sent = (MessageStatus.SENT, MessageStatus.UNCONFIRMED)
        return any(r.status in sent and r.delivery not in UNDELIVERED for r in self.rows)


def message_history(store: CaseStore) -> list[MessageOutcome]:
    """One record per reminder step that reached the customer on at least one channel, with
    what they did within `OUTCOME_WINDOW` of it, oldest first."""
    steps: dict[tuple[str, str], _Step] = {}
    for row, customer in store.messages_with_customers(REMINDER_TONES):
        steps.setdefault((row.case_id, row.step), _Step([], customer)).rows.append(row)
    reached = sorted((s for s in steps.values() if s.delivered), key=lambda s: s.at)
    acted = _customer_times(store, ACTED, ACTED_BY_CUSTOMER)
    lost = _customer_times(store, LOST, LOST_BY_CUSTOMER)
    for customer, at in _opt_outs(store, reached):
        lost.setdefault(customer, []).append(at)
    for times in lost.values():
        times.sort()
    return [_outcome(step, acted, lost) for step in reached]


def _outcome(
    step: _Step, acted: dict[str, list[datetime]], lost: dict[str, list[datetime]]
) -> MessageOutcome:
    first = step.rows[0]
    customer = step.customer
    zones = contact_zones(customer.time_zone, customer.phone) if customer else []
    at = step.at
    return MessageOutcome(
        segment=segment_of(customer.country if customer else None),
        hour=at.astimezone(ZoneInfo(zones[0])).hour if zones else None,
        tone=REMINDER_TONES[first.template],
        channels=[Channel(r.channel) for r in step.rows],
        acted=_within_window(acted.get(first.customer_id, []), at),
        lost=_within_window(lost.get(first.customer_id, []), at),
        hour_propensity=first.hour_propensity or 1.0,
        channel_propensity=first.channel_propensity or 1.0,
    )


def _within_window(times: list[datetime], at: datetime) -> bool:
    """Whether one of the sorted `times` falls after `at` and within `OUTCOME_WINDOW`."""
    after = bisect.bisect_right(times, at)
    return after < len(times) and times[after] <= at + OUTCOME_WINDOW


def _customer_times(
    store: CaseStore, kinds: Collection[str], customer_kinds: Collection[str]
) -> dict[str, list[datetime]]:
    """When each customer's cases saw one of `kinds`, or of `customer_kinds` by the customer."""
    times: dict[str, list[datetime]] = {}
    for customer_id, event in store.customer_events({*kinds, *customer_kinds}):
        if event.kind in kinds or event.actor == CUSTOMER:
            times.setdefault(customer_id, []).append(event.at)
    return times


def _opt_outs(store: CaseStore, steps: Iterable[_Step]) -> list[tuple[str, datetime]]:
    """(customer, when) of every opt-out of a contact or a case the `steps` went to."""
    owner: dict[tuple[str, str], str] = {}
    for step in steps:
        for row in step.rows:
            owner[(row.channel, contact_key(row.recipient))] = row.customer_id
            owner[(CASE_SCOPE, row.case_id)] = row.customer_id
    found = []
    for suppression in store.suppressions(OPT_OUTS):
        customer = owner.get((suppression.channel, suppression.contact))
        if customer is not None:
            found.append((customer, suppression.created_at))
    return found


# Model files -------------------------------------------------------------------------------


def read_message_model(path: Path) -> MessageModel:
    """One message-model file, checked; `ModelFileError` names it when it is no model."""
    try:
        model = MessageModel.model_validate_json(path.read_bytes())
    except OSError as err:
        raise ModelFileError(f"{path}: cannot read: {err.strerror or err}") from err
    except ValidationError as err:
        raise ModelFileError(f"{path}: not a message model: {explain(err)}") from err
    if model.version != MESSAGE_FILES.version_of(path):
        raise ModelFileError(f"{path}: holds model v{model.version}, not the file's version")
    return model


def newest_message_model(models_dir: Path) -> MessageModel | None:
    """The highest-versioned message model in `models_dir`, or None when there is none."""
    files = MESSAGE_FILES.versions(models_dir)
    return read_message_model(files[max(files)]) if files else None


def message_model_version(models_dir: Path, version: int) -> MessageModel:
    """Message model `version`; `ModelFileError` when it is gone."""
    return read_message_model(MESSAGE_FILES.path(models_dir, version))


def write_message_model(model: MessageModel, models_dir: Path) -> Path:
    """Write `model` as its version's file, never over an existing one."""
    text = model.model_dump_json(indent=2)
    return MESSAGE_FILES.write(models_dir, model.version, lambda path: path.write_text(text))


def train_messages(store: CaseStore, models_dir: Path, now: datetime) -> tuple[MessageModel, Path]:
    """Fit a message model on the store's reminders and write it as the next version. Thin
    history is no error: the model then advises the policy as written."""
    model = fit_messages(message_history(store), MESSAGE_FILES.next_version(models_dir), now)
    return model, write_message_model(model, models_dir)


def advised_segments(model: MessageModel) -> list[str]:
    """The segments whose reminders `model` sends other than as written."""
    return [
        segment
        for segment, advice in model.segments.items()
        if advice.send_hour is not None
        or advice.channel_order is not None
        or not advice.escalate_final
    ]
