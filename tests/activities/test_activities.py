"""The dunning activities called directly, on a SQLite store: charge, notify, templates.

Real store, real simulated gateway, real templates; the only stand-ins are tiny notifiers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlmodel import select

from activities.dunning import DunningActivities
from activities.notify import OutboundMessage, UndeliverableError
from activities.notify.links import verify_token
from activities.notify.templates import TEMPLATE_NAMES
from activities.payments import IdempotencyConflict
from activities.payments.simulated import DECLINING_TOKENS
from activities.store import CustomerProfile, SimulatedCharge
from config.policies import load_declines
from config.settings import CONFIG_DIR, Settings
from workflows.models import (
    CaseRecord,
    CaseStatus,
    ChargeRequest,
    Delivery,
    DeliveryStatus,
    NotifyRequest,
    OpenInvoice,
    PolicyRef,
    TimelineEntry,
)
from workflows.policy import Channel, DeclineClass

EMAIL = "aiko.tanaka@example.com"
PHONE = "+819012345678"
DEADLINE = datetime(2026, 3, 23, 9, 0, tzinfo=UTC)


class RecordingNotifier:
    """Delivers nothing; remembers what it was asked to send."""

    def __init__(self) -> None:
        self.sent: list[OutboundMessage] = []

    def send(self, message: OutboundMessage) -> str:
        self.sent.append(message)
        return f"rec-{len(self.sent)}"


class UnreachableNotifier:
    """Refuses every recipient, naming them the way Twilio's errors do."""

    def send(self, message: OutboundMessage) -> str:
        raise UndeliverableError(
            f"21610: Attempt to send to unsubscribed recipient {message.recipient}"
        )


@pytest.fixture
def activities(tmp_path) -> Iterator[DunningActivities]:
    """The activities as configured by default, on a SQLite file of their own."""
    acts = DunningActivities.from_settings(
        Settings(database_url=f"sqlite:///{tmp_path / 'dunning.db'}")
    )
    yield acts
    acts.store.engine.dispose()


@pytest.fixture
def sent(activities) -> RecordingNotifier:
    """Swap in one recording notifier for every channel."""
    notifier = RecordingNotifier()
    activities.notifiers = {channel: notifier for channel in Channel}
    return notifier


def _customer(**changes) -> CustomerProfile:
    fields = {
        "customer_id": "cus_1",
        "name": "Aiko Tanaka",
        "email": EMAIL,
        "phone": PHONE,
        "locale": "en",
        "time_zone": "Asia/Tokyo",
    }
    return CustomerProfile(**(fields | changes))


def _charge(token: str | None = "pm_card_visa", attempt: int = 1, **changes) -> ChargeRequest:
    fields = {
        "case_id": "case-1",
        "invoice_id": "in_1",
        "customer_id": "cus_1",
        "attempt": attempt,
        "amount": 4900,
        "currency": "USD",
        "payment_method": token,
    }
    return ChargeRequest(**(fields | changes))


def _notify(channels=tuple(Channel), template="reminder_gentle", step="reminder-1", **changes):
    fields = {
        "case_id": "case-1",
        "invoice_id": "in_1MtE3k2eZvKYlo2C",
        "customer_id": "cus_1",
        "step": step,
        "template": template,
        "channels": list(channels),
        "amount_due": 4900,
        "currency": "USD",
        "deadline": DEADLINE,
    }
    return NotifyRequest(**(fields | changes))


def _rows(activities: DunningActivities) -> list[dict]:
    return [m.model_dump() for m in activities.store.messages("case-1")]


# Charges -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "approved", "decline_code"),
    [
        ("pm_card_visa", True, None),
        ("pm_card_chargeDeclinedInsufficientFunds", False, "insufficient_funds"),
        ("pm_card_chargeDeclinedStolenCard", False, "stolen_card"),
        ("pm_card_authenticationRequired", False, "authentication_required"),
        ("pm_card_chargeDeclinedExpiredCard", False, "expired_card"),
        ("pm_not_a_token", False, "invalid_payment_method"),
        (None, False, "no_payment_method"),
    ],
)
def test_simulated_gateway_answers_by_token(activities, token, approved, decline_code):
    result = activities.charge(_charge(token))

    assert (result.approved, result.decline_code) == (approved, decline_code)
    assert result.reference.startswith("ch_sim_")
    (attempt,) = activities.store.attempts("case-1")
    assert (attempt.approved, attempt.decline_code, attempt.payment_method) == (
        approved,
        decline_code,
        token,
    )


def test_recovering_token_declines_attempt_one_then_approves_attempt_two(activities):
    token = "pm_sim_recovers_on_attempt_2"

    first = activities.charge(_charge(token, attempt=1))
    second = activities.charge(_charge(token, attempt=2))

    assert (first.approved, first.decline_code) == (False, "insufficient_funds")
    assert (second.approved, second.decline_code) == (True, None)
    assert [a.approved for a in activities.store.attempts("case-1")] == [False, True]


def test_same_idempotency_key_gives_the_same_answer_and_one_charge(activities):
    request = _charge("pm_card_visa")

    first = activities.charge(request)
    again = activities.charge(request)

    assert again == first
    with activities.store.session() as session:
        charges = session.exec(select(SimulatedCharge)).all()
    assert [c.idempotency_key for c in charges] == ["dunning:case-1:attempt:1"]
    assert len(activities.store.attempts("case-1")) == 1


def test_same_idempotency_key_with_another_amount_is_a_conflict(activities):
    activities.charge(_charge("pm_card_visa", amount=4900))

    with pytest.raises(IdempotencyConflict, match="dunning:case-1:attempt:1"):
        activities.charge(_charge("pm_card_visa", amount=9900))

    (attempt,) = activities.store.attempts("case-1")
    assert attempt.amount == 4900


def test_charge_falls_back_to_the_customers_stored_payment_method(activities):
    activities.store.upsert_customer(_customer(payment_method="pm_card_visa"))

    result = activities.charge(_charge(None))

    assert result.approved
    (attempt,) = activities.store.attempts("case-1")
    assert attempt.payment_method == "pm_card_visa"


def test_every_code_the_gateway_can_answer_is_classified_in_the_decline_table():
    declines = load_declines(CONFIG_DIR / "declines.toml")
    codes = set(DECLINING_TOKENS.values()) | {"no_payment_method", "invalid_payment_method"}

    assert codes <= set(declines.codes), codes - set(declines.codes)
    assert declines.classify("insufficient_funds") is DeclineClass.RETRY_LATER
    assert declines.classify("stolen_card") is DeclineClass.NEVER_RETRY
    assert declines.classify("authentication_required") is DeclineClass.NEEDS_CUSTOMER_ACTION
    assert declines.classify("no_payment_method") is DeclineClass.NEVER_RETRY


# Other activities --------------------------------------------------------------------------


def test_load_policy_returns_the_pinned_version(activities):
    policy = activities.load_policy(PolicyRef(name="standard", version=1))

    assert (policy.name, policy.version) == ("standard", 1)
    assert policy.declines.classify("stolen_card") is DeclineClass.NEVER_RETRY


def test_record_keeps_the_case_row_and_its_audit_lines(activities):
    record = CaseRecord(
        case_id="case-1",
        invoice_id="in_1",
        customer_id="cus_1",
        status=CaseStatus.ACTIVE,
        amount_due=4900,
        amount_recovered=0,
        currency="USD",
        policy="standard",
        policy_version=1,
        opened_at=DEADLINE,
        entries=[TimelineEntry(seq=1, at=DEADLINE, kind="opened")],
    )

    activities.record(record)
    activities.record(record)

    assert activities.store.get_case("case-1").status == "active"
    assert [e.kind for e in activities.store.case_events("case-1")] == ["opened"]


# Notifications -----------------------------------------------------------------------------


def test_notify_sends_one_message_per_channel(activities, sent):
    activities.store.upsert_customer(_customer())

    result = activities.notify(_notify())

    assert [(d.channel, d.status) for d in result.deliveries] == [
        (Channel.EMAIL, DeliveryStatus.SENT),
        (Channel.SMS, DeliveryStatus.SENT),
        (Channel.IN_APP, DeliveryStatus.SENT),
    ]
    assert [(m.channel, m.recipient) for m in sent.sent] == [
        (Channel.EMAIL, EMAIL),
        (Channel.SMS, PHONE),
        (Channel.IN_APP, "cus_1"),
    ]
    assert sent.sent[0].subject and not sent.sent[1].subject and not sent.sent[2].subject
    rows = activities.store.messages("case-1")
    assert [(r.channel, r.status, r.provider_id) for r in rows] == [
        ("email", "sent", "rec-1"),
        ("sms", "sent", "rec-2"),
        ("in_app", "sent", "rec-3"),
    ]
    assert all(r.sent_at is not None for r in rows)


def test_a_message_naming_several_open_invoices_links_the_customers_account_page(activities, sent):
    activities.store.upsert_customer(_customer())
    invoices = [
        OpenInvoice(case_id=f"case-{n}", invoice_id=f"in_{n}", amount_due=4900, currency="USD")
        for n in (1, 2, 3)
    ]

    activities.notify(_notify(channels=[Channel.EMAIL], open_invoices=invoices))
    activities.notify(
        _notify(channels=[Channel.EMAIL], step="reminder-2", open_invoices=invoices[:1])
    )

    several, one = sent.sent
    assert all(f"in_{n}  $49.00" in several.body for n in (1, 2, 3)) and "$147.00" in several.body
    assert several.variables["invoices"] == "in_1  $49.00\nin_2  $49.00\nin_3  $49.00"
    token = re.search(r"/account\?token=(\S+)", several.body).group(1)
    secret = activities.self_service.secret
    assert verify_token(token, secret, datetime.now(UTC), use="account") == "cus_1"
    assert "/recover?token=" in one.body and "/account" not in one.body


def test_notify_skips_a_channel_the_customer_has_no_contact_for(activities, sent):
    activities.store.upsert_customer(_customer(phone=None))

    result = activities.notify(_notify([Channel.EMAIL, Channel.SMS]))

    assert [(d.channel, d.status) for d in result.deliveries] == [
        (Channel.EMAIL, DeliveryStatus.SENT),
        (Channel.SMS, DeliveryStatus.SKIPPED),
    ]
    assert [m.channel for m in sent.sent] == [Channel.EMAIL]
    assert [r.channel for r in activities.store.messages("case-1")] == ["email"]


def test_notify_skips_every_channel_of_an_unknown_customer(activities, sent):
    result = activities.notify(_notify())

    assert {d.status for d in result.deliveries} == {DeliveryStatus.SKIPPED}
    assert sent.sent == []
    assert activities.store.messages("case-1") == []


def test_notify_twice_for_the_same_step_sends_nothing_new(activities, sent):
    activities.store.upsert_customer(_customer())
    first = activities.notify(_notify())
    rows = _rows(activities)

    again = activities.notify(_notify())

    assert len(sent.sent) == 3
    assert _rows(activities) == rows
    assert [d.status for d in again.deliveries] == [d.status for d in first.deliveries]
    assert [r["provider_id"] for r in rows] == ["rec-1", "rec-2", "rec-3"]


def test_notify_a_new_step_sends_again(activities, sent):
    activities.store.upsert_customer(_customer())
    activities.notify(_notify([Channel.EMAIL], step="reminder-1"))

    activities.notify(_notify([Channel.EMAIL], step="reminder-2", template="reminder_firm"))

    assert [m.key for m in sent.sent] == ["case-1:reminder-1:email", "case-1:reminder-2:email"]


def test_an_undeliverable_channel_fails_and_the_others_still_send(activities, sent):
    activities.store.upsert_customer(_customer())
    activities.notifiers[Channel.SMS] = UnreachableNotifier()

    result = activities.notify(_notify())
    again = activities.notify(_notify())

    statuses = [(d.channel, d.status) for d in result.deliveries]
    assert statuses == [
        (Channel.EMAIL, DeliveryStatus.SENT),
        (Channel.SMS, DeliveryStatus.FAILED),
        (Channel.IN_APP, DeliveryStatus.SENT),
    ]
    assert [(d.channel, d.status) for d in again.deliveries] == statuses
    assert [m.channel for m in sent.sent] == [Channel.EMAIL, Channel.IN_APP]
    assert result.deliveries[1].detail == (
        "21610: Attempt to send to unsubscribed recipient <recipient> (invalid)"
    )
    # The number is suppressed for SMS: no later step tries it again.
    suppression = activities.store.suppression("sms", PHONE)
    assert (suppression.reason, suppression.source) == ("invalid", "provider")
    rows = {r.channel: r for r in activities.store.messages("case-1")}
    assert (rows["sms"].status, rows["sms"].provider_id, rows["sms"].sent_at) == (
        "failed",
        None,
        None,
    )


def test_default_outbox_notifier_sends_without_an_account(activities):
    activities.store.upsert_customer(_customer())

    result = activities.notify(_notify([Channel.EMAIL]))

    (delivery,) = result.deliveries
    assert delivery.status is DeliveryStatus.SENT
    (row,) = activities.store.messages("case-1")
    assert row.provider_id == "outbox:case-1:reminder-1:email"


def test_nothing_that_goes_back_to_the_workflow_names_the_customer(activities, sent):
    activities.store.upsert_customer(_customer())
    activities.notifiers[Channel.SMS] = UnreachableNotifier()

    deliveries = []
    for name in TEMPLATE_NAMES:
        deliveries += activities.notify(_notify(template=name, step=name)).deliveries

    assert len(deliveries) == len(TEMPLATE_NAMES) * len(Channel)
    texts = [d.model_dump_json() for d in deliveries]
    texts += [r.subject + r.body for r in activities.store.messages("case-1")]
    for text in texts:
        assert EMAIL not in text and PHONE not in text, text


# Amounts and languages --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "shown"),
    [(4980, "JPY", "¥4,980"), (4900, "USD", "$49.00"), (123456, "USD", "$1,234.56")],
)
def test_amounts_are_formatted_per_currency(activities, sent, amount, currency, shown):
    activities.store.upsert_customer(_customer())

    activities.notify(_notify([Channel.IN_APP], amount_due=amount, currency=currency))

    (message,) = sent.sent
    assert shown in message.body


def test_a_regional_locale_gets_its_language_and_its_amount_format(activities, sent):
    activities.store.upsert_customer(_customer(locale="en-GB"))

    result = activities.notify(_notify([Channel.IN_APP], amount_due=4900, currency="USD"))

    assert result.deliveries[0].status is DeliveryStatus.SENT
    assert "US$49.00" in sent.sent[0].body


def test_an_unknown_locale_falls_back_to_the_default_language(activities, sent):
    activities.store.upsert_customer(_customer(locale="xx"))

    activities.notify(_notify([Channel.IN_APP], amount_due=4900, currency="USD"))

    assert "$49.00" in sent.sent[0].body


# Suppressions, the weekly cap, fallback and contact facts --------------------------------------


def test_a_suppressed_contact_is_skipped_and_the_others_still_send(activities, sent):
    activities.store.upsert_customer(_customer())
    activities.store.suppress("sms", PHONE, "opted_out", source="twilio")

    result = activities.notify(_notify())

    assert [(d.channel, d.status) for d in result.deliveries] == [
        (Channel.EMAIL, DeliveryStatus.SENT),
        (Channel.SMS, DeliveryStatus.SKIPPED),
        (Channel.IN_APP, DeliveryStatus.SENT),
    ]
    assert result.deliveries[1].detail == "suppressed: opted_out (twilio)"
    assert [m.channel for m in sent.sent] == [Channel.EMAIL, Channel.IN_APP]


def test_an_email_suppression_matches_whatever_the_case_of_the_address(activities, sent):
    activities.store.upsert_customer(_customer())
    activities.store.suppress("email", EMAIL.upper(), "unsubscribed", source="sendgrid")

    result = activities.notify(_notify([Channel.EMAIL, Channel.SMS]))

    assert [d.status for d in result.deliveries] == [DeliveryStatus.SKIPPED, DeliveryStatus.SENT]


def test_when_no_channel_of_the_step_reaches_the_customer_another_is_tried(activities, sent):
    activities.store.upsert_customer(_customer())
    activities.store.suppress("email", EMAIL, "bounced", source="sendgrid")

    result = activities.notify(_notify([Channel.EMAIL]))

    assert [(d.channel, d.status) for d in result.deliveries] == [
        (Channel.EMAIL, DeliveryStatus.SKIPPED),
        (Channel.SMS, DeliveryStatus.SENT),
    ]
    assert [m.channel for m in sent.sent] == [Channel.SMS]


def test_a_reminder_that_interrupted_nobody_goes_by_the_other_channel_too(activities, sent):
    activities.store.upsert_customer(_customer())
    activities.store.suppress("sms", PHONE, "STOP", source="twilio")

    # A learned or explored plan chose SMS; the banner alone would leave them unaware.
    result = activities.notify(_notify([Channel.SMS, Channel.IN_APP]))

    assert [(d.channel, d.status) for d in result.deliveries] == [
        (Channel.SMS, DeliveryStatus.SKIPPED),
        (Channel.IN_APP, DeliveryStatus.SENT),
        (Channel.EMAIL, DeliveryStatus.SENT),
    ]
    assert [m.channel for m in sent.sent] == [Channel.IN_APP, Channel.EMAIL]


def test_reminders_yield_to_the_weekly_cap_across_cases_but_the_final_notice_does_not(
    activities, sent
):
    activities.store.upsert_customer(_customer())
    activities.messages_per_week = 2
    activities.notify(_notify([Channel.EMAIL], case_id="case-1", step="reminder-1"))
    activities.notify(_notify([Channel.EMAIL], case_id="case-2", step="reminder-1"))

    capped = activities.notify(
        _notify([Channel.EMAIL], case_id="case-2", step="reminder-2", tone="firm")
    )
    final = activities.notify(
        _notify([Channel.EMAIL], case_id="case-2", step="reminder-3", tone="final")
    )

    assert capped.deliveries == [
        Delivery(
            channel=Channel.EMAIL,
            status=DeliveryStatus.SKIPPED,
            detail="frequency cap: 2 messages in 7 days",
        )
    ]
    assert final.deliveries[0].status is DeliveryStatus.SENT
    assert len(sent.sent) == 3


@pytest.mark.parametrize(
    ("time_zone", "phone", "zones"),
    [
        ("Asia/Tokyo", "+14155550100", ["Asia/Tokyo"]),  # the customer's own zone wins
        (None, "+14155550100", ["America/Los_Angeles"]),  # else their number's area code
        (None, "+819012345678", ["Asia/Tokyo"]),
        (None, "+18005550100", []),  # toll-free: could be anywhere
        (None, None, []),
    ],
)
def test_contact_facts_name_zones_and_never_the_number(activities, time_zone, phone, zones):
    activities.store.upsert_customer(_customer(time_zone=time_zone, phone=phone))

    facts = activities.contact_facts("cus_1")

    assert facts.time_zones == zones
    assert "4155550100" not in facts.model_dump_json()
