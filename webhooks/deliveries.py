"""What providers later say of the messages we sent: found by their id, noted on the row."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlmodel import select

from activities.store import CaseStore, Message


def find_message(
    store: CaseStore, channel: str, provider_ids: Iterable[str], key: str = ""
) -> Message | None:
    """Our row for a message on `channel`: by one of the provider's ids, else by the message
    key (``<case>:<step>:<channel>``) we gave the provider, which also finds a row whose
    provider id is not written yet (a report can overtake the send's answer)."""
    with store.session() as session:
        for provider_id in filter(None, provider_ids):
            row = session.exec(
                select(Message).where(
                    Message.provider_id == provider_id, Message.channel == channel
                )
            ).first()
            if row is not None:
                return row
    parts = key.rsplit(":", 2)  # a case id may itself hold ":"
    if len(parts) != 3 or parts[2] != channel:
        return None
    return store.message(*parts)


def note_delivery(
    store: CaseStore, row: Message, delivery: str, progress: Mapping[str, int]
) -> str:
    """Set the row's delivery unless it already got further (reports can arrive out of order:
    a late "sent" never hides "delivered"); a one-line account of what was done."""
    where = f"message {row.case_id}/{row.step}/{row.channel}"
    if not row.provider_id:
        return f"{where}: {delivery} not noted, the send has not recorded its id yet"
    if progress.get(delivery, 0) < progress.get(row.delivery or "", -1):
        return f"{where}: {delivery} after {row.delivery}, kept {row.delivery}"
    store.record_delivery(row.provider_id, delivery)
    return f"{where}: {delivery}"
