"""Tracing (issue 12 item 1) without a broker: off costs nothing (the SDK is not even imported);
on, a consumed record's span is the parent of the events its handling writes to the outbox, and
an event caused by no record starts in the order's trace. Each case runs in a fresh interpreter:
the tracer provider is process-global."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[2]


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_off_by_default_nothing_of_the_sdk_is_loaded_and_rows_carry_no_traceparent() -> None:
    out = _run("""
        import sys
        from libs.service_host import build_app, HostSettings
        from libs.observability import tracing
        import services.allocation.service as allocation
        build_app(allocation.SERVICE, HostSettings())
        print(tracing.STATE.on, any(m.startswith("opentelemetry.sdk") for m in sys.modules),
              HostSettings().otlp_endpoint == "" and HostSettings().trace_file == "")
    """)
    assert out.split() == ["False", "False", "True"]


def test_a_consumed_records_span_is_the_parent_of_the_events_its_handling_writes(tmp_path: Path) -> None:
    spans_file = tmp_path / "spans.jsonl"
    out = _run(f"""
        from types import SimpleNamespace
        from libs.observability import tracing
        assert tracing.configure_tracing("allocation", "a#1", file={str(spans_file)!r})
        parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
        records = [SimpleNamespace(topic="oms.orders.v1", partition=p, offset=7, headers=h) for p, h in (
            (0, [("correlation_id", b"ORD-1"), ("traceparent", parent.encode())]),
            (1, [("correlation_id", b"ORD-2")]),
        )]
        with tracing.consume("oms-allocation", records):
            one = tracing.outbox_headers("oms.allocations.v1", "ORD-1")["traceparent"]
            two = tracing.outbox_headers("oms.allocations.v1", "ORD-2")["traceparent"]
        three = tracing.outbox_headers("oms.orders.v1", "ORD-3")["traceparent"]
        tracing.shutdown_tracing()
        print(one, two, three, format(tracing.order_trace_id("ORD-2"), "032x"),
              format(tracing.order_trace_id("ORD-3"), "032x"))
    """)
    one, two, three, order_2, order_3 = out.split()
    spans = [orjson.loads(line) for line in spans_file.read_text().splitlines()]
    consumed = {s["attributes"]["oms.correlation_id"]: s for s in spans if s["name"] == "oms.orders.v1 process"}
    # ORD-1 came with a traceparent: its span continues that trace, and its events name that span
    assert consumed["ORD-1"]["trace_id"] == "ab" * 16 and consumed["ORD-1"]["parent_id"] == "cd" * 8
    assert one == f"00-{'ab' * 16}-{consumed['ORD-1']['span_id']}-01"
    # ORD-2 came without one: its span is in the order's trace (from the correlation id)
    assert consumed["ORD-2"]["trace_id"] == order_2 and two == f"00-{order_2}-{consumed['ORD-2']['span_id']}-01"
    assert consumed["ORD-2"]["kind"] == "CONSUMER" and consumed["ORD-2"]["service"] == "oms-allocation"
    # an event no record caused (an HTTP request, a timer): a PRODUCER span in the order's trace
    [published] = [s for s in spans if s["name"] == "oms.orders.v1 publish"]
    assert published["kind"] == "PRODUCER" and published["trace_id"] == order_3
    assert three == f"00-{order_3}-{published['span_id']}-01"
