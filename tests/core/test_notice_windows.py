"""Pre-dunning's pure core (workflows/notice_windows.py): which window a card or a renewal is
in on a day, the outbox step that makes its notice go out once, and when each may go out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from workflows.contact_hours import ContactHours
from workflows.notice_windows import (
    CardOnFile,
    NoticeBatch,
    NoticeKind,
    PreDunning,
    Renewal,
    Upcoming,
    card_expires_at,
    due_notices,
    due_window,
    send_times,
)

CONFIG = PreDunning(card_windows=[30, 7], renewal_windows=[14])
CARD = CardOnFile(payment_method="pm_1", brand="visa", last4="4242", exp_month=3, exp_year=2027)
EXPIRES = datetime(2027, 4, 1, tzinfo=UTC)  # a card marked 03/27 works through 31 March


@pytest.mark.parametrize(
    ("month", "year", "end"),
    [
        (3, 2027, datetime(2027, 4, 1, tzinfo=UTC)),
        (12, 2026, datetime(2027, 1, 1, tzinfo=UTC)),
        (2, 2028, datetime(2028, 3, 1, tzinfo=UTC)),  # a leap February: through the 29th
    ],
)
def test_a_card_expires_at_the_end_of_its_month(month, year, end):
    assert card_expires_at(month, year) == end


def test_an_expiry_month_outside_1_to_12_is_refused():
    with pytest.raises(ValueError, match="1-12"):
        card_expires_at(13, 2027)


@pytest.mark.parametrize(
    ("left", "window"),
    [
        (timedelta(days=45), None),  # before the widest window
        (timedelta(days=30, seconds=1), None),
        (timedelta(days=30), 30),
        (timedelta(days=8), 30),
        (timedelta(days=7), 7),  # a late first run: the 7-day notice, not both
        (timedelta(hours=1), 7),
        (timedelta(0), None),  # expired: too late to warn
        (-timedelta(days=2), None),
    ],
)
def test_the_narrowest_window_the_day_is_in_is_due(left, window):
    assert due_window(EXPIRES, EXPIRES - left, [30, 7]) == window


def test_one_card_gets_one_notice_per_window_keyed_by_its_expiry_month():
    first = due_notices("cus_1", Upcoming(card=CARD), CONFIG, EXPIRES - timedelta(days=20), [])
    again = due_notices("cus_1", Upcoming(card=CARD), CONFIG, EXPIRES - timedelta(days=19), [])
    late = due_notices("cus_1", Upcoming(card=CARD), CONFIG, EXPIRES - timedelta(days=3), [])

    [notice] = first
    assert notice.kind is NoticeKind.CARD_EXPIRING
    assert (notice.notice_id, notice.step) == ("card-pm_1", "expiry-2027-03-P30D")
    assert (notice.card_brand, notice.card_last4, notice.event_at) == ("visa", "4242", EXPIRES)
    assert [(n.notice_id, n.step) for n in again] == [(notice.notice_id, notice.step)]
    assert [n.step for n in late] == ["expiry-2027-03-P7D"]


def test_a_renewed_card_on_the_same_payment_method_gets_notices_of_its_own():
    renewed = CARD.model_copy(update={"exp_year": 2030})
    now = datetime(2030, 3, 20, tzinfo=UTC)

    [notice] = due_notices("cus_1", Upcoming(card=renewed), CONFIG, now, [])

    assert notice.step == "expiry-2030-03-P30D"


def test_a_yearly_renewal_gets_its_notice_and_names_the_card_it_will_charge():
    renews = datetime(2027, 1, 15, 9, tzinfo=UTC)
    upcoming = Upcoming(
        card=CARD,
        renewals=[
            Renewal(subscription_id="sub_1", renews_at=renews),
            Renewal(subscription_id="sub_2", renews_at=renews + timedelta(days=90)),
        ],
    )

    notices = due_notices("cus_1", upcoming, CONFIG, renews - timedelta(days=10), ["Asia/Tokyo"])

    [notice] = notices  # the card is months from expiry, sub_2 months from renewal
    assert notice.kind is NoticeKind.RENEWAL_UPCOMING
    assert (notice.notice_id, notice.step) == ("renewal-sub_1", "renewal-2027-01-15-P14D")
    assert (notice.card_last4, notice.time_zones) == ("4242", ["Asia/Tokyo"])


def test_a_customer_with_nothing_coming_up_gets_nothing():
    assert due_notices("cus_1", Upcoming(), CONFIG, EXPIRES, []) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("card_windows", [0]), ("card_windows", [30, 30]), ("renewal_windows", [400])],
)
def test_windows_are_days_each_given_once(field, value):
    with pytest.raises(ValidationError, match=field):
        PreDunning(**{field: value})


def test_notices_wait_for_their_customers_morning_and_leave_later_ones_to_the_next_run():
    now = datetime(2027, 3, 10, 20, 0, tzinfo=UTC)  # 05:00 in Tokyo, 16:00 in New York
    base = due_notices("cus_1", Upcoming(card=CARD), CONFIG, now, [])[0]
    tokyo = base.model_copy(update={"customer_id": "cus_jp", "time_zones": ["Asia/Tokyo"]})
    new_york = base.model_copy(update={"customer_id": "cus_us", "time_zones": ["America/New_York"]})
    anywhere = base.model_copy(update={"customer_id": "cus_x", "time_zones": []})
    batch = NoticeBatch(notices=[tokyo, new_york, anywhere], contact_hours=ContactHours())

    times = send_times(batch, now, now + timedelta(hours=23))
    soon = send_times(batch, now, now + timedelta(hours=2))

    assert [(at, [n.customer_id for n in group]) for at, group in times] == [
        (now, ["cus_us", "cus_x"]),
        (datetime(2027, 3, 10, 23, 0, tzinfo=UTC), ["cus_jp"]),  # 08:00 in Tokyo
    ]
    assert [at for at, _ in soon] == [now]  # Tokyo's morning is the next run's
