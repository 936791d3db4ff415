"""The outbox notifier: the message row in the store is the delivery, plus a log line."""

from __future__ import annotations

import logging

from activities.notify import OutboundMessage

log = logging.getLogger("dunning.outbox")


class OutboxNotifier:
    """`Notifier` that sends nothing: the rendered message stays in the `messages` table."""

    def send(self, message: OutboundMessage) -> str:
        """Log the message (by key, never by address) and return a provider-like id."""
        log.info("outbox %s %s: %s", message.channel, message.key, message.subject or message.body)
        return f"outbox:{message.key}"
