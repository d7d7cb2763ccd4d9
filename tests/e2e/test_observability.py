"""The SRE kit on running services (issue 12): structured logs without secrets, the on-call
metrics, and the dashboard and alert rules in deploy/ naming only metrics that exist."""

from __future__ import annotations

import re
import signal
import time
import uuid
from collections.abc import Callable
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
from staff_auth import ADMIN

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
        # a JSON value of the wrong shape on every partition of oms.allocations.v1 (what fulfillment reads)
        correlation = f"order-{run}"
        producer = AIOKafkaProducer(bootstrap_servers=system.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for partition in sorted(await producer.partitions_for(Topic.ALLOCATIONS)):
                await producer.send_and_wait(
                    Topic.ALLOCATIONS, orjson.dumps({"run": run, "data": "wrong shape"}), key=f"log:{run}".encode(),
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
        group = "oms-allocation"  # one group per service, lag per topic and partition
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


# --- tracing -------------------------------------------------------------------------------------

SERVICE_NAMES = ("order_intake", "inventory", "allocation", "fulfillment")


def _restart_all(system: System, env: Callable[[str], dict[str, str]]) -> None:
    """SIGTERM the four services' first instances and start them again with ``env(service)``."""
    old = [system.instances(name)[0] for name in SERVICE_NAMES]
    for sp in old:
        system.settle(sp.name)  # the embedded broker loses a group whose last member leaves mid-rebalance
        sp.process.send_signal(signal.SIGTERM)
    for sp in old:
        sp.process.wait(60)
        with system._lock:
            system.processes.remove(sp)
    new = [system.start_service(sp.name, port=sp.port, env=env(sp.name)) for sp in old]
    system.wait_ready(240, new)


def _until(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"timed out waiting: {what}"
        time.sleep(0.5)


def _spans(files: dict[str, Path]) -> list[dict]:
    return [orjson.loads(line) for path in files.values() for line in _lines(path)]


def test_one_order_from_placement_to_shipment_is_one_trace_across_the_four_services(
    system: System, tmp_path: Path
) -> None:
    """With OMS_TRACE_FILE set (a file exporter per process), an order placed over HTTP,
    allocated, packed and shipped is one trace (its id follows from the order's correlation id)
    with spans of all four services, and each consumer's span is the child of the span that
    wrote the event to the outbox: the context travelled in the outbox row and the Kafka headers."""
    from libs.observability.tracing import order_trace_id

    files = {name: tmp_path / f"{name}.spans.jsonl" for name in SERVICE_NAMES}
    run = uuid.uuid4().hex[:8]
    http = httpx.Client(timeout=15, headers=ADMIN)
    try:
        _restart_all(system, lambda name: {"OMS_TRACE_FILE": str(files[name])})  # a file per process
        sku, loc = f"TRACE-{run}", f"WH-TRACE-{run}"
        http.post(system.url("inventory") + "/v1/locations", json={
            "location_id": loc, "name": "trace", "kind": "warehouse", "country": "DE", "ships_to": ["DE"],
            "active": True}).raise_for_status()
        http.post(system.url("inventory") + "/v1/receipts", json={"location_id": loc, "reference": f"GRN-{run}",
                  "lines": [{"sku": sku, "bin": "A-01", "lot": "", "qty": 2}]}).raise_for_status()
        _until(lambda: any(r.get("sku") == sku and r.get("on_hand") == 2 for r in http.get(
            system.url("allocation") + "/v1/reports/stock", params={"sku": sku}).json()), "allocation sees the stock")
        resp = httpx.post(system.url("order_intake") + "/v1/orders", headers={"X-API-Key": "dev-key"}, timeout=15,
                          json={"channel": "web", "external_id": f"trace-{run}",
                                "placed_at": datetime.now(UTC).isoformat(), "currency": "EUR",
                                "ship_to": {"country": "DE"},
                                "lines": [{"line_id": "1", "sku": sku, "qty": 2, "unit_price": "1.00"}]})
        assert resp.status_code in (200, 201, 202), resp.text
        order_id = resp.json()["order_id"]
        order_url = system.url("order_intake") + f"/v1/orders/{order_id}"
        _until(lambda: http.get(order_url).json().get("status") == "allocated", "the order allocated")
        shipment = http.post(system.url("fulfillment") + f"/v1/orders/{order_id}/pack", json={})
        assert shipment.status_code in (200, 202), shipment.text
        shipment_id = shipment.json()["shipment_id"]
        http.post(system.url("fulfillment") + f"/v1/shipments/{shipment_id}/ship",
                  json={"carrier": "UPS", "tracking_number": f"1Z{run}"}).raise_for_status()
        _until(lambda: http.get(order_url).json().get("status") == "shipped", "the order shipped")
        trace_id = f"{order_trace_id(order_id):032x}"
        _until(lambda: any(s["trace_id"] == trace_id and s["name"] == "oms.fulfillment.v1 process"
                           for s in _spans({"inventory": files["inventory"]})), "inventory's span of the shipment")
    finally:
        _restart_all(system, lambda name: {})  # the session's services without tracing again

    spans = [s for s in _spans(files) if s["trace_id"] == trace_id]
    assert {s["service"] for s in spans} == {"oms-order-intake", "oms-inventory", "oms-allocation", "oms-fulfillment"}
    by_id = {s["span_id"]: s for s in spans}

    def one(service: str, name: str) -> dict:
        found = [s for s in spans if s["service"] == service and s["name"] == name]
        assert found, f"no span {name!r} of {service} in the order's trace"
        return found[0]

    placed = one("oms-order-intake", "oms.orders.v1 publish")
    allocating = one("oms-allocation", "oms.orders.v1 process")
    assert allocating["parent_id"] == placed["span_id"]  # through intake's outbox and the Kafka headers
    for service in ("oms-fulfillment", "oms-order-intake"):  # OrderAllocated, through allocation's outbox
        assert by_id.get(one(service, "oms.allocations.v1 process")["parent_id"]) == allocating
    shipped = [s for s in spans if s["service"] == "oms-fulfillment" and s["name"] == "oms.fulfillment.v1 publish"]
    consumed = [s for s in spans if s["service"] == "oms-inventory" and s["name"] == "oms.fulfillment.v1 process"]
    # inventory's spans of the shipment's events are children of fulfillment's spans that wrote them
    assert consumed and all(by_id[s["parent_id"]]["service"] == "oms-fulfillment" for s in consumed)
    assert {s["parent_id"] for s in consumed} & {s["span_id"] for s in shipped}  # the HTTP ship's event
    assert any(s["links"] for s in shipped)  # linked to the HTTP request that shipped it
    assert all(s["attributes"].get("oms.correlation_id") == order_id for s in spans if s["kind"] != "SERVER")
