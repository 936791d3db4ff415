"""Cases of the pure policy core played by hand: a small policy, a case opened at a fixed
time, and the steps `decide` takes as time and events are folded in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from config.policies import find_policy, load_policies
from workflows.case import CaseState
from workflows.case_events import PublishEvent
from workflows.decide import (
    AddLateFee,
    AwaitPaymentMethod,
    Call,
    Charge,
    Finish,
    Notify,
    Step,
    Wait,
    decide,
)
from workflows.models import (
    CaseInput,
    ChargeResult,
    Delivery,
    DeliveryStatus,
    Failure,
)
from workflows.policy import (
    Policy,
)
from workflows.steps import fold_call_task, fold_charge, fold_late_fee

CONFIG = Path(__file__).resolve().parents[2] / "config"
FAILED_AT = datetime(2026, 11, 1, 9, tzinfo=UTC)
AMOUNT = 4900
SOFT = "insufficient_funds"
HARD = "stolen_card"
SCA = "authentication_required"


def at(day: int, hour: int = 9, minute: int = 0) -> datetime:
    """A time in November 2026 (UTC); the case fails on 1 November at 09:00."""
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


def standard_policy() -> Policy:
    """The shipped standard policy, loaded the way the worker loads it."""
    policies = load_policies(CONFIG / "policies", CONFIG / "declines.toml")
    return find_policy(policies, "standard", 1)


def make_policy(**changes: object) -> Policy:
    """A small hand-built policy: retries on days 1 and 2, reminders on days 0, 3 and 5."""
    data: dict[str, object] = {
        "name": "small",
        "version": 1,
        "retries": [timedelta(days=1), timedelta(days=2)],
        "min_retry_gap": timedelta(hours=12),
        "retry_after_method_update": timedelta(minutes=5),
        "max_charge_attempts": 4,
        "reminders": [
            {"after": timedelta(0), "tone": "gentle", "channels": ["email"]},
            {"after": timedelta(days=3), "tone": "firm", "channels": ["email", "sms"]},
            {"after": timedelta(days=5), "tone": "final", "channels": ["email"]},
        ],
        "collections_after": timedelta(days=10),
        "outcome_messages": {"recovered": ["email"]},
        "declines": {
            "default": "retry_later",
            "codes": {SOFT: "retry_later", HARD: "never_retry", SCA: "needs_customer_action"},
        },
    }
    data.update(changes)
    return Policy.model_validate(data)


def open_case(
    policy: Policy, decline_code: str | None = SOFT, payment_method: str | None = "pm_old"
) -> CaseState:
    """A case opened at the moment its payment failed."""
    case = CaseInput(
        case_id="case-1",
        invoice_id="in_1",
        customer_id="cus_1",
        amount_due=AMOUNT,
        currency="usd",
        failure=Failure(decline_code=decline_code, failed_at=FAILED_AT),
        policy_name=policy.name,
        policy_version=policy.version,
        payment_method=payment_method,
    )
    return CaseState.open(case, policy, FAILED_AT)


def send(state: CaseState, step: Notify, now: datetime) -> None:
    """Carry a message step out the way the workflow does: every channel delivered."""
    deliveries = [Delivery(channel=c, status=DeliveryStatus.SENT) for c in step.channels]
    state.record_message(step.step, step.template, deliveries, now)
    state.mark_reminders_done(step.covers, step.tone, now)


def charge(
    state: CaseState,
    step: Step,
    now: datetime,
    *,
    approved: bool = False,
    code: str | None = SOFT,
) -> None:
    """Carry a charge step out with the given gateway answer, folded as the workflow folds it."""
    assert isinstance(step, Charge), step
    result = ChargeResult(approved=approved, decline_code=None if approved else code)
    fold_charge(state, step, result, now)


def send_due(state: CaseState, now: datetime) -> None:
    """Send every reminder due at `now` (there is at most one message step at a time)."""
    step = decide(state, now)
    assert isinstance(step, Notify), step
    send(state, step, now)


def play(
    state: CaseState, now: datetime, end: datetime, decline_code: str = SOFT
) -> list[tuple[datetime, Step]]:
    """Drive the case like DunningWorkflow, every charge declined, until it waits past `end`."""
    steps: list[tuple[datetime, Step]] = []
    for _ in range(100):
        state.expire_pause(now)
        step = decide(state, now)
        steps.append((now, step))
        match step:
            case Charge():
                charge(state, step, now, code=decline_code)
            case Notify():
                send(state, step, now)
            case Wait() | AwaitPaymentMethod():
                if step.until is None or step.until > end:
                    return steps
                now = step.until
            case PublishEvent():
                state.mark_published(step.event_id)
            case Finish():
                state.conclude(step.outcome, step.reason, now)
                return steps
            case AddLateFee():
                fold_late_fee(state, step, "ii_test", now)
            case Call():
                fold_call_task(state, step, None, now)
    raise AssertionError("the case never settled")


def summary(steps: list[tuple[datetime, Step]]) -> list[tuple[datetime, str, str]]:
    """(time, kind, what) for each step, short enough to compare a whole case at once."""
    rows = []
    for when, step in steps:
        match step:
            case Charge():
                rows.append((when, "charge", step.label))
            case Notify():
                rows.append((when, "notify", f"{step.step} {step.template}"))
            case Wait() | AwaitPaymentMethod():
                rows.append((when, step.kind, f"{step.until:%d %H:%M} {step.reason}"))
            case Finish():
                rows.append((when, "finish", f"{step.outcome} {step.reason}"))
            case AddLateFee():
                rows.append((when, "late_fee", step.label))
            case Call():
                rows.append((when, "call", step.step))
            case PublishEvent():
                rows.append((when, "publish", step.event_id))
    return rows


def charge_times(steps: list[tuple[datetime, Step]]) -> list[datetime]:
    return [when for when, step in steps if isinstance(step, Charge)]


def timeline_kinds(state: CaseState) -> list[str]:
    return [entry.kind for entry in state.timeline]
