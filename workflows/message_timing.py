"""Learned message timing: the local hour reminders go out at and the channel they lead with,
per segment of customers, from how customers answered earlier reminders.

A reminder worked when the customer acted (paid, updated their card, clicked through) within
`OUTCOME_WINDOW`, and cost when they were lost in it (cancelled, disputed, opted out of a
channel); its net value is the act rate less `LOST_PENALTY` times the lost rate. Per segment
(the customer's country: billing knows it, and regions read their messages differently) a
model gives three pieces of advice, each only where the history has shown it helps:

- the send hour: of `SEND_HOURS`, the one whose reminders (sent nearest to it) did best, if
  they beat the segment's other hours;
- the channel order: email or SMS first, from reminders on that one interrupting channel;
- the final notice on one channel (plus in-app) where the policy writes several: only where
  single-channel final notices beat multi-channel ones. The same rule as the others: every
  departure from the policy as written must have been shown to help, so a final notice
  escalates across channels only where the policy asks for it and no evidence says otherwise.

"Shown" means `MIN_ARM` reminders on each side and a net value `Z` standard errors higher.
Rates are Beta-smoothed, a cell's toward its segment's rate and the segment's toward
everyone's, by `PRIOR_MESSAGES` pseudo-reminders, so a value seen rarely cannot steer. No
model, or a segment it has not seen, is the policy as written.

A case pins its `MessagePlan` when it opens and `decide` applies it to each reminder
(`choose_message`, `send_time`, `reminder_channels`). Contact hours, opt-outs and the weekly
cap still apply after it, unchanged: they are limits, never traded for a better hour.

Exploration: in a share of reminders (`policy.message_exploration`) the hour is drawn
evenly, and, by a draw of its own, in as many the channels; every reminder of a planned case
records the chance its hour and its channels had. An hour's (or channels') rate weighs each
reminder by the inverse of that chance and counts as evidence only what the weights leave
(Kish's effective size). That matters: a reminder as written goes at the hour the payment
failed, which is also when the fixed retries charge, so the hours as written are not
comparable (an hour at which retries pass leaves fewer customers to act on a reminder);
only the drawn ones are, and the weights let them speak.

Pure: no I/O but the time-zone database, no Temporal import.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from typing import NamedTuple, TypeVar
from zoneinfo import ZoneInfo

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from workflows.messaging import CAPPED_CHANNELS
from workflows.policy import Channel, Tone
from workflows.smart_retry import uniform

SEND_HOURS = (9, 12, 15, 18, 20)
"""Local hours a reminder may be moved to: morning, noon, afternoon, evening, night."""

OUTCOME_WINDOW = timedelta(hours=72)
"""What a customer does this soon after a reminder counts as its answer."""

LOST_PENALTY = 2.0
"""A lost customer costs this invoice and the ones after it: twice a recovered invoice."""

PRIOR_MESSAGES = 30
"""Pseudo-reminders at the segment's (or everyone's) rate in every smoothed rate."""

MIN_ARM = 30
"""Reminders each side needs before a comparison may change anything."""

Z = 2.5
"""Standard errors by which a change must beat what it replaces (the best of five hours is
often two errors ahead by luck alone)."""

CHANNEL_ORDERS = ((Channel.EMAIL, Channel.SMS), (Channel.SMS, Channel.EMAIL))

UNKNOWN = "unknown"

K = TypeVar("K")


class MessageOutcome(BaseModel):
    """One reminder and what the customer did in the `OUTCOME_WINDOW` after it."""

    segment: str
    hour: int | None = Field(
        default=None, ge=0, le=23, description="Local send hour; None when the zone is unknown."
    )
    tone: Tone
    channels: list[Channel] = Field(description="Asked for (the choice), before opt-outs.")
    acted: bool = Field(description="Paid, updated the card or clicked through.")
    lost: bool = Field(description="Cancelled, disputed or opted out of a channel.")
    hour_propensity: float = Field(default=1.0, gt=0, le=1, description="The chance its hour had.")
    channel_propensity: float = Field(
        default=1.0, gt=0, le=1, description="The chance its channels had."
    )


class SegmentAdvice(BaseModel):
    """What a segment's reminders have shown; None and True are the policy as written."""

    reminders: int = Field(ge=0)
    send_hour: int | None = None
    channel_order: tuple[Channel, ...] | None = None
    escalate_final: bool = True


class MessageModel(BaseModel):
    """Advice per segment, fitted on reminder outcomes (`fit_messages`); JSON as it is."""

    version: int = Field(ge=1)
    trained_at: AwareDatetime
    trained_on: int = Field(ge=0, description="Reminders in the history.")
    segments: dict[str, SegmentAdvice] = Field(default_factory=dict)


class MessagePlan(BaseModel):
    """How one case's reminders go out, chosen when it opens and pinned for its life."""

    model_config = ConfigDict(frozen=True)

    send_hour: int | None = Field(
        default=None, ge=0, le=23, description="Local hour of reminders after day 0 (None: due)."
    )
    channel_order: tuple[Channel, ...] | None = Field(
        default=None, description="Interrupting channels, best first (None: as written)."
    )
    escalate_final: bool = Field(
        default=True, description="False: the final notice goes on the first channel only."
    )
    model_version: int | None = None
    reason: str


class MessageChoice(NamedTuple):
    """One reminder's send hour (None: when due) and channels, and the chance each had."""

    hour: int | None
    channels: tuple[Channel, ...]
    hour_propensity: float
    channel_propensity: float


def segment_of(country: str | None) -> str:
    """The segment of a customer in `country` (ISO-3166), `UNKNOWN` without one."""
    return country.strip().upper() if country and country.strip() else UNKNOWN


def plan_messages(model: MessageModel | None, country: str | None) -> MessagePlan:
    """The plan of a new case of a customer in `country`: its segment's advice."""
    if model is None:
        return MessagePlan(reason="as written: no message model")
    segment = segment_of(country)
    advice = model.segments.get(segment)
    if advice is None:
        reason = f"as written: message model v{model.version} has no reminders of {segment}"
        return MessagePlan(model_version=model.version, reason=reason)
    hour = "as due" if advice.send_hour is None else f"at {advice.send_hour}:00 local"
    lead = "as written" if advice.channel_order is None else f"{advice.channel_order[0]} first"
    final = "as written" if advice.escalate_final else "on one channel"
    return MessagePlan(
        send_hour=advice.send_hour,
        channel_order=advice.channel_order,
        escalate_final=advice.escalate_final,
        model_version=model.version,
        reason=f"message model v{model.version}, {segment} ({advice.reminders} reminders): "
        f"reminders {hour}, channels {lead}, final notice {final}",
    )


def choose_message(
    plan: MessagePlan,
    case_id: str,
    index: int,
    tone: Tone,
    channels: tuple[Channel, ...],
    share: float,
    due_hour: int | None,
) -> MessageChoice:
    """Reminder `index`'s hour and channels under `plan`; each drawn evenly instead in
    `share` of reminders, by draws fixed by the case and the reminder. `due_hour` is the
    local hour it is due at, None when its hour must not move (day 0, no zone known)."""
    advice = (plan.send_hour, plan.channel_order, plan.escalate_final)
    return _choose(advice, case_id, index, tone, channels, share, due_hour)


@functools.lru_cache(maxsize=65536)
def _choose(
    advice: tuple[int | None, tuple[Channel, ...] | None, bool],
    case_id: str,
    index: int,
    tone: Tone,
    channels: tuple[Channel, ...],
    share: float,
    due_hour: int | None,
) -> MessageChoice:
    """`choose_message` on the plan's plain values, cached on them (a model's own hash and
    equality cost more than the choice): `decide` asks for every reminder at every step."""
    send_hour, channel_order, escalate_final = advice
    final = tone is Tone.FINAL
    planned_hour = send_hour if due_hour is not None else None
    planned = reminder_channels(channels, channel_order, final and not escalate_final)
    if share <= 0:
        return MessageChoice(planned_hour, planned, 1.0, 1.0)
    hours = SEND_HOURS if due_hour is not None else (None,)
    options = _channel_options(channels, final)
    hour, chosen = planned_hour, planned
    if uniform(case_id, index, "message-hour-explore") < share:
        hour = hours[int(uniform(case_id, index, "message-hour") * len(hours))]
    if uniform(case_id, index, "message-channels-explore") < share:
        chosen = options[int(uniform(case_id, index, "message-channels") * len(options))]
    landed = due_hour if hour is None else hour
    aimed = due_hour if planned_hour is None else planned_hour
    same_hour = _bucket(landed) == _bucket(aimed)
    same_channels = set(chosen) == set(planned)
    return MessageChoice(
        hour,
        chosen,
        (1 - share if same_hour else 0.0) + share / len(hours),
        (1 - share if same_channels else 0.0) + share / len(options),
    )


def reminder_channels(
    channels: Sequence[Channel], order: Sequence[Channel] | None, single: bool
) -> tuple[Channel, ...]:
    """A reminder's channels with its interrupting ones taken in `order` (as many as it
    has, one when `single`); in-app stays as written."""
    if order is None and not single:
        return tuple(channels)
    interrupting = [c for c in channels if c in CAPPED_CHANNELS]
    ranked = list(dict.fromkeys([*(order or ()), *interrupting]))
    keep = min(len(interrupting), 1) if single else len(interrupting)
    return (*ranked[:keep], *(c for c in channels if c not in CAPPED_CHANNELS))


def _channel_options(channels: tuple[Channel, ...], final: bool) -> list[tuple[Channel, ...]]:
    """Every distinct set of channels exploration may send a reminder on."""
    options: list[tuple[Channel, ...]] = []
    for order in CHANNEL_ORDERS:
        for single in (False, True) if final else (False,):
            option = reminder_channels(channels, order, single)
            if all(set(option) != set(o) for o in options):
                options.append(option)
    return options


def send_time(due: datetime, hour: int, zone: str, limit: datetime) -> datetime:
    """The first `hour` o'clock local (at `due`'s minute, so cases spread over the hour) at
    or after `due`, within a day; `due` itself when that would pass `limit`."""
    tz = ZoneInfo(zone)
    local = due.astimezone(tz)
    at = datetime.combine(local.date(), time(hour, local.minute), tz)
    if at < due:
        at = datetime.combine(local.date() + timedelta(days=1), time(hour, local.minute), tz)
    return at.astimezone(due.tzinfo) if at <= limit else due


def _bucket(hour: int | None) -> int | None:
    """The send hour nearest to `hour` (the earlier at a tie): what a reminder sent at
    `hour` tells about."""
    return None if hour is None else min(SEND_HOURS, key=lambda h: (abs(h - hour), h))


# Fitting ------------------------------------------------------------------------------------


class _Rate(NamedTuple):
    evidence: float
    """Reminders behind the rate, as many as their weights are worth (Kish)."""
    act: float
    lost: float

    @property
    def net(self) -> float:
        return self.act - LOST_PENALTY * self.lost

    @property
    def variance(self) -> float:
        return self.act * (1 - self.act) + LOST_PENALTY**2 * self.lost * (1 - self.lost)

    def beats(self, other: _Rate) -> bool:
        """Shown better: `MIN_ARM` reminders each side, a net value `Z` errors higher."""
        if min(self.evidence, other.evidence) < MIN_ARM:
            return False
        error = math.sqrt(self.variance / self.evidence + other.variance / other.evidence)
        return self.net - other.net > Z * error


Propensity = Callable[[MessageOutcome], float]


def fit_messages(outcomes: Sequence[MessageOutcome], version: int, now: datetime) -> MessageModel:
    """A model of what each segment's reminders have shown (see the module's docstring)."""
    everyone = _rate(outcomes, None)
    by_segment: dict[str, list[MessageOutcome]] = {}
    for outcome in outcomes:
        by_segment.setdefault(outcome.segment, []).append(outcome)
    return MessageModel(
        version=version,
        trained_at=now,
        trained_on=len(outcomes),
        segments={s: _advise(group, everyone) for s, group in sorted(by_segment.items())},
    )


def _advise(outcomes: list[MessageOutcome], everyone: _Rate) -> SegmentAdvice:
    """Only reminders whose hour (channels) a draw could have changed tell about hours
    (channels): with no chance of going elsewhere, an hour is the failure's, not a choice."""
    segment = _rate(outcomes, everyone)
    movable = [o for o in outcomes if o.hour is not None and o.hour_propensity < 1]
    hours = {h: [o for o in movable if _bucket(o.hour) == h] for h in SEND_HOURS}
    drawn = [o for o in outcomes if o.channel_propensity < 1]
    reminders = [o for o in drawn if o.tone is not Tone.FINAL]
    leads = {c: [o for o in reminders if _interrupting(o) == [c]] for c in CAPPED_CHANNELS}
    lead = _shown_best(leads, segment, _channel_chance)
    finals = [o for o in drawn if o.tone is Tone.FINAL]
    final = _rate(finals, segment, _channel_chance)
    several = _rate([o for o in finals if len(_interrupting(o)) > 1], final, _channel_chance)
    one = _rate([o for o in finals if len(_interrupting(o)) == 1], final, _channel_chance)
    return SegmentAdvice(
        reminders=len(outcomes),
        send_hour=_shown_best(hours, segment, _hour_chance),
        channel_order=None if lead is None else (lead, *(c for c in CAPPED_CHANNELS if c != lead)),
        escalate_final=not one.beats(several),
    )


def _shown_best(
    groups: dict[K, list[MessageOutcome]], segment: _Rate, chance: Propensity
) -> K | None:
    """The group whose smoothed net value beats the others pooled, or None."""
    pooled = _rate([o for group in groups.values() for o in group], segment, chance)
    rates = {key: _rate(group, pooled, chance) for key, group in groups.items()}
    best = max(rates, key=lambda key: rates[key].net)
    rest = _rate([o for key, group in groups.items() if key != best for o in group], pooled, chance)
    return best if rates[best].beats(rest) else None


def _rate(
    outcomes: Sequence[MessageOutcome], prior: _Rate | None, chance: Propensity | None = None
) -> _Rate:
    """Act and lost rates, each reminder weighed by the inverse of its `chance` (none: all
    alike), pulled toward `prior` by `PRIOR_MESSAGES`."""
    weights = [1 / chance(o) if chance else 1.0 for o in outcomes]
    total = sum(weights)
    if not total:
        return _Rate(0.0, prior.act, prior.lost) if prior else _Rate(0.0, 0.0, 0.0)
    act = sum(w for w, o in zip(weights, outcomes, strict=True) if o.acted) / total
    lost = sum(w for w, o in zip(weights, outcomes, strict=True) if o.lost) / total
    n = total**2 / sum(w * w for w in weights)
    if prior is None:
        return _Rate(n, act, lost)
    pull = PRIOR_MESSAGES
    return _Rate(
        n, (n * act + pull * prior.act) / (n + pull), (n * lost + pull * prior.lost) / (n + pull)
    )


def _hour_chance(outcome: MessageOutcome) -> float:
    return outcome.hour_propensity


def _channel_chance(outcome: MessageOutcome) -> float:
    return outcome.channel_propensity


def _interrupting(outcome: MessageOutcome) -> list[Channel]:
    return [c for c in outcome.channels if c in CAPPED_CHANNELS]
