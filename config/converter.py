"""The one data converter of every client, worker and test environment: pydantic payloads
written without the fields that hold their default, so a case's history carries what
happened and not the models' empty slots (issue 15: a full case history at most 12 KiB).

A field left out reads back as its default, so every model round-trips exactly. A `Literal`
field (the tag of a discriminated union, e.g. a conversation note's `kind`) is always
written: a union picks its member by it. Times drop the trailing zeros of their fraction
(workflow time has milliseconds; pydantic writes microseconds). Payloads keep the
`json/plain` encoding, and histories written in full before this converter still decode
as they did.
"""

from __future__ import annotations

import re
import typing
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import to_json, to_jsonable_python
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)


class CompactJSONPayloadConverter(PydanticJSONPlainPayloadConverter):
    """Pydantic's JSON, each model's fields left out where they hold their default."""

    def to_payload(self, value: Any) -> Payload | None:
        """The value as pydantic writes it, less its models' default-valued fields."""
        data = to_json(compact(value, to_jsonable_python(value)))
        return Payload(metadata={"encoding": self.encoding.encode()}, data=data)


def compact(value: Any, dumped: Any) -> Any:
    """`dumped` (pydantic's JSON-able form of `value`) without the default-valued fields of
    the models in `value`, at any depth."""
    if isinstance(value, BaseModel) and isinstance(dumped, dict):
        model = type(value)
        serialized = model.__pydantic_decorators__.field_serializers
        custom = {name for decorator in serialized.values() for name in decorator.info.fields}
        kept = dict(dumped)
        for name, field in model.model_fields.items():
            key = field.serialization_alias or field.alias or name
            if key not in kept:
                continue
            attribute = getattr(value, name)
            if _at_default(field, attribute):
                del kept[key]
            elif name not in custom:  # a custom serializer's output has its own shape
                kept[key] = compact(attribute, kept[key])
        return kept
    if isinstance(value, list | tuple) and isinstance(dumped, list) and len(value) == len(dumped):
        return [compact(item, out) for item, out in zip(value, dumped, strict=True)]
    if isinstance(value, dict) and isinstance(dumped, dict):
        return {key: compact(value.get(key), out) for key, out in dumped.items()}
    if isinstance(value, datetime) and isinstance(dumped, str):
        return _FRACTION.sub(lambda zeros: zeros[1].rstrip("."), dumped)
    return dumped


_FRACTION = re.compile(r"(\.\d*?)0+(?=Z$|[+-]\d\d:\d\d$)")
"""A time's fraction ending in zeros: they go (and the point, when nothing is left)."""


def _at_default(field: FieldInfo, value: Any) -> bool:
    if field.is_required() or typing.get_origin(field.annotation) is typing.Literal:
        return False
    return value == field.get_default(call_default_factory=True, validated_data={})


class CompactPayloadConverter(CompositePayloadConverter):
    """The SDK's default converters, JSON written by `CompactJSONPayloadConverter`."""

    def __init__(self) -> None:
        json_converter = CompactJSONPayloadConverter()
        super().__init__(
            *(
                json_converter if isinstance(c, JSONPlainPayloadConverter) else c
                for c in DefaultPayloadConverter.default_encoding_payload_converters
            )
        )


compact_data_converter = DataConverter(payload_converter_class=CompactPayloadConverter)
"""Every client's, worker's and test environment's converter (`intake.codec` adds the
encryption codec to it)."""
