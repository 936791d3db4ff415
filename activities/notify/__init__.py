"""Notifiers behind one protocol; the outbox needs no email or SMS account."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel

from workflows.policy import Channel


class OutboundMessage(BaseModel):
    """A rendered message for one recipient on one channel."""

    key: str
    channel: Channel
    recipient: str
    subject: str = ""
    body: str
    html: str = ""


class Notifier(Protocol):
    """Delivers a message and returns the provider's id for it.

    Raise `UndeliverableError` when this recipient cannot be reached on this channel;
    anything else is taken as transient and the activity retries."""

    def send(self, message: OutboundMessage) -> str:
        """Hand the message to the provider."""
        ...


class UndeliverableError(RuntimeError):
    """The recipient cannot be reached on this channel; the message must not name them."""
