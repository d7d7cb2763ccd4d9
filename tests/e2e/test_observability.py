"""The SRE kit on running services (issue 12): structured logs without secrets, the on-call
metrics, and the dashboard and alert rules in deploy/ naming only metrics that exist."""

from __future__ import annotations

import re
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaProducer
from infra import free_port
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from libs.contracts import Topic
from services.cli.launcher import System

pytestmark = pytest.mark.e2e

STAFF_TOKEN = "sre-kit-staff-token-5d2f9a71c3"
API_KEY = "sre-kit-channel-key-8e4b6c0a2f"
DB_PASSWORD = "sre-kit-db-password-71aa3c"


def _with_password(url: str) -> tuple[str, str]:
    """The session's database URL with a password in it (the embedded PostgreSQL trusts local
    connections and ignores it), and that password."""
    parsed = make_url(url)
    if parsed.password:
        return url, str(parsed.password)
    return parsed.set(password=DB_PASSWORD).render_as_string(hide_password=False), DB_PASSWORD


def _lines(path: Path) -> list[str]:
    return path.read_text(errors="replace").splitlines() if path.exists() else []


async def test_json_logs_name_service_instance_and_order_and_never_show_a_secret(system: System) -> None:
    """A second fulfillment process with OMS_LOG_FORMAT=json at DEBUG: every line it writes
    (its own, FastStream's, uvicorn's) is one JSON object with service and instance; the lines
    about a dead-lettered order carry its correlation_id; no API key, staff token or database
    password appears anywhere, though the process was configured with all three and called
    with the token."""
    run = uuid.uuid4().hex[:8]
    database_url, password = _with_password(system.database_url)
    instance = f"fulfillment-json-{run}"
    sp = system.start_service("fulfillment", port=free_port(), instance=7, env={
        "OMS_LOG_FORMAT": "json", "OMS_LOG_LEVEL": "DEBUG", "OMS_INSTANCE": instance,
        "OMS_DATABASE_URL": database_url, "OMS_STAFF_TOKENS": f"{STAFF_TOKEN}:admin",
        "OMS_CHANNEL_API_KEYS": f"web:{API_KEY}",
    })
    log_file = system.workdir / f"{sp.label}.log"
    try:
        system.wait_ready(180, [sp])
        base = f"http://127.0.0.1:{sp.port}"
        auth = {"Authorization": f"Bearer {STAFF_TOKEN}"}
        assert httpx.get(f"{base}/v1/picklists", headers=auth, timeout=10).status_code == 200
        assert httpx.get(f"{base}/v1/picklists",
                         headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10).status_code == 401
        # a JSON value of the wrong shape on every partition of oms.orders.v1, as an order's event
        correlation = f"order-{run}"
        producer = AIOKafkaProducer(bootstrap_servers=system.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for partition in sorted(await producer.partitions_for(Topic.ORDERS)):
                await producer.send_and_wait(
                    Topic.ORDERS, orjson.dumps({"run": run, "data": "wrong shape"}), key=f"log:{run}".encode(),
                    partition=partition, headers=[("correlation_id", correlation.encode())])
        finally:
            await producer.stop()
        # the two fulfillment processes share the partitions; this one dead-letters its share
        deadline = time.monotonic() + 120
        while not any(correlation in line and "dead-lettered" in line for line in _lines(log_file)):
            assert time.monotonic() < deadline, f"no dead-letter line about {correlation} in {log_file}"
            time.sleep(0.5)
    finally:
        if sp.process.poll() is None:
            system.terminate(sp)

    lines = _lines(log_file)
    assert len(lines) > 10
    records = []
    for line in lines:
        record = orjson.loads(line)  # every line one JSON object
        assert record["service"] == "fulfillment" and record["instance"] == instance, line
        assert {"ts", "level", "logger", "message", "correlation_id", "trace_id"} <= record.keys()
        records.append(record)
    about_order = [r for r in records if correlation in r["message"] or r["correlation_id"] == correlation]
    assert about_order and all(r["correlation_id"] == correlation for r in about_order)
    assert any(r["message"] == "fulfillment stopped" for r in records)  # to the last line
    text = "\n".join(lines)
    for secret in (STAFF_TOKEN, API_KEY, password):
        assert secret not in text
    assert any(":***@" in r["message"] for r in records)  # the database URL, masked


# --- metrics, dashboard and alert rules -----------------------------------------------------------

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")


def _scrape(system: System) -> dict[str, str]:
    return {name: httpx.get(system.url(name) + "/metrics", timeout=10).text
            for name in ("order_intake", "inventory", "allocation", "fulfillment")}


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample of ``name`` whose labels include ``labels``."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
    return None


def _declared(texts: dict[str, str]) -> set[str]:
    return {line.split()[2] for text in texts.values() for line in text.splitlines() if line.startswith("# HELP ")}


def _named_metrics(expr: str) -> set[str]:
    """The metric names in a PromQL expression; a histogram's series by the histogram's name."""
    names = set()
    for name in re.findall(r"\b(oms_[a-z0-9_]+)", expr):
        suffix = next((s for s in HISTOGRAM_SUFFIXES if name.endswith(s)), "")
        names.add(name[: len(name) - len(suffix)])
    return names


def test_the_on_call_metrics_answer_on_running_services(system: System) -> None:
    """A backordered order shows in the queue gauges, its POST in the latency of its route
    template; lag is reported for every partition of every group; every service says ready."""
    run = uuid.uuid4().hex[:8]
    resp = httpx.post(system.url("order_intake") + "/v1/orders", headers={"X-API-Key": "dev-key"}, timeout=15, json={
        "channel": "web", "external_id": f"metrics-{run}", "placed_at": datetime.now(UTC).isoformat(),
        "currency": "EUR", "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": f"NOSTOCK-{run}", "qty": 2, "unit_price": "1.00"}]})
    assert resp.status_code in (200, 201, 202), resp.text
    deadline = time.monotonic() + 120
    while True:  # the gauges are refreshed every OMS_METRICS_INTERVAL_S (5 s)
        texts = _scrape(system)
        if (_sample(texts["allocation"], "oms_backorder_units") or 0) >= 2 and (
                _sample(texts["allocation"], "oms_backorder_oldest_age_seconds") or 0) > 0:
            break
        assert time.monotonic() < deadline, "the backorder never showed in oms_backorder_units"
        time.sleep(1)
    assert (_sample(texts["allocation"], "oms_backorder_lines") or 0) >= 1
    assert (_sample(texts["allocation"], "oms_allocation_results_total", event_type="OrderBackordered") or 0) >= 1
    assert (_sample(texts["order_intake"], "oms_http_request_duration_seconds_count", service="order_intake",
                    method="POST", route="/v1/orders") or 0) >= 1
    for name, text in texts.items():
        assert _sample(text, "oms_service_ready", service=name) == 1
        assert _sample(text, "oms_outbox_backlog_rows", service=name) is not None
        assert _sample(text, "oms_outbox_oldest_age_seconds", service=name) is not None
    partitions = {str(p) for p in range(6)}
    for topic in (Topic.ORDERS, Topic.INVENTORY, Topic.FULFILLMENT):
        group = f"oms-allocation.{topic}"
        seen = {s.labels["partition"] for f in text_string_to_metric_families(texts["allocation"]) for s in f.samples
                if s.name == "oms_consumer_lag_messages" and s.labels["group"] == group and s.labels["topic"] == topic}
        assert seen >= partitions, f"{group}: lag of partitions {sorted(seen)}"


def test_the_dashboard_and_the_alert_rules_name_only_metrics_the_services_export(system: System) -> None:
    dashboard = orjson.loads((DEPLOY / "grafana" / "oms-dashboard.json").read_bytes())
    rules = yaml.safe_load((DEPLOY / "prometheus" / "oms-alerts.yaml").read_text())["groups"]
    panel_exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", ())]
    alerts = [r for g in rules for r in g["rules"]]
    assert len(panel_exprs) >= 15
    assert {"OmsConsumerLagGrowing", "OmsOutboxStuck", "OmsDeadLetters", "OmsBackorderTooOld",
            "OmsServiceNotReady"} <= {a["alert"] for a in alerts}
    for alert in alerts:
        assert len(alert["annotations"]["runbook"]) > 40, f"{alert['alert']} has no runbook line"
    declared = _declared(_scrape(system))
    for expr in [*panel_exprs, *(a["expr"] for a in alerts)]:
        named = _named_metrics(expr)
        assert named, expr
        missing = named - declared
        assert not missing, f"{sorted(missing)} (in {expr!r}) is on no service's /metrics"
