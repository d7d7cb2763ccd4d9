"""The event envelope every internal event travels in, and its JSON codec.

Wire shape (JSON object)::

    {"event_id": UUID, "event_type": "OrderPlaced", "schema_version": 1,
     "occurred_at": ISO-8601, "source": "order-intake", "correlation_id": "...",
     "causation_id": UUID | null, "data": {...event payload...}}

``event_type`` is also sent as a Kafka header so consumers can route without parsing.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, NamedTuple, Union

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
)

from libs.contracts.events import EVENT_TYPES, Event


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    event_id: uuid.UUID
    event_type: str
    schema_version: int = 1
    occurred_at: datetime
    source: str
    correlation_id: str
    causation_id: uuid.UUID | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class EventDecodeError(ValueError):
    """A message on an internal topic that is not a valid event: names the problem precisely."""


def new_envelope(
    event: Event,
    *,
    source: str,
    correlation_id: str,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """Wrap ``event`` in a fresh envelope."""
    return envelope_of(type(event).__name__, event.model_dump(mode="json"), schema_version=event.schema_version(),
                       source=source, correlation_id=correlation_id, causation_id=causation_id, event_id=event_id,
                       occurred_at=occurred_at)


_FIELDS_SET = frozenset(Envelope.model_fields)
_set = object.__setattr__


def envelope_of(
    event_type: str,
    data: dict[str, Any],
    *,
    source: str,
    correlation_id: str,
    schema_version: int = 1,
    causation_id: uuid.UUID | None = None,
    event_id: uuid.UUID | None = None,
    occurred_at: datetime | None = None,
) -> Envelope:
    """A fresh envelope around ``data``, a payload that is plain JSON already (what a use case
    that builds its events' payloads directly on a hot path has).

    Not validated: every field here is produced by us from validated values, and this runs once
    per event on the hot path; consumers validate what they receive. Built as
    ``model_construct`` builds it, without its per-field walk (the instance dict and pydantic's
    three slots set directly): ``model_construct`` was a tenth of the availability publisher's
    time per event (tests/unit/test_allocation_feed_rules.py pins the result to a validated
    ``Envelope``)."""
    return _envelope({"event_id": event_id or uuid.uuid4(), "event_type": event_type,
                      "schema_version": schema_version, "occurred_at": occurred_at or datetime.now(UTC),
                      "source": source, "correlation_id": correlation_id, "causation_id": causation_id,
                      "data": data})


def _envelope(fields: dict[str, Any]) -> Envelope:
    """An envelope of ``fields`` (every field, in order), built as ``model_construct`` builds it."""
    env = object.__new__(Envelope)
    _set(env, "__dict__", fields)
    _set(env, "__pydantic_fields_set__", set(_FIELDS_SET))
    _set(env, "__pydantic_extra__", None)
    _set(env, "__pydantic_private__", None)
    return env


def new_event_ids(n: int) -> list[uuid.UUID]:
    """``n`` random (version 4) UUIDs, as ``uuid.uuid4`` makes them, from one ``os.urandom`` call
    instead of one system call per event (for ``envelope_of(event_id=...)`` on a hot path)."""
    raw = os.urandom(16 * n)
    return [uuid.UUID(bytes=raw[i:i + 16], version=4) for i in range(0, 16 * n, 16)]


def encode_event(envelope: Envelope) -> bytes:
    # orjson serialises UUIDs and aware datetimes itself (RFC 3339), faster than model_dump.
    return orjson.dumps(
        {
            "event_id": envelope.event_id,
            "event_type": envelope.event_type,
            "schema_version": envelope.schema_version,
            "occurred_at": envelope.occurred_at,
            "source": envelope.source,
            "correlation_id": envelope.correlation_id,
            "causation_id": envelope.causation_id,
            "data": envelope.data,
        }
    )


class EventMessage(NamedTuple):
    """One of our events as a use case receives it: the envelope and its typed payload (the one
    batch item type of every service's use cases; no Kafka type reaches a service layer).

    Decoded, the envelope's ``data`` is empty: the payload is ``event`` (dump it for its JSON)."""

    envelope: Envelope
    event: Event


def _wire_model(event_type: str, model: type[Event]) -> type[Envelope]:
    """The whole record of one event type: the envelope with ``data`` validated as ``model``
    (the envelope's fields in their order, so its instance dict is an envelope's but ``data``)."""
    tag: Any = Literal[event_type]  # built at run time: no static type to check
    return create_model(f"{event_type}Record", __base__=Envelope, event_type=(tag, ...), data=(model, ...))


def _records_of(models: Mapping[str, type[Event]]) -> TypeAdapter[Any]:
    """One validator for every record ``models`` reads: a union of the event types' wire models,
    picked by ``event_type`` (a dict look-up in pydantic-core, not a try of each)."""
    members = [Annotated[_wire_model(name, model), Tag(name)] for name, model in models.items()]
    union: Any = Union[tuple(members)]  # noqa: UP007 - a union of types built at run time
    return TypeAdapter(Annotated[union, Discriminator("event_type")])


# Built once per models mapping, on its first record (~75 ms for all event types): callers pass
# module-level constants (the default, a consumer's own), never a mapping built per call.
_RECORDS: dict[int, tuple[Mapping[str, type[Event]], TypeAdapter[Any]]] = {}


def _records(models: Mapping[str, type[Event]]) -> TypeAdapter[Any]:
    held = _RECORDS.get(id(models))
    if held is None or held[0] is not models:
        held = _RECORDS[id(models)] = (models, _records_of(models))
    return held[1]


def decode_event(raw: bytes, models: Mapping[str, type[Event]] = EVENT_TYPES) -> EventMessage:
    """Parse a message value into its envelope and typed payload; raise EventDecodeError.

    ``models``: the payload model per event type (a consumer may read an event type with a model
    that checks only what it uses, e.g. order intake's allocation results); a module-level
    constant, as its validator is built once per mapping.

    One pass over the bytes: pydantic-core parses and validates the envelope and the payload,
    typed by ``event_type``, together (an allocation result ~20 us instead of ~30 us for JSON
    parsing, then the envelope, then the payload; an OrderPlaced ~15 instead of ~20). Every
    record is validated, our own services' too: building the typed objects unchecked in Python
    from parsed JSON measured slower (~24 us for an allocation result) than this validation."""
    try:
        record = _records(models).validate_json(raw)
    except ValidationError as exc:
        raise EventDecodeError(_describe_record(exc)) from exc
    fields = record.__dict__  # the envelope's fields, in order (the record itself is dropped)
    event = fields["data"]
    fields["data"] = {}
    return EventMessage(_envelope(fields), event)


def _describe_record(exc: ValidationError) -> str:
    """The errors in the words of the two-step decoder this replaced: ``value is not JSON``,
    ``event_type: unknown event type``, ``envelope.<field>`` or ``data.<path>``."""
    problems = []
    for e in exc.errors(include_url=False):
        kind, loc = e["type"], e["loc"]
        if kind == "json_invalid":
            return f"value is not JSON: {e['msg']}"
        if kind == "union_tag_not_found":
            problems.append("envelope.event_type: Field required")
        elif kind == "union_tag_invalid":
            problems.append(f"event_type: unknown event type {e['input'].get('event_type')!r}")
        else:
            path = list(map(str, loc[1:]))  # loc[0] is the union's tag
            where = path if path[:1] == ["data"] else ["envelope", *path]
            problems.append(f"{'.'.join(where)}: {e['msg']}")
    return "; ".join(problems)
