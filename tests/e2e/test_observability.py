"""The SRE kit on running services (issue 12): structured logs without secrets, the on-call
metrics, and the dashboard and alert rules in deploy/ naming only metrics that exist."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from infra import free_port
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
