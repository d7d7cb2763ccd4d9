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
from typing import Any, NamedTuple

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

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
    env = object.__new__(Envelope)
    _set(env, "__dict__", {"event_id": event_id or uuid.uuid4(), "event_type": event_type,
                           "schema_version": schema_version, "occurred_at": occurred_at or datetime.now(UTC),
                           "source": source, "correlation_id": correlation_id, "causation_id": causation_id,
                           "data": data})
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
    batch item type of every service's use cases; no Kafka type reaches a service layer)."""

    envelope: Envelope
    event: Event


def decode_event(raw: bytes, models: Mapping[str, type[Event]] = EVENT_TYPES) -> EventMessage:
    """Parse a message value into its envelope and typed payload; raise EventDecodeError.

    ``models``: the payload model per event type (a consumer may read an event type with a model
    that checks only what it uses, e.g. order intake's allocation results)."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise EventDecodeError(f"value is not JSON: {exc}") from exc
    try:
        envelope = Envelope.model_validate(obj)
    except ValidationError as exc:
        raise EventDecodeError(_describe(exc, "envelope")) from exc
    model = models.get(envelope.event_type)
    if model is None:
        raise EventDecodeError(f"event_type: unknown event type {envelope.event_type!r}")
    try:
        event = model.model_validate(envelope.data)
    except ValidationError as exc:
        raise EventDecodeError(_describe(exc, "data")) from exc
    return EventMessage(envelope, event)


def _describe(exc: ValidationError, prefix: str) -> str:
    return "; ".join(
        f"{'.'.join([prefix, *map(str, e['loc'])])}: {e['msg']}" for e in exc.errors(include_url=False)
    )
