"""Contact hours: messages reach people only at decent local hours.

Pure (no I/O but the time-zone database, no Temporal import): the workflow imports it
passed through the sandbox, so `zoneinfo` works as it does anywhere else.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator


class ContactHours(BaseModel):
    """The local hours in which a customer may be messaged, in every zone they may be in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    start: time = time(8, 0)
    end: time = time(21, 0)

    @field_validator("end")
    @classmethod
    def _after_start(cls, end: time, info) -> time:
        start = info.data.get("start")
        if start is not None and end <= start:
            raise ValueError("end must be after start (a window within one day)")
        return end

    def allows(self, moment: datetime, zone: str) -> bool:
        """True when `moment` falls within contact hours in `zone`."""
        local = moment.astimezone(ZoneInfo(zone)).time()
        return self.start <= local < self.end

    def next_contact_time(self, now: datetime, zones: list[str]) -> datetime:
        """The first moment from `now` inside contact hours in every zone.

        Zones that never share a window (a number that maps to both coasts of a continent
        does; Hawaii and Maine may not) fall back to the first zone alone. With no zone known,
        or contact hours disabled, that is `now`.
        """
        if not self.enabled or not zones:
            return now
        for candidates in (zones, zones[:1]):
            for moment in sorted({now, *self._window_starts(now, candidates)}):
                if all(self.allows(moment, zone) for zone in candidates):
                    return moment
        raise AssertionError("a single zone always has a window within three days")

    def _window_starts(self, now: datetime, zones: list[str]) -> list[datetime]:
        starts = []
        for zone in zones:
            local_today = now.astimezone(ZoneInfo(zone)).date()
            for day in range(3):
                local = datetime.combine(
                    local_today + timedelta(days=day), self.start, tzinfo=ZoneInfo(zone)
                )
                if local >= now:
                    starts.append(local.astimezone(UTC))
        return starts


def valid_zone(zone: str) -> bool:
    """True for a zone name the time-zone database knows (e.g. ``Asia/Tokyo``)."""
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True
