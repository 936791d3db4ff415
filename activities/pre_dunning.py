"""The pre-dunning activities: find the notices due today, and send one.

A notice goes out through the dunning activities' own delivery (suppressions, the outbox row
written before the provider call, fallback channels) and gives way to the weekly cap like a
gentle reminder. Its outbox key is (notice id, step, channel), e.g. (card-pm_123,
expiry-2027-03-P7D, email): a re-run scan, a retried activity or a restarted worker never
sends it twice.
"""

from __future__ import annotations

from temporalio import activity

from activities.dunning import DunningActivities, Outgoing
from activities.notify.contacts import contact_zones
from activities.notify.templates import notice_variables
from activities.store import MessageStatus, utcnow
from config.policies import load_pre_dunning
from config.settings import Settings
from workflows.models import Delivery, NotifyResult
from workflows.notice_windows import (
    NoticeBatch,
    NoticeRequest,
    NoticeScan,
    PreDunning,
    due_notices,
)
from workflows.policy import Tone

SCAN_PAGE = 200
"""Customers per scan activity: each asks the gateway about each of them."""


class PreDunningActivities:
    """What the pre-dunning workflow does outside itself, over the dunning activities'
    store, biller, templates and delivery."""

    def __init__(self, dunning: DunningActivities, config: PreDunning) -> None:
        self.dunning = dunning
        self.config = config

    @classmethod
    def from_settings(cls, settings: Settings, dunning: DunningActivities) -> PreDunningActivities:
        """The activities over `dunning`, with PRE_DUNNING_FILE's windows; a bad file fails
        here, at start-up."""
        return cls(dunning, load_pre_dunning(settings.pre_dunning_file))

    def all(self) -> list:
        """The activity callables to register on a worker."""
        return [self.due_notices, self.send_notice]

    @activity.defn
    def due_notices(self, scan: NoticeScan) -> NoticeBatch:
        """The notices due at `scan.at` for one page of the store's customers, leaving out
        those the outbox already holds (one a provider refused, or none at all because the
        weekly cap held it back, is due again at the next scan while its window lasts).
        Reads only: safe to retry."""
        store, biller = self.dunning.store, self.dunning.biller
        customers = store.customers(after=scan.after, limit=SCAN_PAGE)
        notices = []
        for customer in customers:
            zones = contact_zones(customer.time_zone, customer.phone)
            upcoming = biller.upcoming(customer.customer_id)
            for notice in due_notices(customer.customer_id, upcoming, self.config, scan.at, zones):
                if not any(
                    m.step == notice.step and m.status != MessageStatus.REFUSED
                    for m in store.messages(notice.notice_id)
                ):
                    notices.append(notice)
        full = len(customers) == SCAN_PAGE
        return NoticeBatch(
            notices=notices,
            channels=self.config.channels,
            contact_hours=self.config.contact_hours,
            next_after=customers[-1].customer_id if full else None,
        )

    @activity.defn
    def send_notice(self, request: NoticeRequest) -> NotifyResult:
        """Send one notice, at most once per (notice, step, channel), in the customer's
        language, linking to their account page; skipped on suppressed contacts and when
        the weekly cap is reached (a notice yields like a gentle reminder)."""
        notice, dunning = request.notice, self.dunning
        capped = dunning.capped(notice.customer_id, Tone.GENTLE, request.at, request.channels)
        if capped is not None:
            return capped
        customer = dunning.store.get_customer(notice.customer_id)
        outgoing = Outgoing(
            case_id=notice.notice_id,
            customer_id=notice.customer_id,
            step=notice.step,
            template=notice.kind.value,
            at=request.at,
        )

        def variables() -> dict[str, object]:
            now = utcnow()
            return notice_variables(
                name=customer.name,
                link=dunning.self_service.account_link_for(notice.customer_id, now),
                unsubscribe=dunning.self_service.unsubscribe_link_for(notice.notice_id, now),
                notice_id=notice.notice_id,
                card_brand=notice.card_brand,
                card_last4=notice.card_last4,
                event_at=notice.event_at,
                locale=customer.locale,
                time_zone=customer.time_zone,
            )

        deliveries: list[Delivery] = []
        dunning.deliver_each(
            request.channels,
            lambda c: dunning.deliver_message(outgoing, customer, c, variables),
            deliveries,
        )
        return NotifyResult(deliveries=deliveries)
