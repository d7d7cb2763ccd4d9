"""Structured logs (issue 12 item 2): one JSON object a line with service, instance,
correlation_id and trace id; the readable format; secrets masked in both."""

from __future__ import annotations

import io
import logging

import orjson
import pytest

from libs.observability.logs import MASK, about, configure_logging, secrets_from_environment

API_KEY = "shop-key-7f3a9c1e5d2b"
STAFF_TOKEN = "staff-token-0a9b8c7d6e5f"
DB_PASSWORD = "db-pass-Zq81xW"
ENV = {
    "OMS_CHANNEL_API_KEYS": f"shopify:{API_KEY},pos:other-key-123456",
    "OMS_STAFF_TOKENS": f"{STAFF_TOKEN}:admin,viewer-token-1234567:viewer",
    "OMS_DATABASE_URL": f"postgresql+asyncpg://oms:{DB_PASSWORD}@db.internal:5432/oms",
}


@pytest.fixture
def restore_root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def _log_everything_secret(log: logging.Logger) -> None:
    log.info("channel shopify sent key %s", API_KEY)
    log.warning("header Authorization: Bearer %s refused", STAFF_TOKEN)
    log.warning("bearer of an unknown token: bearer something-not-configured")
    log.error("connect failed: %s", ENV["OMS_DATABASE_URL"])
    log.info("a URL we do not know: postgresql://someone:her-own-pass@elsewhere/db")
    try:
        raise RuntimeError(f"password authentication failed for {DB_PASSWORD} / {ENV['OMS_STAFF_TOKENS']}")
    except RuntimeError:
        log.exception("handler failed")


def test_secrets_are_read_from_the_environment() -> None:
    secrets = secrets_from_environment(ENV)
    assert {API_KEY, "other-key-123456", STAFF_TOKEN, "viewer-token-1234567", DB_PASSWORD} <= set(secrets)
    assert "shopify" not in secrets and "admin" not in secrets  # names and roles are no secrets


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_no_secret_reaches_a_line_in_either_format(fmt: str, restore_root_logging: None) -> None:
    out = io.StringIO()
    configure_logging("order_intake", fmt=fmt, instance="i-1", secrets=secrets_from_environment(ENV), stream=out)
    _log_everything_secret(logging.getLogger("oms.test"))
    text = out.getvalue()
    for secret in (API_KEY, STAFF_TOKEN, DB_PASSWORD, "something-not-configured", "her-own-pass", "other-key-123456"):
        assert secret not in text
    assert text.count(MASK) >= 8
    assert "postgresql+asyncpg://oms:***@db.internal:5432/oms" in text  # what is no secret stays readable


def test_json_lines_carry_service_instance_and_the_order_they_are_about(restore_root_logging: None) -> None:
    out = io.StringIO()
    configure_logging("allocation", fmt="json", instance="allocation-7c9f-2", secrets=[], stream=out)
    log = logging.getLogger("oms.test")
    log.info("not about an order")
    with about("order-42"):
        log.warning("retrying %d message(s)", 1)
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("dead-lettered")
    log.error("one call about an order", extra={"correlation_id": "order-43", "topic": "oms.orders.v1"})
    lines = [orjson.loads(line) for line in out.getvalue().splitlines()]  # every line one JSON object
    assert len(lines) == 4
    assert all(line["service"] == "allocation" and line["instance"] == "allocation-7c9f-2" for line in lines)
    assert [line["correlation_id"] for line in lines] == [None, "order-42", "order-42", "order-43"]
    assert lines[1]["message"] == "retrying 1 message(s)" and lines[1]["level"] == "WARNING"
    assert "ValueError: boom" in lines[2]["exception"]
    assert lines[3]["topic"] == "oms.orders.v1"
    assert all("trace_id" in line for line in lines)


def test_json_lines_carry_the_trace_id_of_the_current_span(restore_root_logging: None) -> None:
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, use_span

    out = io.StringIO()
    configure_logging("inventory", fmt="json", instance="i", secrets=[], stream=out)
    span = NonRecordingSpan(SpanContext(0x4BF92F3577B34DA6A3CE929D0E0E4736, 0x00F067AA0BA902B7, False,
                                        TraceFlags(1)))
    with use_span(span), about("order-1"):
        logging.getLogger("oms.test").info("about an order")
    (line,) = [orjson.loads(x) for x in out.getvalue().splitlines()]
    assert line["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736" and line["span_id"] == "00f067aa0ba902b7"


def test_the_readable_format_names_the_order_and_the_service(restore_root_logging: None) -> None:
    out = io.StringIO()
    configure_logging("fulfillment", fmt="text", instance="i", secrets=[], stream=out)
    with about("order-9"):
        logging.getLogger("oms.test").info("packed")
    line = out.getvalue().strip()
    assert "[fulfillment] oms.test: packed [cid=order-9]" in line
    assert not line.startswith("{")


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="OMS_LOG_FORMAT"):
        configure_logging("inventory", fmt="yaml", secrets=[])
