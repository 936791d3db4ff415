"""`/metrics` of the worker and the receiver: the counters move by what a real case and real
events did, with bounded labels, beside the open cases by status and the SDK's metrics."""

from __future__ import annotations

import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from temporalio.client import Client
from temporalio.worker import Worker

from activities import metrics
from activities.pre_dunning import PreDunningActivities
from activities.store import CaseStore
from config.converter import compact_data_converter
from config.settings import Settings
from tests.support.harness import Dunning
from tests.support.receiver import (
    Receiver,
    neutral_event,
    receiver_settings,
    temporal_is_down,
)
from workflows.customer import CustomerWorkflow
from workflows.dunning import DunningWorkflow
from workflows.models import CaseRecord, CaseStatus, TimelineEntry
from workflows.policy import Outcome
from workflows.pre_dunning import PreDunningWorkflow

RECOVERS_ON_2 = "pm_sim_recovers_on_attempt_2"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition, by name and sorted labels."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    """How far one sample moved between two scrapes (absent counts as 0)."""
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0) - before.get(key, 0)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    return samples(answer.text)


async def test_worker_metrics_count_a_recovered_case_and_pass_the_sdks_through(
    dunning: Dunning, tmp_path: Path
) -> None:
    port = free_port()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'unused.db'}",
        metrics_port=port,
        temporal_metrics_address=f"127.0.0.1:{free_port()}",
        _env_file=None,
    )
    # The worker polls through a client on the SDK runtime that exports its metrics.
    metered = await Client.connect(
        dunning.env.client.service_client.config.target_host,
        namespace=dunning.env.client.namespace,
        data_converter=compact_data_converter,
        runtime=metrics.runtime(settings),
    )
    case = await dunning.open_case(RECOVERS_ON_2)
    url = f"http://127.0.0.1:{port}/metrics"
    async with metrics.serving(settings, dunning.activities.store):
        before = await scrape(url)
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with Worker(
                metered,
                task_queue=dunning.task_queue,
                workflows=[DunningWorkflow, CustomerWorkflow, PreDunningWorkflow],
                activities=[
                    *dunning.activities.all(),
                    *PreDunningActivities(dunning.activities, dunning.pre_dunning).all(),
                ],
                activity_executor=executor,
                workflow_failure_exception_types=[Exception],
            ):
                handle = await dunning.start(case)
                result = await asyncio.wait_for(handle.result(), timeout=60)
        after = await scrape(url)

    assert result.outcome is Outcome.RECOVERED
    assert moved(before, after, "dunning_cases_opened_total") == 1
    assert moved(before, after, "dunning_case_outcomes_total", outcome="recovered") == 1
    assert moved(before, after, "dunning_case_outcomes_total", outcome="collections") == 0
    assert moved(before, after, "dunning_recovered_minor_units_total", currency="JPY") == 4980
    assert moved(before, after, "dunning_charges_total", decline_class="approved") == 1
    assert moved(before, after, "dunning_messages_total", channel="email", status="sent") == 2
    assert moved(before, after, "dunning_messages_total", channel="in_app", status="sent") == 1
    assert moved(before, after, "dunning_messages_total", channel="sms", status="sent") == 0
    assert ("dunning_cases_open", (("status", "active"),)) not in after  # finished
    # The SDK's own metrics, read through the same scrape.
    names = {name for name, _ in after}
    assert any(n.startswith("temporal_workflow_task_schedule_to_start_latency") for n in names)
    assert any(n.startswith("temporal_activity_execution_latency") for n in names)
    assert "process_resident_memory_bytes" in names
    # No case, invoice or customer id in any label.
    labels = {value for _, pairs in after for _, value in pairs}
    assert not {case.case_id, case.invoice_id, case.customer_id} & labels


def offline_receiver(tmp_path: Path) -> tuple[Receiver, CaseStore]:
    store = CaseStore(f"sqlite:///{tmp_path / 'offline.db'}")
    store.create_schema()
    return Receiver(receiver_settings(tmp_path), temporal_is_down, store), store


async def test_receiver_metrics_count_events_by_endpoint_and_reason(tmp_path: Path) -> None:
    receiver, _ = offline_receiver(tmp_path)
    before = samples(receiver.http.get("/metrics").text)

    event = neutral_event("payment_failed", {"invoice_id": "in_1"})
    body = json.dumps(event)
    assert (await receiver.billing(body=body, signature="t=1,v1=00")).status_code == 400
    assert (await receiver.stripe(body="{}", signature="nonsense")).status_code == 400
    # Authentic, but Temporal is down: kept pending, refused with 503 for a redelivery.
    pending = neutral_event(
        "payment_failed",
        {
            "invoice_id": "in_metrics_1",
            "customer": {"customer_id": "cus_m"},
            "amount_due": 2500,
            "currency": "usd",
        },
    )
    assert (await receiver.billing(pending)).status_code == 503
    receiver.http.get("/healthz")  # pages and /metrics itself are not events
    after = samples(receiver.http.get("/metrics").text)

    def rejected(endpoint: str, reason: str) -> float:
        return moved(
            before, after, "dunning_events_rejected_total", endpoint=endpoint, reason=reason
        )

    assert rejected("/events", "invalid") == 1
    assert rejected("/webhooks/stripe", "invalid") == 1
    assert rejected("/events", "unavailable") == 1
    assert moved(before, after, "dunning_events_accepted_total", endpoint="/events") == 0
    events = {k: v for k, v in after.items() if k[0].startswith("dunning_events_")}
    assert (
        sum(events.values())
        - sum(v for k, v in before.items() if k[0].startswith("dunning_events_"))
        == 3
    )
    assert not any(dict(labels).get("endpoint") in {"/healthz", "/metrics"} for _, labels in events)


async def test_receiver_metrics_count_open_cases_by_status_from_the_store(
    tmp_path: Path,
) -> None:
    receiver, store = offline_receiver(tmp_path)
    for number, status in enumerate(
        [CaseStatus.ACTIVE, CaseStatus.ACTIVE, CaseStatus.PAUSED, CaseStatus.RECOVERED]
    ):
        opened = "2026-01-05T09:00:00Z"
        store.record_case(
            CaseRecord(
                case_id=f"in_{number}",
                invoice_id=f"in_{number}",
                customer_id="cus_1",
                amount_due=1000,
                amount_recovered=0,
                currency="usd",
                status=status,
                policy="standard",
                policy_version=1,
                opened_at=opened,
                closed_at=opened if status is CaseStatus.RECOVERED else None,
                entries=[TimelineEntry(seq=1, at=opened, kind="opened")],
            )
        )

    scraped = receiver.http.get("/metrics")
    found = {
        labels: value
        for (name, labels), value in samples(scraped.text).items()
        if name == "dunning_cases_open"
    }

    assert found == {(("status", "active"),): 2, (("status", "paused"),): 1}
    assert "in_0" not in scraped.text
    assert "cus_1" not in scraped.text
