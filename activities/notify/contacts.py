"""Facts about a customer's contacts that are safe to hand a workflow: zones, not numbers."""

from __future__ import annotations

import phonenumbers
from phonenumbers import timezone as number_zones

from workflows.contact_hours import valid_zone

MAX_NUMBER_ZONES = 4


def contact_zones(time_zone: str | None, phone: str | None) -> list[str]:
    """The customer's own zone when known; else every zone their phone number may be in
    (a US number may span several); else none, and contact hours cannot apply."""
    if time_zone and valid_zone(time_zone):
        return [time_zone]
    if not phone:
        return []
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return []
    zones = [zone for zone in number_zones.time_zones_for_number(number) if valid_zone(zone)]
    # A number that could be anywhere (toll-free, non-geographic) says nothing about hours.
    return zones if len(zones) <= MAX_NUMBER_ZONES else []
