"""The fault suite (issue 8): faults against the four running services, each followed by the
invariants of SPEC section 4 checked through the public HTTP views only: every order ends
allocated, backordered, packed or shipped (none cancelled here), every line conserves its
quantity, ``reserved <= on_hand``, and no order is counted twice.

* SIGKILL mid-stream and restart, for each of the four services;
* SIGTERM mid-stream, right after a burst of orders of another channel the service has started
  on (the service drains and exits, within its Kubernetes grace period, leaving its outbox
  empty and nothing it applied uncommitted), then restart, for each service;
* the outbox relay killed between publishing and deleting (a restart with the relay's crash hook,
  libs/messaging/fault_hooks.py), for each service: the batch is published twice and the
  duplicates have no second effect;
* a replay of each service's input topics from offset 0 in a fresh consumer group: no view, table
  or topic changes;
* a poison record (not JSON, and JSON of the wrong shape) on every partition of every topic a
  service consumes: it is dead-lettered to ``<topic>.dlq`` with error headers by every
  consumer of the topic (channel orders are answered on the rejected topic instead), and the
  records behind it on the same partition are still handled.

Each scenario prints one ``FAULT-RESULT`` line (scenario, orders, lost, doubled, oversold,
seconds until the service was ready again, seconds until every view had settled); run with
``-s`` to see them. docs/reliability.md holds the table of a run. ``oms faults`` runs this module
against the system ``oms up`` runs (the fixtures attach to it: services/cli/control.py)."""

from __future__ import annotations

import asyncio
import os
import signal as signal_module
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from infra import Infra
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from staff_auth import ADMIN

from libs.contracts import Topic
from libs.contracts.topics import dlq
from libs.database import create_engine
from services.cli.launcher import SERVICES, System
from services.order_intake.service_layer.placing import record_ref

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

# `oms faults --orders N` runs the suite with fewer (or more) orders (services/cli/faults.py)
ORDERS = int(os.environ.get("OMS_FAULTS_ORDERS", "240"))
RECEIPTS = (ORDERS // 4, ORDERS // 8, ORDERS // 8)  # units received before the stream, before the fault, after the restart
STOCK = sum(RECEIPTS)
PACKS = 4  # orders packed before the fault (and shipped after it), and again after the restart
WAIT = 240  # seconds; generous: the machine may be shared and slow, these are not speed limits


def _order(channel: str, n: int, sku: str) -> dict:
    return {
        "channel": channel,
        "external_id": f"X{n:05d}",
        "placed_at": datetime.now(UTC).isoformat(),
        "currency": "EUR",
        "ship_to": {"country": "DE"},
        "lines": [{"line_id": "1", "sku": sku, "qty": 1, "unit_price": "1.00"}],
    }


async def _stream_orders(bootstrap: str, channel: str, sku: str, on_half: Callable[[], None]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(ORDERS):
            order = _order(channel, n, sku)
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(order), key=f"{channel}:{order['external_id']}".encode())
            if n == ORDERS // 2:
                await producer.flush()
                await asyncio.to_thread(on_half)
            if n % 50 == 0:
                await asyncio.sleep(0.05)  # a stream, not one burst
        # the same orders again, as a connector retrying after a timeout would
        for n in range(0, ORDERS, 7):
            order = _order(channel, n, sku)
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(order), key=f"{channel}:{order['external_id']}".encode())
        await producer.flush()
    finally:
        await producer.stop()


class _Views:
    """The public HTTP views the invariants are read from (staff routes: with a token)."""

    def __init__(self, system: System, channel: str, sku: str) -> None:
        self.system, self.channel, self.sku = system, channel, sku
        self.http = httpx.Client(timeout=30, headers=ADMIN)

    def call(self, method: str, service: str, path: str, **kw: Any) -> httpx.Response:
        return self.http.request(method, self.system.url(service) + path, **kw)

    def ok(self, method: str, service: str, path: str, **kw: Any) -> Any:
        resp = self.call(method, service, path, **kw)
        assert resp.status_code < 400, f"{method} {service}{path} -> {resp.status_code}: {resp.text}"
        return resp.json() if resp.content else None

    def stock(self) -> dict:
        resp = self.call("GET", "allocation", "/v1/reports/stock", params={"sku": self.sku})
        if resp.status_code != 200:
            return {}
        return next((r for r in resp.json() if r.get("sku") == self.sku), {})

    def orders(self, status: str | None = None) -> list[dict]:
        params = {"channel": self.channel, "limit": 1000} | ({"status": status} if status else {})
        resp = self.call("GET", "order_intake", "/v1/orders", params=params)
        return resp.json() if resp.status_code == 200 else []

    def statuses(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.orders():
            counts[o["status"]] = counts.get(o["status"], 0) + 1
        return counts

    def receive(self, loc: str, qty: int, reference: str) -> None:
        self.ok("POST", "inventory", "/v1/receipts", json={"location_id": loc, "reference": reference, "lines": [
            {"sku": self.sku, "bin": "A-01", "lot": "", "qty": qty}]})

    def pack(self, n: int, exclude: set[str]) -> dict[str, str]:
        """Pack ``n`` allocated orders of the channel: {order_id: shipment_id}."""
        packed: dict[str, str] = {}
        deadline = time.monotonic() + WAIT
        while len(packed) < n:
            assert time.monotonic() < deadline, f"could not pack {n} orders; packed {packed}"
            for o in self.orders("allocated"):
                if o["order_id"] in exclude or o["order_id"] in packed or len(packed) == n:
                    continue
                resp = self.call("POST", "fulfillment", f"/v1/orders/{o['order_id']}/pack", json={})
                if resp.status_code in (200, 202):
                    packed[o["order_id"]] = resp.json()["shipment_id"]
            time.sleep(0.25)
        return packed

    def ship(self, shipments: dict[str, str], run: str) -> None:
        for order_id, shipment_id in shipments.items():
            _wait(lambda s=shipment_id: self.ok("GET", "fulfillment", f"/v1/shipments/{s}")["status"] == "packed",
                  f"shipment {shipment_id} packed")
            self.ok("POST", "fulfillment", f"/v1/shipments/{shipment_id}/ship",
                    json={"carrier": "UPS", "tracking_number": f"1Z{run}{order_id[:8]}"})

    def measure(self, placed: int = ORDERS) -> dict[str, int]:
        """Lost, doubled and oversold as the public views show them (0, 0, 0 when all is well)."""
        orders = self.orders()
        ids = [o["external_id"] for o in orders]
        final = [o for o in orders if o["status"] in ("allocated", "backordered", "packed", "shipped", "cancelled")]
        unbalanced = 0
        for o in orders:
            for ln in self.ok("GET", "order_intake", f"/v1/orders/{o['order_id']}")["lines"]:
                units = sum(ln[k] for k in ("allocated", "backordered", "packed", "shipped", "cancelled"))
                unbalanced += units != ln["qty"]
        stock = self.stock()
        return {
            "lost": placed - len({o["external_id"] for o in final}),
            "doubled": len(ids) - len(set(ids)) + unbalanced,
            "oversold": max(0, stock.get("reserved", 0) - stock.get("on_hand", 0)),
        }


def _report(scenario: str, figures: dict[str, int], ready_s: float | None, settled_s: float, orders: int = ORDERS) -> None:
    ready = "-" if ready_s is None else f"{ready_s:.1f}"
    print(f"\nFAULT-RESULT | {scenario} | {orders} | {figures['lost']} | {figures['doubled']} | "
          f"{figures['oversold']} | {ready} | {settled_s:.1f}")


@pytest.mark.parametrize("signal", ["SIGKILL", "SIGTERM"])
@pytest.mark.parametrize("victim", list(SERVICES))
async def test_fault_mid_stream_loses_nothing_and_counts_nothing_twice(system: System, victim: str, signal: str) -> None:
    """SIGKILL (no clean-up, no offset commit) or SIGTERM (drain: the service's shutdown must run
    to its end and the process exit) in the middle of a stream of orders, receipts, packs and
    shipments, then a restart: every order is accounted for exactly once and stock is conserved."""

    drain: dict[str, Any] = {}

    def fault() -> None:
        [proc] = [p for p in system.processes if p.name == victim]
        if signal == "SIGKILL":
            system.kill(proc)  # no clean-up, no offset commit, no graceful close
        else:
            drain.update(_sigterm_with_work_in_flight(system, proc))
        time.sleep(1.0)
        restarted = system.start_service(victim, port=proc.port)
        system.wait_ready(WAIT, [restarted])

    await _scenario(system, f"{signal} {victim}", fault)
    if drain:
        print(f"DRAIN-RESULT | {victim} | exited after {drain['exit_s']:.1f} s (grace {drain['grace_s']} s) | "
              f"outbox rows left {drain['outbox']} | redelivered {drain['redelivered']}")
        # within the grace period of its Kubernetes manifest (else it is killed mid-drain)
        assert drain["exit_s"] < drain["grace_s"], drain
        assert drain["outbox"] == 0, drain  # the relay published what the drained batches committed
        assert all(n == 0 for n in drain["redelivered"].values()), drain  # nothing applied is given again


# --- SIGTERM: drain, commit, flush, exit in time; nothing applied is redelivered ------------------

MANIFESTS = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
BURST = 200  # orders of another channel sent right before the signal, so the victim is mid-work


def _sigterm_with_work_in_flight(system: System, proc: Any) -> dict[str, Any]:
    """SIGTERM ``proc`` while it handles a burst; then, before anything restarts, what it left:
    exit time, rows in its outbox, and per consumer group how many of the records a new instance
    will be given (committed offset to end) it had already applied (found in its inbox)."""
    victim = proc.name
    manifest = (MANIFESTS / f"{victim.replace('_', '-')}.yaml").read_text()
    grace = int(manifest.split("terminationGracePeriodSeconds:")[1].split()[0])
    groups = _groups(proc.port)
    assert groups, f"{victim} reports no consumer groups on /metrics"
    log = system.workdir / f"{proc.label}.log"
    drained_before = _drained(log, victim)
    handled = _handled(proc.port)
    asyncio.run(_burst(system.kafka_bootstrap, uuid.uuid4().hex[:6]))
    if victim != "inventory":  # inventory consumes no order flow (shipments and stock only)
        _wait(lambda: _handled(proc.port) > handled, f"{victim} handles the burst", timeout=WAIT)
    signalled = time.monotonic()
    # After its graceful shutdown uvicorn re-raises the signal, so the exit status is -SIGTERM.
    code = system.terminate(proc, timeout=grace + 30)
    exit_s = time.monotonic() - signalled
    assert code in (0, -signal_module.SIGTERM), f"{victim} exited with {code}"
    # the lifespan ran to its end: consumers stopped (offsets committed), relay and producer closed
    _wait(lambda: _drained(log, victim) == drained_before + 1, f"{victim} logs that it stopped", timeout=30)
    return {
        "exit_s": exit_s, "grace_s": grace,
        "outbox": asyncio.run(_count(system.database_url, victim, "SELECT count(*) FROM outbox_messages", {})),
        "redelivered": {f"{group} {topic}": asyncio.run(_already_applied(system, victim, group, topic))
                        for group, topic in groups},
    }


async def _burst(bootstrap: str, run: str) -> None:
    """Orders of a channel and SKU of their own (no stock: backorders), as fast as they go."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in range(BURST):
            order = _order(f"drain-burst-{run}", n, f"BURST-{run}")
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(order), key=f"burst-{run}:{n}".encode())
        await producer.flush()
    finally:
        await producer.stop()


def _metric_samples(port: int, name: str) -> list[Any]:
    text_ = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return [s for f in text_string_to_metric_families(text_) for s in f.samples if s.name == name]


def _handled(port: int) -> float:
    return sum(s.value for s in _metric_samples(port, "oms_consumed_messages_total"))


def _groups(port: int) -> set[tuple[str, str]]:
    """(consumer group, topic) pairs of a running instance (one group reads several topics), from
    its oms_consumer_lag_messages."""
    return {(s.labels["group"], s.labels["topic"]) for s in _metric_samples(port, "oms_consumer_lag_messages")}


async def _already_applied(system: System, schema: str, group: str, topic: str) -> int:
    """Of the records a new member of ``group`` will be given (committed offset to end, every
    partition), how many the service already applied (by its inbox or by the record's natural key)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=system.kafka_bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=system.kafka_bootstrap)
    await consumer.start()
    await admin.start()
    records: list[Any] = []
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)  # Tansu: partitions named
        end = await consumer.end_offsets(tps)
        start = {tp: committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0 for tp in tps}
        pending = [tp for tp in tps if start[tp] < end[tp]]
        if pending:
            consumer.assign(pending)
            for tp in pending:
                consumer.seek(tp, start[tp])
            while [tp for tp in pending if await consumer.position(tp) < end[tp]]:
                for tp, recs in (await consumer.getmany(*pending, timeout_ms=1000)).items():
                    records += [r for r in recs if r.offset < end[tp]]
    finally:
        await admin.close()
        await consumer.stop()
    # An applied record is in the inbox (by event id, or by position for a rejected channel order)
    # or stored under its natural key: an accepted channel order by (channel, external_id) in
    # order intake, an OrderPlaced by its order id in allocation (neither writes an inbox row).
    ids: dict[int, uuid.UUID] = {}
    channel_keys: dict[int, tuple[str, str]] = {}
    placed: dict[int, str] = {}
    for i, r in enumerate(records):
        try:
            value = orjson.loads(r.value)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(value, dict):
            continue
        if r.topic == Topic.CHANNEL_ORDERS:
            ids[i] = record_ref(r.topic, r.partition, r.offset)
            if isinstance(value.get("channel"), str) and isinstance(value.get("external_id"), str):
                channel_keys[i] = (value["channel"], value["external_id"])
            continue
        try:
            ids[i] = uuid.UUID(value["event_id"])
        except (KeyError, TypeError, ValueError):
            continue
        if value.get("event_type") == "OrderPlaced" and isinstance(value.get("data"), dict):
            placed[i] = str(value["data"].get("order_id"))
    known = await _values(system.database_url, schema, "SELECT event_id FROM inbox WHERE event_id = ANY(:ids)",
                          {"ids": list(set(ids.values()))}) if ids else set()
    stored_keys: set[Any] = set()
    if channel_keys and schema == "order_intake":
        stored_keys = await _values(
            system.database_url, schema,
            "SELECT channel, external_id FROM orders JOIN unnest(CAST(:c AS text[]), CAST(:e AS text[]))"
            " AS k(channel, external_id) USING (channel, external_id)",
            {"c": [c for c, _ in channel_keys.values()], "e": [e for _, e in channel_keys.values()]})
    stored_orders: set[Any] = set()
    if placed and schema == "allocation":
        stored_orders = await _values(system.database_url, schema, "SELECT order_id FROM orders WHERE order_id = ANY(:o)",
                                      {"o": list(set(placed.values()))})
    return sum(1 for i in range(len(records))
               if ids.get(i) in known or channel_keys.get(i) in stored_keys or placed.get(i) in stored_orders)


async def _rows(database_url: str, schema: str, sql: str, params: dict[str, Any]) -> list[Any]:
    engine = create_engine(database_url, schema=schema)
    try:
        async with engine.connect() as conn:
            return list(await conn.execute(text(sql), params))
    finally:
        await engine.dispose()


async def _values(database_url: str, schema: str, sql: str, params: dict[str, Any]) -> set[Any]:
    """The rows of ``sql``: each its one value, or a tuple of its values."""
    return {row[0] if len(row) == 1 else tuple(row) for row in await _rows(database_url, schema, sql, params)}


async def _count(database_url: str, schema: str, sql: str, params: dict[str, Any]) -> int:
    return int((await _rows(database_url, schema, sql, params))[0][0] or 0)


async def test_postgres_outage_mid_stream_loses_nothing(system: System, infra: Infra) -> None:
    """PostgreSQL stopped for 10 s in the middle of the stream: every service reports not ready,
    then ready again without a restart, and nothing is lost or doubled."""
    if infra.embedded_pg is None:
        pytest.skip("needs the embedded PostgreSQL (this session's database is not ours to stop)")
    pg = infra.embedded_pg
    procs = list(system.processes)

    def fault() -> None:
        not_ready: set[str] = set()
        pg.stop()
        outage_ends = time.monotonic() + 10
        while time.monotonic() < outage_ends or len(not_ready) < len(procs):
            assert time.monotonic() < outage_ends + WAIT, f"readiness never went false for all: {not_ready}"
            for sp in procs:
                if not _ready(sp.port):
                    not_ready.add(sp.label)
            time.sleep(0.2)
        pg.start()
        system.wait_ready(WAIT, procs)  # the same processes: no restart
        assert all(sp.process.poll() is None for sp in procs), "a service died during the outage"

    await _scenario(system, "PostgreSQL down 10 s", fault)


async def _scenario(system: System, scenario: str, fault: Callable[[], None]) -> None:
    """A stream of orders with receipts, packs and shipments before and after ``fault`` (which
    returns once the system is ready again), then the invariants through the public views."""
    run = uuid.uuid4().hex[:6]
    sku, loc = f"FAULT-{run}", f"WH-FAULT-{run}"
    channel = "fault-" + "".join(c if c.isalnum() else "-" for c in scenario.lower()) + f"-{run}"
    views = _Views(system, channel, sku)
    views.ok("POST", "inventory", "/v1/locations", json={
        "location_id": loc, "name": "fault suite", "kind": "warehouse", "country": "DE", "ships_to": ["DE"],
        "active": True})
    views.receive(loc, RECEIPTS[0], f"GRN-{run}-0")
    _wait(lambda: views.stock().get("on_hand") == RECEIPTS[0], "allocation sees the stock")
    timing: dict[str, float] = {}

    def fault_and_recover() -> None:
        before = views.pack(PACKS, set())  # fulfillment, allocation and order intake busy
        views.receive(loc, RECEIPTS[1], f"GRN-{run}-1")  # inventory busy
        timing["fault"] = time.monotonic()
        fault()
        timing["ready"] = time.monotonic()
        views.ship(before, run)  # inventory consumes OrderShipped, allocation the stock decrease
        timing["after"] = len(views.pack(PACKS, set(before)))
        views.receive(loc, RECEIPTS[2], f"GRN-{run}-2")

    await _stream_orders(system.kafka_bootstrap, channel, sku, fault_and_recover)

    expected_stock = {"on_hand": STOCK - PACKS, "reserved": STOCK - PACKS, "backordered_demand": ORDERS - STOCK}
    expected_orders = {"allocated": STOCK - 2 * PACKS, "backordered": ORDERS - STOCK, "packed": PACKS, "shipped": PACKS}

    def settled() -> bool:
        stock = views.stock()
        return {k: stock.get(k) for k in expected_stock} == expected_stock and views.statuses() == expected_orders

    try:
        _wait(settled, "every order allocated, backordered, packed or shipped exactly once", timeout=WAIT,
              last=lambda: (views.stock(), views.statuses()))
    except AssertionError:
        _report(scenario + " (did not settle)", views.measure(), timing["ready"] - timing["fault"],
                time.monotonic() - timing["fault"])
        raise
    settled_at = time.monotonic()
    figures = views.measure()
    _report(scenario, figures, timing["ready"] - timing["fault"], settled_at - timing["fault"])
    assert figures == {"lost": 0, "doubled": 0, "oversold": 0}
    assert timing["after"] == PACKS
    stock = views.stock()
    assert stock["reserved"] <= stock["on_hand"]
    assert {k: stock[k] for k in expected_stock} == expected_stock
    orders = views.orders()
    assert len(orders) == ORDERS  # every order accepted once, resends did not create new ones
    assert len({o["external_id"] for o in orders}) == ORDERS


# --- the relay killed between publishing and deleting ---------------------------------------------

# What each service publishes (through its outbox).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "order_intake": (Topic.ORDERS, Topic.CHANNEL_ORDERS_REJECTED),
    "inventory": (Topic.INVENTORY,),
    "allocation": (Topic.ALLOCATIONS, Topic.AVAILABILITY),
    "fulfillment": (Topic.FULFILLMENT,),
}
CRASH_HOOK = "OMS_FAULT_RELAY_CRASH_AFTER_PUBLISH"  # libs/messaging/fault_hooks.py


@pytest.mark.parametrize("victim", list(SERVICES))
async def test_relay_killed_between_publishing_and_deleting_has_no_second_effect(system: System, victim: str) -> None:
    """Mid-stream the service is restarted with the relay's crash hook: the relay SIGKILLs its
    process right after the broker acknowledged a batch, before deleting the rows. Restarted
    normally, it publishes that batch again: the duplicates are on the topic (checked), and
    every consumer ignores them (the invariants of the stream and of side orders, which give
    each of the four services something to publish while the hook is armed)."""
    run = uuid.uuid4().hex[:6]
    side = _Views(system, f"relay-side-{run}", f"RELAY-{run}")
    side_loc = f"WH-RELAY-{run}"
    since: dict[str, dict[int, int]] = {}
    side_packed: dict[str, str] = {}

    def fault() -> None:
        side.ok("POST", "inventory", "/v1/locations", json={
            "location_id": side_loc, "name": "relay crash", "kind": "warehouse", "country": "DE", "ships_to": ["DE"],
            "active": True})
        side.receive(side_loc, 5, f"GRN-{run}-side")
        _wait(lambda: side.stock().get("on_hand") == 5, "allocation sees the side stock")
        asyncio.run(_send_orders(system.kafka_bootstrap, side.channel, side.sku, range(2)))
        _wait(lambda: side.statuses() == {"allocated": 2}, "the side orders allocated", last=side.statuses)
        [proc] = [p for p in system.processes if p.name == victim]
        system.terminate(proc, timeout=WAIT)  # drains: the armed relay starts from an empty outbox
        since.update({t: asyncio.run(_end_offsets(system.kafka_bootstrap, t)) for t in OUTPUTS[victim]})
        log = system.workdir / f"{proc.label}.log"
        hooked_before = _hook_fired(log)
        armed = system.start_service(victim, port=proc.port, env={CRASH_HOOK: "1"})
        # (it may already fire on the stream's backlog, before it answers ready)
        _wait(lambda: armed.process.poll() is not None or _ready(proc.port), f"{victim} (armed) ready", timeout=WAIT)
        # something to publish for every service: orders (intake, allocation), a receipt (inventory),
        # a pack (fulfillment); calls to the victim may fail when it dies under them
        asyncio.run(_send_orders(system.kafka_bootstrap, side.channel, side.sku, range(2, 4)))
        for call in (lambda: side.receive(side_loc, 1, f"GRN-{run}-side-2"),
                     lambda: side_packed.update(side.pack(1, set()))):
            try:
                call()
            except (httpx.HTTPError, AssertionError):
                armed.process.wait(30)  # only the victim dying under the call may make it fail
        code = armed.process.wait(WAIT)
        assert code == -signal_module.SIGKILL, f"{victim} exited with {code}, not by its relay's crash hook"
        _wait(lambda: _hook_fired(log) > hooked_before, f"{victim} logs the hook", timeout=30)
        system.kill(armed)  # (already dead: bookkeeping)
        time.sleep(1.0)
        restarted = system.start_service(victim, port=proc.port)
        system.wait_ready(WAIT, [restarted])

    await _scenario(system, f"relay killed after publish {victim}", fault)
    # the side orders too: each once, in a final state, quantities balanced, stock conserved
    want_packed = len(side_packed)  # (0 when the victim died before it answered the pack)
    _wait(lambda: sum(side.statuses().values()) == 4 and side.statuses().get("packed", 0) >= want_packed
          and "pending" not in side.statuses(), "the side orders handled", timeout=WAIT, last=side.statuses)
    assert side.measure(placed=4) == {"lost": 0, "doubled": 0, "oversold": 0}
    # and the batch really was published twice
    records = [r for t, start in since.items() for r in await _read_all(system.kafka_bootstrap, t, start)]
    ids = [orjson.loads(r.value).get("event_id") for r in records]
    twice = {i for i in ids if i and ids.count(i) > 1}
    print(f"RELAY-RESULT | {victim} | {len(records)} records since the restart | {len(twice)} published twice")
    assert twice, f"no event of {victim} was published twice: the hook did not cut between publish and delete"


async def _send_orders(bootstrap: str, channel: str, sku: str, numbers: range) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for n in numbers:
            order = _order(channel, n, sku)
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(order), key=f"{channel}:{order['external_id']}".encode())
        await producer.flush()
    finally:
        await producer.stop()


async def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return {tp.partition: off for tp, off in (await consumer.end_offsets(tps)).items()}
    finally:
        await consumer.stop()


def _hook_fired(log: Path) -> int:
    text_ = log.read_text(errors="replace") if log.exists() else ""
    return text_.count(f"fault hook {CRASH_HOOK}")


# --- replay from offset 0 in a fresh consumer group -----------------------------------------------

# What each service consumes (besides what _groups finds on its /metrics).
INPUTS: dict[str, tuple[str, ...]] = {
    "order_intake": (Topic.CHANNEL_ORDERS, Topic.ALLOCATIONS, Topic.FULFILLMENT),
    "inventory": (Topic.FULFILLMENT,),
    "allocation": (Topic.ORDERS, Topic.INVENTORY, Topic.FULFILLMENT),
    "fulfillment": (Topic.ALLOCATIONS,),
}


@pytest.mark.parametrize("victim", list(SERVICES))
async def test_replay_from_offset_zero_in_a_fresh_group_changes_nothing(system: System, victim: str) -> None:
    """After a little of everything (orders, a receipt, packs, a shipment, a cancellation, a return,
    a poison record on every input topic), the service is restarted in a fresh consumer group,
    which reads every input topic from offset 0. Once it has caught up with the old group: the
    public views of the run are unchanged, nothing was published (its outbox relay published
    nothing, its output topics did not grow), and no dead letter or rejection was added."""
    run = uuid.uuid4().hex[:6]
    views = _Views(system, f"replay-{run}", f"REPLAY-{run}")
    loc = f"WH-REPLAY-{run}"
    views.ok("POST", "inventory", "/v1/locations", json={
        "location_id": loc, "name": "replay", "kind": "warehouse", "country": "DE", "ships_to": ["DE"], "active": True})
    views.receive(loc, 6, f"GRN-{run}")
    _wait(lambda: views.stock().get("on_hand") == 6, "allocation sees the stock")
    producer = AIOKafkaProducer(bootstrap_servers=system.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for topic in INPUTS[victim]:  # dead-lettered (or, channel orders, rejected) once by the old group
            await producer.send_and_wait(topic, _poisons(run)[0], key=f"poison:{run}".encode(), partition=0)
    finally:
        await producer.stop()
    await _send_orders(system.kafka_bootstrap, views.channel, views.sku, range(8))
    _wait(lambda: views.statuses() == {"allocated": 6, "backordered": 2}, "the orders handled", last=views.statuses)
    packed = views.pack(2, set())
    shipped = dict(list(packed.items())[:1])
    views.ship(shipped, run)
    [cancelled] = [o["order_id"] for o in views.orders("allocated")][:1]
    views.ok("POST", "order_intake", f"/v1/orders/{cancelled}/cancel", json={})
    _wait(lambda: views.statuses() == {"allocated": 4, "backordered": 1, "packed": 1, "shipped": 1, "cancelled": 1},
          "shipment and cancellation handled", last=views.statuses)
    [shipped_order] = shipped
    views.ok("POST", "fulfillment", "/v1/returns", json={"order_id": shipped_order, "lines": [
        {"line_id": "1", "qty": 1, "condition": "sellable", "location_id": loc, "bin": "A-01"}]})
    _wait(lambda: views.statuses() == {"allocated": 5, "packed": 1, "shipped": 1, "cancelled": 1},
          "the returned unit allocated to the last backorder", last=views.statuses)

    [proc] = [p for p in system.processes if p.name == victim]
    groups = _groups(proc.port)
    assert {t for _, t in groups} >= set(INPUTS[victim]), groups

    async def caught_up() -> bool:  # the old groups have committed every record there is
        for group, topic in groups:
            end = await _end_offsets(system.kafka_bootstrap, topic)
            done = await _committed(system.kafka_bootstrap, group, topic)
            if any(done.get(p, 0) < off for p, off in end.items()):
                return False
        return True

    await asyncio.to_thread(_wait, lambda: asyncio.run(caught_up()), f"{victim}'s groups caught up", WAIT)
    before = _replay_snapshot(views, packed)
    system.terminate(proc, timeout=WAIT)
    watched = [*OUTPUTS[victim], *(dlq(t) for t in INPUTS[victim])]
    offsets = {t: await _end_offsets(system.kafka_bootstrap, t) for t in watched}
    tables = await _row_counts(system.database_url, victim)
    targets = {(g, t): await _committed(system.kafka_bootstrap, g, t) for g, t in groups}

    suffix = f"-replay-{run}"
    fault = time.monotonic()
    replayer = system.start_service(victim, port=proc.port, env={"OMS_KAFKA_GROUP_SUFFIX": suffix})
    try:
        system.wait_ready(WAIT, [replayer])
        ready_s = time.monotonic() - fault

        async def replayed() -> bool:
            for (group, topic), target in targets.items():
                done = await _committed(system.kafka_bootstrap, group + suffix, topic)
                if any(done.get(p, 0) < off for p, off in target.items()):
                    return False
            return True

        await asyncio.to_thread(_wait, lambda: asyncio.run(replayed()), f"{victim} replayed its inputs from offset 0",
                                WAIT)
        replay_s = time.monotonic() - fault
        assert {g for g, _ in _groups(replayer.port)} == {g + suffix for g, _ in groups}
        # nothing written to publish, nothing published, no dead letter, no rejection
        assert await _count(system.database_url, victim, "SELECT count(*) FROM outbox_messages", {}) == 0
        assert sum(s.value for s in _metric_samples(replayer.port, "oms_outbox_published_total")) == 0
        assert {t: await _end_offsets(system.kafka_bootstrap, t) for t in watched} == offsets
        # no state change: the public views, and not one row more or less in the service's tables
        assert _replay_snapshot(views, packed) == before
        assert await _row_counts(system.database_url, victim) == tables
        replayed_records = sum(sum(t.values()) for t in targets.values())
    finally:
        system.terminate(replayer, timeout=WAIT)
        system.wait_ready(WAIT, [system.start_service(victim, port=proc.port)])  # back in its own groups
    figures = views.measure(placed=8)
    print(f"REPLAY-RESULT | {victim} | {replayed_records} records replayed in {replay_s:.1f} s | "
          f"{len(groups)} (group, topic) pairs")
    _report(f"replay from offset 0 {victim}", figures, ready_s, replay_s, orders=8)
    assert figures == {"lost": 0, "doubled": 0, "oversold": 0}


def _replay_snapshot(views: _Views, packed: dict[str, str]) -> dict[str, Any]:
    """Everything the public views show of the run."""
    orders = sorted(views.orders(), key=lambda o: o["order_id"])
    return {
        "orders": [views.ok("GET", "order_intake", f"/v1/orders/{o['order_id']}") for o in orders],
        "allocations": [views.ok("GET", "allocation", f"/v1/allocations/{o['order_id']}") for o in orders],
        "stock report": views.stock(),
        "stock": views.ok("GET", "inventory", f"/v1/stock/{views.sku}"),
        "ledger": views.ok("GET", "inventory", "/v1/ledger", params={"sku": views.sku}),
        "shipments": [views.ok("GET", "fulfillment", f"/v1/shipments/{s}") for s in sorted(packed.values())],
    }


async def _committed(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """Committed offset per partition, 0 where none (Tansu needs the partitions named)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await consumer.start()
    await admin.start()
    try:
        await consumer.topics()
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        return {tp.partition: max(committed[tp].offset, 0) if tp in committed else 0 for tp in tps}
    finally:
        await admin.close()
        await consumer.stop()


async def _row_counts(database_url: str, schema: str) -> dict[str, int]:
    engine = create_engine(database_url, schema=schema)
    try:
        async with engine.connect() as conn:
            tables = (await conn.execute(text(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = :s AND table_type = 'BASE TABLE'"),
                {"s": schema})).scalars().all()
            return {t: int((await conn.execute(text(f'SELECT count(*) FROM "{t}"'))).scalar() or 0) for t in tables}
    finally:
        await engine.dispose()


# --- poison records ------------------------------------------------------------------------------

# Who consumes which topic (each consumer group dead-letters on its own).
CONSUMERS: dict[str, set[str]] = {
    Topic.ORDERS: {"allocation"},  # fulfillment reads no order events
    Topic.INVENTORY: {"allocation"},
    Topic.ALLOCATIONS: {"order_intake", "fulfillment"},
    Topic.FULFILLMENT: {"order_intake", "inventory", "allocation"},
}
GROUP_PREFIX = {"order_intake": "oms-order-intake", "inventory": "oms-inventory",
                "allocation": "oms-allocation", "fulfillment": "oms-fulfillment"}


def _poisons(run: str) -> list[bytes]:
    """Not JSON (nor UTF-8), and JSON of the wrong shape."""
    return [b"not json " + run.encode() + b" \xff",
            orjson.dumps({"run": run, "event_type": 42, "data": "wrong shape"})]


async def _read_all(bootstrap: str, topic: str, start: dict[int, int] | None = None) -> list[Any]:
    """Every record of ``topic`` from offset 0 (or ``start``, per partition) to its current end
    (no consumer group)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        if topic not in await consumer.topics():  # also refreshes the metadata
            return []
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        for tp in tps:
            if start and start.get(tp.partition):
                consumer.seek(tp, start[tp.partition])
        end = await consumer.end_offsets(tps)
        records: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < end[tp]]:
            batch = await consumer.getmany(timeout_ms=1000)
            for recs in batch.values():
                records.extend(recs)
        return records
    finally:
        await consumer.stop()


async def test_poison_records_are_dead_lettered_and_the_partition_keeps_flowing(system: System) -> None:
    run = uuid.uuid4().hex[:6]
    sku, loc, channel = f"POISON-{run}", f"WH-POISON-{run}", f"poison-{run}"
    views = _Views(system, channel, sku)
    poisons = _poisons(run)
    started = time.monotonic()
    producer = AIOKafkaProducer(bootstrap_servers=system.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        # every partition of every consumed topic gets both poisons before any good record of this run
        sent: dict[str, int] = {}
        for topic in [Topic.CHANNEL_ORDERS, *CONSUMERS]:
            partitions = sorted(await producer.partitions_for(topic))
            for p in partitions:
                for value in poisons:
                    await producer.send_and_wait(topic, value, key=f"poison:{run}".encode(), partition=p)
            sent[topic] = len(partitions) * len(poisons)
        # good records behind them: channel orders over Kafka, stock, packs and a shipment over HTTP
        views.ok("POST", "inventory", "/v1/locations", json={
            "location_id": loc, "name": "poison", "kind": "warehouse", "country": "DE", "ships_to": ["DE"], "active": True})
        views.receive(loc, 10, f"GRN-{run}")
        for n in range(20):
            order = _order(channel, n, sku)
            await producer.send(Topic.CHANNEL_ORDERS, orjson.dumps(order), key=f"{channel}:{order['external_id']}".encode())
        await producer.flush()
    finally:
        await producer.stop()
    _wait(lambda: views.statuses() == {"allocated": 10, "backordered": 10}, "the good orders handled",
          timeout=WAIT, last=views.statuses)
    shipments = views.pack(2, set())
    views.ship(dict(list(shipments.items())[:1]), run)
    _wait(lambda: views.statuses() == {"allocated": 8, "backordered": 10, "packed": 1, "shipped": 1},
          "packing and shipping handled by every consumer", timeout=WAIT, last=views.statuses)
    _wait(lambda: views.stock().get("on_hand") == 9 and views.stock().get("reserved") == 9,
          "the shipment booked by inventory and allocation", last=views.stock)
    figures = views.measure(placed=20)
    _report("poison records on every consumed topic", figures, None, time.monotonic() - started, orders=20)
    assert figures == {"lost": 0, "doubled": 0, "oversold": 0}

    # each consumer of each topic dead-lettered each poison, once, with the error in headers
    for topic, consumers in CONSUMERS.items():
        def dead(topic: str = topic) -> list[Any]:
            return [r for r in asyncio.run(_read_all(system.kafka_bootstrap, dlq(topic))) if r.value in poisons]

        groups = {GROUP_PREFIX[c] for c in consumers}  # one group per service
        expected = sent[topic] * len(groups)
        found = await asyncio.to_thread(_wait_value, dead, lambda rs, n=expected: len(rs) >= n)
        seen: dict[str, int] = {}
        for record in found:
            headers = {k: v.decode() for k, v in record.headers}
            assert headers["dlq.topic"] == topic
            assert headers["dlq.error"] and headers["dlq.error_type"]
            seen[headers["dlq.consumer_group"]] = seen.get(headers["dlq.consumer_group"], 0) + 1
        # (another test may have run a consumer in a fresh group: only ours are counted)
        assert {g: seen.get(g, 0) for g in groups} == {g: sent[topic] for g in groups}, f"{topic}: {seen}"

    # channel orders: a connector's bad record is answered on the rejected topic, never dead-lettered
    def rejected() -> list[Any]:
        return [r for r in asyncio.run(_read_all(system.kafka_bootstrap, Topic.CHANNEL_ORDERS_REJECTED))
                if r.key == f"poison:{run}".encode()]

    answers = await asyncio.to_thread(_wait_value, rejected, lambda rs: len(rs) >= sent[Topic.CHANNEL_ORDERS])
    assert len(answers) == sent[Topic.CHANNEL_ORDERS]


def _drained(log: Path, service: str) -> int:
    """How often ``service`` logged the end of its shutdown (host.py: "<service> stopped")."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return sum(line.endswith(f"libs.service_host.host: {service} stopped") for line in text.splitlines())


def _ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_value(probe: Callable[[], Any], ok: Callable[[Any], bool], timeout: float = WAIT) -> Any:
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        value = probe()
        if ok(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out; last seen {value}")


def _wait(condition, what: str, timeout: float = 90, last=None) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting: {what}" + (f"; last seen {last()}" if last else ""))
