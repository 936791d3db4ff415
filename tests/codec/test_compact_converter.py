"""The shared data converter leaves default-valued fields out of payloads, and every model
that crosses the workflow boundary reads back equal: with every field set, and with only
its required ones. Payloads written in full (histories from before) still decode."""

from __future__ import annotations

import enum
import inspect
import types
import typing
from datetime import UTC, datetime, time, timedelta

import annotated_types
import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from config.converter import compact_data_converter
from workflows import models, steps
from workflows.contact_hours import ContactHours
from workflows.conversation import CaseJoined, ConversationCase, ConversationNote, ReminderDue
from workflows.models import CaseInput, ChargeRequest, Failure, NotifyRequest
from workflows.policy import Channel

CONVERTER = compact_data_converter.payload_converter
AT = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
PAYLOAD_MODELS = sorted(
    (
        model
        for module in (models, steps)
        for _, model in inspect.getmembers(module, inspect.isclass)
        if issubclass(model, BaseModel) and model.__module__ == module.__name__
    ),
    key=lambda model: model.__name__,
)
RULED = {ContactHours: ContactHours(enabled=False, start=time(9), end=time(17, 30))}
"""Samples of models with rules across their fields, which `sample` cannot satisfy."""


def sample(model: type[BaseModel], every_field: bool) -> BaseModel:
    """An instance of `model`: every field set to a value other than its default, or only
    the required ones."""
    hints = typing.get_type_hints(model)
    fields = {
        name: value_for(hints[name], field.metadata)
        for name, field in model.model_fields.items()
        if every_field or field.is_required()
    }
    return model.model_validate(fields)


def value_for(annotation: object, metadata: list[object] = ()) -> object:
    """A valid value of `annotation` (within the bounds in `metadata`), never its usual
    default."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return args[0]
    if origin in (typing.Union, types.UnionType):
        return value_for(next(arg for arg in args if arg is not type(None)), metadata)
    if origin is typing.Annotated:
        return value_for(args[0], [*metadata, *args[1:]])
    if origin in (list, set, tuple):
        return [value_for(args[0])]
    if origin is dict:
        return {value_for(args[0]): value_for(args[1])}
    if annotation in RULED:
        return RULED[annotation]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample(annotation, every_field=True)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return list(annotation)[-1]
    if annotation is bool:
        return True
    if annotation in (int, float):
        bounds = {type(m): m for m in metadata}
        low = bounds.get(annotated_types.Ge, bounds.get(annotated_types.Gt))
        value = 2 if low is None else max(2, int(getattr(low, "ge", getattr(low, "gt", 0))) + 1)
        return value if annotation is int else 0.5
    if annotation is str:
        pattern = next((m.pattern for m in metadata if getattr(m, "pattern", None)), "")
        if pattern and "A-Z]{3}" in pattern:
            return "USD"
        if pattern and "0-9a-f]{64}" in pattern:
            return "ab" * 32
        longest = next((m.max_length for m in metadata if getattr(m, "max_length", None)), 4)
        return "id_1"[:longest]
    if annotation is datetime or getattr(annotation, "__name__", "") == "AwareDatetime":
        return AT
    if annotation is timedelta:
        return timedelta(days=2)
    raise TypeError(f"no sample value for {annotation!r}")


def round_trip(value: BaseModel) -> BaseModel:
    [payload] = CONVERTER.to_payloads([value])
    [back] = CONVERTER.from_payloads([payload], [type(value)])
    return back


@pytest.mark.parametrize("model", PAYLOAD_MODELS, ids=lambda model: model.__name__)
@pytest.mark.parametrize("every_field", [True, False], ids=["every field", "required only"])
def test_every_payload_model_reads_back_equal(model: type[BaseModel], every_field: bool) -> None:
    value = sample(model, every_field)

    assert round_trip(value) == value


def test_fields_at_their_default_stay_out_of_the_payload() -> None:
    request = NotifyRequest(
        case_id="in_1",
        invoice_id="in_1",
        customer_id="cus_1",
        step="reminder-1",
        template="reminder_gentle",
        channels=[Channel.EMAIL],
        amount_due=4900,
        currency="USD",
    )
    [payload] = CONVERTER.to_payloads([request])

    assert b"null" not in payload.data and b"[]" not in payload.data
    assert b'"amount_paid"' not in payload.data and b'"conversation"' not in payload.data
    assert (
        len(payload.data)
        < len(pydantic_data_converter.payload_converter.to_payloads([request])[0].data) / 2
    )


def test_a_conversation_note_keeps_its_kind_so_the_union_reads_back_the_same_member() -> None:
    case = ConversationCase(
        case_id="in_1", invoice_id="in_1", workflow_id="dunning-in_1", amount_due=1, currency="USD"
    )
    joined = CaseJoined(customer_id="cus_1", case=case)
    reminder = sample(ReminderDue, every_field=False)
    payloads = CONVERTER.to_payloads([joined, reminder])

    assert b'"kind":"joined"' in payloads[0].data
    assert CONVERTER.from_payloads(payloads, [ConversationNote, ConversationNote]) == [
        joined,
        reminder,
    ]


def test_payloads_written_in_full_before_still_decode() -> None:
    failure = Failure(decline_code="insufficient_funds", failed_at=AT)
    case = CaseInput(
        case_id="in_1",
        invoice_id="in_1",
        customer_id="cus_1",
        amount_due=4900,
        currency="USD",
        failure=failure,
        policy_version=1,
    )
    charge = sample(ChargeRequest, every_field=False)
    full = pydantic_data_converter.payload_converter.to_payloads([case, charge])

    assert b"null" in full[0].data
    assert CONVERTER.from_payloads(full, [CaseInput, ChargeRequest]) == [case, charge]


def test_a_payload_keeps_the_json_plain_encoding() -> None:
    [payload] = CONVERTER.to_payloads([sample(models.PauseRequest, every_field=False)])

    assert payload.metadata["encoding"] == b"json/plain"
    assert isinstance(payload, Payload)


@pytest.mark.parametrize("microsecond", [0, 400000, 466000, 1, 100100])
def test_a_time_drops_the_trailing_zeros_of_its_fraction_and_reads_back_equal(
    microsecond: int,
) -> None:
    pause = models.PauseRequest(
        reason="ticket", actor="support", until=AT.replace(microsecond=microsecond)
    )
    [payload] = CONVERTER.to_payloads([pause])

    assert b'0Z"' not in payload.data
    assert round_trip(pause) == pause
