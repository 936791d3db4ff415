"""Pre-dunning: which notice a card or a renewal is due on a day, and when each goes out.

A notice warns a customer before a payment can fail: their card expires soon, or a yearly
subscription renews soon. Each notice window (31 and 7 days before, say) sends at most one
notice; a scan that first sees a card late sends only the window it is in, never every
window it missed. Pure: no I/O, no Temporal import; the pre-dunning workflow and its
activities share it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from workflows.contact_hours import ContactHours
from workflows.models import ID_PATTERN
from workflows.policy import Channel


class NoticeKind(StrEnum):
    """What a notice is about; each kind is also the name of its message template."""

    CARD_EXPIRING = "card_expiring"
    RENEWAL_UPCOMING = "renewal_upcoming"


class PreDunning(BaseModel):
    """The `[pre_dunning]` table of config/pre-dunning.toml: when notices go out and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    card_windows: list[int] = Field(
        default=[31, 7],
        description="Days before a card expires that each send one notice (31: from the "
        "first day of its expiry month, whatever the month's length).",
    )
    renewal_windows: list[int] = Field(
        default=[14], description="Days before a yearly subscription renews: one notice each."
    )
    channels: list[Channel] = Field(default=[Channel.EMAIL, Channel.IN_APP], min_length=1)
    contact_hours: ContactHours = Field(default_factory=ContactHours)

    @field_validator("card_windows", "renewal_windows")
    @classmethod
    def _windows(cls, windows: list[int]) -> list[int]:
        if any(days < 1 or days > 366 for days in windows):
            raise ValueError("each window is a number of days from 1 to 366")
        if len(set(windows)) < len(windows):
            raise ValueError("each window once")
        return sorted(windows, reverse=True)


def card_expires_at(exp_month: int, exp_year: int) -> datetime:
    """When a card marked MM/YY stops working: the end of that month (the first instant of
    the next, UTC)."""
    if not 1 <= exp_month <= 12:
        raise ValueError(f"expiry month {exp_month} is not 1-12")
    year, month = (exp_year + 1, 1) if exp_month == 12 else (exp_year, exp_month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def due_window(event_at: datetime, now: datetime, windows: list[int]) -> int | None:
    """The window (in days) whose notice is due at `now` for something happening at
    `event_at`: the narrowest window `now` is inside. None once it has happened, or while
    it is further away than the widest window."""
    left = event_at - now
    if left <= timedelta(0):
        return None
    inside = [days for days in windows if left <= timedelta(days=days)]
    return min(inside) if inside else None


def window_step(prefix: str, label: str, window: int) -> str:
    """The notice's step in the message outbox, e.g. ``expiry-2027-03-P31D`` (a card's
    expiry month) or ``renewal-2027-01-15-P14D`` (a renewal's date): one notice per card or
    renewal, per expiry or date and per window, however often the scan runs. A renewed card
    (same payment method, a new expiry) gets its own notices."""
    return f"{prefix}-{label}-P{window}D"


class DueNotice(BaseModel):
    """One notice to send: ids and card facts only, never a contact detail."""

    model_config = ConfigDict(extra="forbid")

    kind: NoticeKind
    customer_id: str = Field(pattern=ID_PATTERN)
    notice_id: str = Field(
        description="What the notice is about, as the outbox keys it: card-<payment method> "
        "or renewal-<subscription>."
    )
    step: str = Field(description="The window's step, e.g. expiry-2027-03-P7D.")
    window_days: int
    event_at: AwareDatetime = Field(description="When the card expires or the plan renews.")
    card_brand: str | None = None
    card_last4: str | None = Field(default=None, pattern=r"^[0-9]{4}$")
    time_zones: list[str] = Field(
        default_factory=list, description="Where contact hours must hold (zones, not numbers)."
    )


class NoticeBatch(BaseModel):
    """A scan's answer for a page of customers: the notices due today, the rules they go
    out under, and where the next page starts (None: the last page)."""

    model_config = ConfigDict(extra="forbid")

    notices: list[DueNotice] = Field(default_factory=list)
    channels: list[Channel] = Field(default=[Channel.EMAIL, Channel.IN_APP])
    contact_hours: ContactHours = Field(default_factory=ContactHours)
    next_after: str | None = None


class NoticeScan(BaseModel):
    """Ask for the notices due at `at` among the customers after `after` (one page)."""

    model_config = ConfigDict(extra="forbid")

    at: AwareDatetime
    after: str | None = Field(default=None, description="The last customer id of the page before.")


class NoticeRequest(BaseModel):
    """Send one due notice on `channels`, at the workflow's clock `at` (the weekly cap)."""

    model_config = ConfigDict(extra="forbid")

    notice: DueNotice
    channels: list[Channel]
    at: AwareDatetime


def send_times(
    batch: NoticeBatch, now: datetime, before: datetime
) -> list[tuple[datetime, list[DueNotice]]]:
    """When each notice may go out (the first contact hour in its customer's zones), grouped
    by that moment, earliest first. Notices that could not go out before `before` (the next
    day's scan) are left for that scan."""
    groups: dict[datetime, list[DueNotice]] = {}
    for notice in batch.notices:
        at = batch.contact_hours.next_contact_time(now, notice.time_zones)
        if at < before:
            groups.setdefault(at, []).append(notice)
    return sorted(groups.items())


class CardOnFile(BaseModel):
    """The card a customer pays with by default, as the gateway describes it."""

    model_config = ConfigDict(extra="forbid")

    payment_method: str = Field(pattern=ID_PATTERN)
    brand: str | None = None
    last4: str | None = Field(default=None, pattern=r"^[0-9]{4}$")
    exp_month: int = Field(ge=1, le=12)
    exp_year: int = Field(ge=2000, le=9999)


class Renewal(BaseModel):
    """A yearly subscription's next renewal: when its period ends and it charges again."""

    model_config = ConfigDict(extra="forbid")

    subscription_id: str = Field(pattern=ID_PATTERN)
    renews_at: AwareDatetime


class Upcoming(BaseModel):
    """What may fail a customer's next payment: their default card and yearly renewals."""

    model_config = ConfigDict(extra="forbid")

    card: CardOnFile | None = None
    renewals: list[Renewal] = Field(default_factory=list)


def due_notices(
    customer_id: str,
    upcoming: Upcoming,
    config: PreDunning,
    now: datetime,
    time_zones: list[str],
) -> list[DueNotice]:
    """The notices due for one customer at `now`: at most one per card and per renewal, the
    narrowest window each is inside. Whether one went out already is the outbox's to say."""
    notices = []
    card = upcoming.card
    if card is not None:
        expires = card_expires_at(card.exp_month, card.exp_year)
        window = due_window(expires, now, config.card_windows)
        if window is not None:
            label = f"{card.exp_year:04d}-{card.exp_month:02d}"
            notices.append(
                DueNotice(
                    kind=NoticeKind.CARD_EXPIRING,
                    customer_id=customer_id,
                    notice_id=f"card-{card.payment_method}",
                    step=window_step("expiry", label, window),
                    window_days=window,
                    event_at=expires,
                    card_brand=card.brand,
                    card_last4=card.last4,
                    time_zones=time_zones,
                )
            )
    for renewal in upcoming.renewals:
        window = due_window(renewal.renews_at, now, config.renewal_windows)
        if window is not None:
            label = f"{renewal.renews_at.astimezone(UTC):%Y-%m-%d}"
            notices.append(
                DueNotice(
                    kind=NoticeKind.RENEWAL_UPCOMING,
                    customer_id=customer_id,
                    notice_id=f"renewal-{renewal.subscription_id}",
                    step=window_step("renewal", label, window),
                    window_days=window,
                    event_at=renewal.renews_at,
                    card_brand=card.brand if card else None,
                    card_last4=card.last4 if card else None,
                    time_zones=time_zones,
                )
            )
    return notices
