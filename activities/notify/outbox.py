"""The outbox notifier: the message row in the store is the delivery, plus a log line."""

from __future__ import annotations

import logging

from activities.notify import OutboundMessage
from activities.notify.links import redact_tokens

log = logging.getLogger("dunning.outbox")


class OutboxNotifier:
    """`Notifier` that sends nothing: the rendered message stays in the `messages` table."""

    def send(self, message: OutboundMessage) -> str:
        """Log the message (by key, never by address, its links without their tokens) and
        return a provider-like id."""
        text = redact_tokens(message.subject or message.body)
        log.info("outbox %s %s: %s", message.channel, message.key, text)
        return f"outbox:{message.key}"
