"""Process logging: readable lines (default) or one JSON object a line (``OMS_LOG_FORMAT=json``),
with the service, the instance and, on every line about an order, its ``correlation_id`` and
the trace id; secrets are masked in whatever a line ends up containing.

Why not a logging library (structlog, python-json-logger): every logger here is a stdlib one,
including aiokafka's, FastStream's and uvicorn's; one ``logging.Formatter`` covers them all in
about forty lines, where a library would still need the same context and masking code.

The correlation id of the order a piece of code works on lives in a context variable:
``about(correlation_id)`` around the work (an HTTP request about an order, one message being
retried or dead-lettered), or ``extra={"correlation_id": ...}`` on one call. The trace id comes
from the current OpenTelemetry span when tracing is on (libs/observability/tracing.py).
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson

from libs.observability import tracing

CORRELATION_ID: ContextVar[str | None] = ContextVar("oms_correlation_id", default=None)
MASK = "***"
# The record attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}
# Credentials in URLs (scheme://user:password@host) and bearer tokens, whatever their value.
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.-]*://[^:/@\s]*:)([^@\s]+)(@)", re.IGNORECASE)
_BEARER = re.compile(r"(\bbearer\s+)([^\s'\",]+)", re.IGNORECASE)


@contextmanager
def about(correlation_id: str | None) -> Iterator[None]:
    """Every line logged inside (this task and what it awaits) is about this order."""
    token = CORRELATION_ID.set(correlation_id)
    try:
        yield
    finally:
        CORRELATION_ID.reset(token)


def instance_name() -> str:
    """``OMS_INSTANCE``, else host name and process id (in Kubernetes the host name is the pod)."""
    return os.environ.get("OMS_INSTANCE") or f"{socket.gethostname()}:{os.getpid()}"


def secrets_from_environment(env: dict[str, str] | None = None) -> list[str]:
    """The values no log line may show: channel API keys, staff tokens, the database password,
    the console's signing secret."""
    env = dict(os.environ if env is None else env)
    found: list[str] = []
    for name in ("OMS_CHANNEL_API_KEYS", "OMS_STAFF_TOKENS"):
        for item in env.get(name, "").split(","):
            # OMS_CHANNEL_API_KEYS is channel:key, OMS_STAFF_TOKENS is token:role
            parts = item.strip().split(":", 1)
            value = parts[-1] if name == "OMS_CHANNEL_API_KEYS" else parts[0]
            found.append(value.strip())
    for name in ("OMS_DATABASE_URL", "OMS_TEST_DATABASE_URL"):
        match = _URL_PASSWORD.search(env.get(name, ""))
        if match:
            found.append(match.group(2))
    found += [env.get("OMS_CONSOLE_SECRET", ""), env.get("OMS_ADMIN_TOKEN", "")]
    # short values ("*", "a") would mask ordinary words; the development defaults are >= 7 long
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def mask(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
    return _BEARER.sub(rf"\g<1>{MASK}", text)


def _trace_ids() -> tuple[str | None, str | None]:
    """The current OpenTelemetry span's ids, or none when tracing is off."""
    try:
        from opentelemetry import trace
    except ImportError:  # pragma: no cover - fastapi brings opentelemetry-api along
        return None, None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None, None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


class ContextFilter(logging.Filter):
    """Puts service, instance, correlation_id and trace ids on every record (handler filter)."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self.service = service
        self.instance = instance

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        record.instance = self.instance
        correlation = getattr(record, "correlation_id", None)
        if correlation is None:
            record.correlation_id = correlation = CORRELATION_ID.get()
        if getattr(record, "trace_id", None) is None:
            trace_id, record.span_id = _trace_ids()
            if trace_id is None and correlation and tracing.STATE.on:
                # an order's trace id follows from its correlation id (tracing.py)
                trace_id = format(tracing.order_trace_id(str(correlation)), "032x")
            record.trace_id = trace_id
        return True


class TextFormatter(logging.Formatter):
    """The readable line, masked; ``[cid=... trace=...]`` when the line is about an order."""

    def __init__(self, service: str, secrets: Iterable[str]) -> None:
        super().__init__(f"%(asctime)s %(levelname)s [{service}] %(name)s: %(message)s")
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        about = [f"{k}={v}" for k, v in (("cid", getattr(record, "correlation_id", None)),
                                          ("trace", getattr(record, "trace_id", None))) if v]
        if about:
            head, sep, rest = line.partition("\n")
            line = f"{head} [{' '.join(about)}]{sep}{rest}"
        return mask(line, self.secrets)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, message, service, instance, correlation_id,
    trace_id, span_id, anything passed in ``extra``, and the exception if any; masked."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = list(secrets)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "service": getattr(record, "service", None),
            "instance": getattr(record, "instance", None),
            "correlation_id": getattr(record, "correlation_id", None),
            "trace_id": getattr(record, "trace_id", None),
            "span_id": getattr(record, "span_id", None),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        text = orjson.dumps(doc, default=str).decode()
        # masked after encoding: JSON escaping never hides a secret (the values are plain tokens),
        # and the mask keeps the line valid JSON
        return mask(text, self.secrets)


def configure_logging(
    service: str,
    *,
    level: str = "INFO",
    fmt: str = "text",
    instance: str | None = None,
    secrets: Iterable[str] | None = None,
    stream: Any = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one that writes ``fmt`` ("text" or "json")."""
    if fmt not in ("text", "json"):
        raise ValueError(f"OMS_LOG_FORMAT: {fmt!r} is not one of text, json")
    values = secrets_from_environment() if secrets is None else list(secrets)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(ContextFilter(service, instance or instance_name()))
    handler.setFormatter(JsonFormatter(values) if fmt == "json" else TextFormatter(service, values))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
