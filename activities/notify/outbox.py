"""The outbox notifier: the message row in the store is the delivery, plus a log line."""

from __future__ import annotations

import logging

from activities.faults import Fault, injected_fault
from activities.notify import NotifierUnavailable, OutboundMessage
from activities.notify.links import redact_tokens

log = logging.getLogger("dunning.outbox")


class OutboxNotifier:
    """`Notifier` that sends nothing: the rendered message stays in the `messages` table.
    With a `fault_rate`, that share of sends fails as a flaky provider's would (see
    `activities.faults`)."""

    def __init__(self, fault_rate: float = 0.0) -> None:
        self.fault_rate = fault_rate

    def send(self, message: OutboundMessage) -> str:
        """Log the message (by key, never by address, its links without their tokens) and
        return a provider-like id."""
        fault = injected_fault(self.fault_rate, message.key)
        if fault is Fault.UNAVAILABLE:
            raise NotifierUnavailable(f"outbox: 503 for {message.key}")
        text = redact_tokens(message.subject or message.body)
        log.info("outbox %s %s: %s", message.channel, message.key, text)
        if fault is Fault.TIMEOUT:  # sent, but the answer is lost: the retry must not resend
            raise TimeoutError(f"outbox: timed out on {message.key}")
        return f"outbox:{message.key}"
