"""Cases on the time-skipping server through encrypting clients and workers: what support
types and what the customer is never sits in the history in plain text, and rotating keys
keeps a running case readable."""

from __future__ import annotations

import base64
import os

import pytest
from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, WorkflowExecution
from temporalio.api.history.v1 import History, HistoryEvent
from temporalio.api.workflowservice.v1 import GetWorkflowExecutionHistoryRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from config.settings import Settings
from intake.codec import ENCODING, KEY_ID, PayloadKeyError, data_converter
from tests.support.harness import Dunning, status_when
from workflows.dunning import DunningWorkflow
from workflows.models import CaseStatus, PauseRequest

PATCH_MARKER = "core_patch"
RECOVERS_ON_2 = "pm_sim_recovers_on_attempt_2"
REASON = "customer phoned: lost her job, call back Friday"
K1 = f"k1:{base64.b64encode(os.urandom(32)).decode()}"
K2 = f"k2:{base64.b64encode(os.urandom(32)).decode()}"


def keyed_client(env: WorkflowEnvironment, payload_keys: str | None) -> Client:
    """A client on the test server's connection whose data converter is the one
    `intake.client.connect` builds for PAYLOAD_KEYS (None: none, plain pydantic)."""
    settings = Settings(payload_keys=payload_keys, temporal_address="test", _env_file=None)
    converter = data_converter(settings)
    return Client(
        env.client.service_client, namespace=env.client.namespace, data_converter=converter
    )


def keyed(dunning: Dunning, payload_keys: str) -> Dunning:
    """The same test world, with a client and worker that encrypt with `payload_keys`."""
    client = keyed_client(dunning.env, payload_keys)
    return Dunning(
        env=WorkflowEnvironment.from_client(client),
        activities=dunning.activities,
        task_queue=dunning.task_queue,
    )


async def raw_history(env: WorkflowEnvironment, handle: WorkflowHandle) -> History:
    """The history as the server stores it, read with no codec at all."""
    response = await env.client.workflow_service.get_workflow_execution_history(
        GetWorkflowExecutionHistoryRequest(
            namespace=env.client.namespace, execution=WorkflowExecution(workflow_id=handle.id)
        )
    )
    return response.history


def payloads_in(message: Message) -> list[Payload]:
    """Every payload the message holds, but those no codec touches: search attributes (the
    server indexes them) and the SDK's patch markers (a patch id, written by the SDK core)."""
    if isinstance(message, HistoryEvent) and (
        message.marker_recorded_event_attributes.marker_name == PATCH_MARKER
    ):
        return []
    if isinstance(message, Payload):
        return [message]
    found: list[Payload] = []
    for field, value in message.ListFields():
        if field.message_type is None or field.name == "search_attributes":
            continue
        if field.message_type.GetOptions().map_entry:
            values = value.values()
        elif field.is_repeated:
            values = value
        else:
            values = [value]
        for item in values:
            if isinstance(item, Message):
                found.extend(payloads_in(item))
    return found


async def pause(handle: WorkflowHandle) -> None:
    await handle.execute_update(
        DunningWorkflow.pause_case, PauseRequest(reason=REASON, actor="support:kim")
    )


async def test_support_free_text_and_customer_details_never_sit_in_the_history_in_plain_text(
    dunning: Dunning,
) -> None:
    encrypted = keyed(dunning, K1)
    case = await encrypted.open_case(RECOVERS_ON_2)
    async with encrypted.worker():
        handle = await encrypted.start(case)
        await status_when(handle, lambda v: v.status is CaseStatus.ACTIVE, "the start")
        await pause(handle)
        view = await status_when(handle, lambda v: v.status is CaseStatus.PAUSED, "the pause")
        # A client without the key gets the worker's answer sealed, and is told why it
        # cannot read it (not the converter's "Unknown payload encoding").
        plain = keyed_client(dunning.env, None).get_workflow_handle(handle.id)
        with pytest.raises(PayloadKeyError, match="PAYLOAD_KEYS is unset"):
            await plain.query(DunningWorkflow.status)

    assert view.pause_reason == REASON  # a client with the key reads it
    history = await raw_history(dunning.env, handle)
    stored = history.SerializeToString()
    assert REASON.encode() not in stored
    assert b"cus_ann@example.com" not in stored
    payloads = payloads_in(history)
    assert payloads, "the history holds the case's input, results and the pause at least"
    assert {p.metadata["encoding"] for p in payloads} == {ENCODING}
    assert {p.metadata[KEY_ID] for p in payloads} == {b"k1"}
    # The customer id is only where operators search for it, never in a payload.
    assert not any(case.customer_id.encode() in p.data for p in payloads)


async def test_after_a_rotation_old_payloads_still_open_and_new_ones_use_the_new_key(
    dunning: Dunning,
) -> None:
    before = keyed(dunning, K1)
    case = await before.open_case(RECOVERS_ON_2)
    handle = await before.start(case)  # its input sealed with k1, before the rotation

    rotated = keyed(dunning, f"{K2},{K1}")
    async with rotated.worker():
        rotated_handle = rotated.env.client.get_workflow_handle(handle.id)
        await status_when(rotated_handle, lambda v: v.status is CaseStatus.ACTIVE, "the start")
        await pause(rotated_handle)
        view = await status_when(
            rotated_handle, lambda v: v.status is CaseStatus.PAUSED, "the pause"
        )

    assert view.pause_reason == REASON
    payloads = payloads_in(await raw_history(dunning.env, handle))
    key_ids = [p.metadata[KEY_ID] for p in payloads]
    assert key_ids[0] == b"k1"  # the case's input
    assert set(key_ids[1:]) == {b"k2"}  # everything written since: results, the pause

    # Without k1 the case's input cannot be opened: a rotation keeps the old keys.
    only_k2 = keyed_client(dunning.env, K2).data_converter.payload_codec
    assert only_k2 is not None
    with pytest.raises(PayloadKeyError, match="'k1'"):
        await only_k2.decode(payloads[:1])
