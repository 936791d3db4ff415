"""The collections hand-off: each case sent to collections as the record an agency needs.

JSON gives the full nested record (the customer's contact, every charge attempt, every
message); CSV one row per case, its attempts and messages summarised as counts and the last
one. Amounts are in the currency's minor units (4980 USD is $49.80), times ISO 8601 in UTC.
The records carry contact details: write them only where the agency's data may go.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any, Literal

from activities.store import CollectionsCase, MessageStatus

ExportFormat = Literal["csv", "json"]

CSV_COLUMNS = [
    "case_id",
    "invoice_id",
    "customer_id",
    "subscription_id",
    "currency",
    "amount_original",
    "amount_paid",
    "amount_due",
    "late_fee",
    "failed_at",
    "opened_at",
    "sent_to_collections_at",
    "customer_name",
    "customer_email",
    "customer_phone",
    "customer_locale",
    "customer_country",
    "customer_time_zone",
    "attempts",
    "last_attempt_at",
    "last_attempt_result",
    "last_decline_code",
    "messages",
    "messages_sent",
    "last_message_at",
    "last_message_channel",
    "last_message_template",
    "last_message_status",
]
"""The CSV's header, in order."""

# Message rows that went out (an unconfirmed one may have): what an agency counts as sent.
_SENT = {MessageStatus.SENT, MessageStatus.UNCONFIRMED}


def collections_record(item: CollectionsCase) -> dict[str, Any]:
    """The full record of one case: ids, amounts, dates, contact, attempts and messages."""
    case, customer = item.case, item.customer
    return {
        "case_id": case.case_id,
        "invoice_id": case.invoice_id,
        "customer_id": case.customer_id,
        "subscription_id": case.subscription_id,
        "currency": case.currency,
        "amount_original": case.amount_due + case.amount_recovered,
        "amount_paid": case.amount_recovered,
        "amount_due": case.amount_due,
        "late_fee": case.late_fee or 0,
        "failed_at": _iso(case.failed_at),
        "opened_at": _iso(case.opened_at),
        "sent_to_collections_at": _iso(case.closed_at),
        "customer": {
            "name": customer.name if customer else None,
            "email": customer.email if customer else None,
            "phone": customer.phone if customer else None,
            "locale": customer.locale if customer else None,
            "country": customer.country if customer else None,
            "time_zone": customer.time_zone if customer else None,
        },
        "attempts": [
            {
                "attempt": a.attempt,
                "at": _iso(a.at),
                "amount": a.amount,
                "result": "approved" if a.approved else "declined",
                "decline_code": a.decline_code,
            }
            for a in item.attempts
        ],
        "messages": [
            {
                "at": _iso(m.sent_at or m.step_at or m.created_at),
                "channel": m.channel,
                "template": m.template,
                "status": m.status,
                "delivery": m.delivery,
            }
            for m in item.messages
        ],
    }


def export(items: list[CollectionsCase], format: ExportFormat) -> str:
    """The cases as `format`: a JSON list of records (``[]`` for none), or CSV with a header
    row and one row per case (the header alone for none)."""
    records = [collections_record(item) for item in items]
    if format == "json":
        return json.dumps(records, ensure_ascii=False, indent=2) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_row(record) for record in records)
    return out.getvalue()


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
    """A record flattened: contact as columns, attempts and messages as counts and the last."""
    attempts, messages = record["attempts"], record["messages"]
    last_attempt = attempts[-1] if attempts else {}
    last_message = messages[-1] if messages else {}
    row = {k: v for k, v in record.items() if k in CSV_COLUMNS}
    row.update({f"customer_{k}": v for k, v in record["customer"].items()})
    row.update(
        attempts=len(attempts),
        last_attempt_at=last_attempt.get("at"),
        last_attempt_result=last_attempt.get("result"),
        last_decline_code=last_attempt.get("decline_code"),
        messages=len(messages),
        messages_sent=sum(m["status"] in _SENT for m in messages),
        last_message_at=last_message.get("at"),
        last_message_channel=last_message.get("channel"),
        last_message_template=last_message.get("template"),
        last_message_status=last_message.get("delivery") or last_message.get("status"),
    )
    return row


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
