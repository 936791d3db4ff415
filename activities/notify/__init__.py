"""Notifiers behind one protocol; the outbox needs no email or SMS account."""

from __future__ import annotations

from enum import StrEnum
from typing import Protocol

from pydantic import BaseModel, Field

from workflows.policy import Channel


class OutboundMessage(BaseModel):
    """A rendered message for one recipient on one channel.

    `case_id`, `step` and `template` are opaque ids a provider may carry as metadata (SendGrid
    categories and custom args, Twilio status callbacks); nothing else about the customer
    may leave in metadata. `variables` feed a provider-side template when one is configured."""

    key: str
    channel: Channel
    recipient: str
    subject: str = ""
    body: str
    html: str = ""
    case_id: str = ""
    step: str = ""
    template: str = ""
    variables: dict[str, str] = Field(default_factory=dict)


class Notifier(Protocol):
    """Delivers a message and returns the provider's id for it.

    Raise `UndeliverableError` when this recipient cannot be reached on this channel and
    `NotifierConfigError` when no retry can help; anything else is taken as transient and the
    activity retries. No message may name the recipient: it can reach workflow history."""

    def send(self, message: OutboundMessage) -> str:
        """Hand the message to the provider."""
        ...


class UndeliverableReason(StrEnum):
    """Why a contact cannot take messages on a channel; each becomes a suppression."""

    INVALID = "invalid"
    """Not a working address or number (SendGrid 400 on the address, Twilio 21211)."""
    NOT_SMS_CAPABLE = "not_sms_capable"
    """A landline or a number that cannot receive SMS (Twilio 21614)."""
    OPTED_OUT = "opted_out"
    """The recipient said STOP or unsubscribed (Twilio 21610)."""


class UndeliverableError(RuntimeError):
    """The recipient cannot be reached on this channel; the message must not name them."""

    def __init__(self, message: str, reason: UndeliverableReason = UndeliverableReason.INVALID):
        super().__init__(message)
        self.reason = reason


class NotifierConfigError(RuntimeError):
    """The provider refuses us, not the recipient (bad key, unverified sender, malformed
    request): retrying cannot help, so the activity must not retry it."""


class NotifierUnavailable(RuntimeError):
    """The provider is rate limiting, failing or unreachable: the activity retries."""
