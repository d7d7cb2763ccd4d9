"""OpenTelemetry tracing: one trace per order across the four services. Off by default; on when
``OMS_OTLP_ENDPOINT`` (an OTLP/HTTP collector, e.g. ``http://otel-collector:4318``) or
``OMS_TRACE_FILE`` (one JSON object per finished span, for tests and local looks) is set. Off,
nothing of the SDK is imported and the hot path pays one boolean test per batch and per outbox
write.

How an order stays one trace (docs/operations.md):

* its **trace id is derived from its correlation id** (every event of an order carries it, in
  every service), so even a staff action hours later (pack, ship over HTTP) joins the same
  trace without any table having to keep a trace context;
* the **parent span travels with the events**: ``write_outbox`` stores a W3C ``traceparent``
  in the outbox row's headers (a JSON column: no migration), the relay copies the row's headers
  onto the Kafka record as it always did, and the consumer starts its span for the record as a
  child of it (``consume``). An incoming ``traceparent`` that is not ours (a connector's) is
  followed as well.

Spans: ``<topic> process`` (CONSUMER, per record), ``<topic> publish`` (PRODUCER, for an event
whose cause was not a consumed record: an HTTP request or a timer; linked to the request's
span) and FastAPI's server spans (its official instrumentation). No database driver spans: a
consumer handles a batch of many orders in one transaction, so a query belongs to no single
order's trace (they would be hundreds of one-span traces a second).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_W3C_VERSION = "00"


class _State:
    on = False  # read on the hot path: a plain attribute
    tracer: Any = None
    provider: Any = None


STATE = _State()
# correlation id -> the span context of the consumed record (of this batch) that caused the work
_CAUSES: ContextVar[dict[str, Any] | None] = ContextVar("oms_trace_causes", default=None)


def configure_tracing(service: str, instance: str, *, endpoint: str = "", file: str = "") -> bool:
    """Turn tracing on for this process when an endpoint or a file is given; True if on."""
    if not endpoint and not file:
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({
        "service.name": f"oms-{service.replace('_', '-')}",
        "service.instance.id": instance,
        "service.namespace": "oms",
    }))
    if endpoint:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = endpoint.rstrip("/")
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(
            endpoint=url if url.endswith("/v1/traces") else url + "/v1/traces")))
    if file:
        from libs.observability.trace_file import FileSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(FileSpanExporter(Path(file))))
    trace.set_tracer_provider(provider)
    STATE.provider = provider
    STATE.tracer = provider.get_tracer("oms")
    STATE.on = True
    log.info("tracing on: %s", ", ".join(x for x in (endpoint and f"OTLP {endpoint}", file and f"file {file}") if x))
    return True


def instrument_app(app: Any) -> None:
    """FastAPI's server spans (only when tracing is on)."""
    if STATE.on:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, tracer_provider=STATE.provider, excluded_urls="/health/.*,/metrics")


def shutdown_tracing() -> None:
    """Flush what is buffered (the end of the service's lifespan)."""
    if STATE.provider is not None:
        STATE.provider.shutdown()


def order_trace_id(correlation_id: str) -> int:
    """The trace id of everything about the order (or other work) with this correlation id."""
    return int.from_bytes(hashlib.sha256(correlation_id.encode()).digest()[:16], "big") or 1


def _order_parent(correlation_id: str) -> Any:
    """A remote parent in the order's trace (its span id is the trace's virtual root)."""
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    digest = hashlib.sha256(correlation_id.encode()).digest()
    ctx = SpanContext(order_trace_id(correlation_id), int.from_bytes(digest[16:24], "big") or 1,
                      is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    return trace.set_span_in_context(NonRecordingSpan(ctx))


def _traceparent(ctx: Any) -> str:
    return f"{_W3C_VERSION}-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"


def _parse_traceparent(value: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parts = value.split("-")
    if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16:
        return None
    try:
        ctx = SpanContext(int(parts[1], 16), int(parts[2], 16), is_remote=True, trace_flags=TraceFlags(int(parts[3], 16)))
    except ValueError:
        return None
    return trace.set_span_in_context(NonRecordingSpan(ctx)) if ctx.is_valid else None


@contextmanager
def consume(group: str, records: Sequence[Any]) -> Iterator[None]:
    """One CONSUMER span per record around the handling of a batch, each the child of the
    record's ``traceparent`` header (else in the trace of its ``correlation_id``); events the
    handling writes to the outbox become children of the span of the record with their
    correlation id. Call only when ``STATE.on``."""
    from opentelemetry.trace import SpanKind

    tracer = STATE.tracer
    causes: dict[str, Any] = {}
    spans = []
    for record in records:
        headers = {k: bytes(v).decode("utf-8", "replace") for k, v in (record.headers or ())}
        correlation = headers.get("correlation_id")
        parent = _parse_traceparent(headers["traceparent"]) if "traceparent" in headers else None
        if parent is None and correlation:
            parent = _order_parent(correlation)
        topic = record.topic  # one consumer reads several topics: each record's own
        span = tracer.start_span(f"{topic} process", context=parent, kind=SpanKind.CONSUMER, attributes={
            "messaging.system": "kafka", "messaging.operation.type": "process",
            "messaging.destination.name": topic, "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(record.partition), "messaging.kafka.offset": record.offset,
            **({"oms.correlation_id": correlation} if correlation else {}),
        })
        spans.append(span)
        if correlation and correlation not in causes:
            causes[correlation] = span.get_span_context()
    token = _CAUSES.set(causes)
    try:
        yield
    except BaseException as exc:
        for span in spans:
            span.record_exception(exc)
        raise
    finally:
        _CAUSES.reset(token)
        for span in spans:
            span.end()


def outbox_headers(topic: str, correlation_id: str) -> dict[str, str]:
    """The ``traceparent`` an outbox row carries to the relay and on to Kafka. Call only when
    ``STATE.on``: the span of the consumed record that caused it, else a PRODUCER span in the
    order's trace linked to the current span (an HTTP request)."""
    causes = _CAUSES.get()
    cause = causes.get(correlation_id) if causes else None
    if cause is not None:
        return {"traceparent": _traceparent(cause)}
    from opentelemetry import trace
    from opentelemetry.trace import Link, SpanKind

    current = trace.get_current_span().get_span_context()
    links = [Link(current)] if current.is_valid and current.trace_id != order_trace_id(correlation_id) else []
    span = STATE.tracer.start_span(f"{topic} publish", context=_order_parent(correlation_id), kind=SpanKind.PRODUCER,
                                   links=links, attributes={"messaging.system": "kafka",
                                                            "messaging.destination.name": topic,
                                                            "oms.correlation_id": correlation_id})
    span.end()
    return {"traceparent": _traceparent(span.get_span_context())}
