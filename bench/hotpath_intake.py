"""CPU per order of order intake's two batch use cases, in this process, against a real
PostgreSQL and no broker: the yardstick for one change to intake's hot path on a shared machine.

Intake handles two things per order on the steady path, and this runs both exactly as its
subscriber (``entrypoints/subscribers.py``) calls them, one transaction per batch:

1. **placing**: raw channel-order record values (the load generator's JSON, key and
   correlation header) -> the subscriber's decoder -> inbox claim of the record positions ->
   ``place_orders`` (validate, rules, orders + lines + timeline, OrderPlaced to the outbox);
2. **tracking**: the allocation result (OrderAllocated, every line allocated) of each order just
   placed, as allocation encodes it -> the subscriber's decoder -> ``apply_downstream_events``
   (inbox claim, the order view's status and line quantities, timeline).

It reports the CPU time of this process (the service's Python) and of the PostgreSQL server
processes (the database's share) per order, for each of the two. The outbox relay is not run
(its rows stay in the table).

    python -m bench.hotpath_intake --orders 6000 --batch 500 [--profile intake.pstats]

Workload: the steady scenario's mix (bench/workload.py: 1-5 lines of Zipf-popular SKUs, 1-2
units each). ``--profile`` writes one cProfile of the timed batches of both use cases.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.hotpath import BatchMeter, arguments, database
from bench.workload import CHANNEL, Workload, correlation_id
from libs.contracts import Topic, encode_event
from libs.contracts.envelope import new_envelope
from libs.contracts.events import AllocationLine, LineState, OrderAllocated
from libs.database.engine import create_engine
from libs.database.migrations import upgrade_schema
from libs.messaging.consumer import Delivery
from libs.service_host.host import tune_garbage_collector
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints.subscribers import _decode, _incoming
from services.order_intake.service_layer.placing import place_orders
from services.order_intake.service_layer.tracking import apply_downstream_events

VERSIONS = Path(__file__).resolve().parents[1] / "services" / "order_intake" / "adapters" / "migrations" / "versions"


def _record(topic: str, offset: int, key: str, value: bytes, correlation: str) -> Any:
    return ConsumerRecord(topic=topic, partition=0, offset=offset, timestamp=0, timestamp_type=0, key=key.encode(),
                          value=value, checksum=None, serialized_key_size=len(key), serialized_value_size=len(value),
                          headers=[("correlation_id", correlation.encode())])


def _channel_orders(run: str, skus: list[str], n: int, offset0: int) -> list[Any]:
    """The load generator's records: the ChannelOrder document as JSON, key and correlation header."""
    wl = Workload("mix", run, skus, zipf_s=0.8, max_lines=5, max_qty=2)
    placed_at = datetime.now(UTC).isoformat()
    return [_record(Topic.CHANNEL_ORDERS, offset0 + seq, f"{CHANNEL}:{wl.external_id(seq)}",
                    orjson.dumps(wl.order(seq, placed_at)), correlation_id(seq, time.time_ns()))
            for seq in range(n)]


def _allocation_results(orders: list[tuple[str, list[tuple[str, str, int]]]], offset0: int) -> list[Any]:
    """One OrderAllocated per order (version 1, every line allocated), as allocation publishes it."""
    out = []
    for i, (order_id, lines) in enumerate(orders):
        event = OrderAllocated(
            order_id=order_id, version=1, change="OrderAllocated",
            lines=[LineState(line_id=li, sku=sku, qty=qty, allocated=qty) for li, sku, qty in lines],
            allocations=[AllocationLine(allocation_id=offset0 * 10 + i * 10 + j, line_id=li, sku=sku, location_id="L0",
                                        bin="A", lot="", qty=qty, status="allocated")
                         for j, (li, sku, qty) in enumerate(lines)],
        )
        value = encode_event(new_envelope(event, source="allocation", correlation_id=order_id))
        out.append(_record(Topic.ALLOCATIONS, offset0 + i, order_id, value, order_id))
    return out


async def _place(engine: AsyncEngine, records: list[Any]) -> None:
    deliveries = [Delivery(r, _decode(r)) for r in records]
    async with engine.begin() as conn:
        await place_orders(conn, _incoming(deliveries), publish_rejections=True)


async def _track(engine: AsyncEngine, records: list[Any]) -> None:
    messages = [_decode(r) for r in records]
    async with engine.begin() as conn:
        await apply_downstream_events(conn, messages)


async def _placed(engine: AsyncEngine, run: str) -> list[tuple[str, list[tuple[str, str, int]]]]:
    """The orders of this run as stored, in placing order, with their lines."""
    async with engine.connect() as conn:
        rows = (await conn.execute(text(
            "SELECT o.order_id, o.external_id, l.line_id, l.sku, l.qty FROM orders o JOIN order_lines l USING (order_id)"
            " WHERE o.external_id LIKE :p ORDER BY o.received_at, o.order_id, l.line_id"), {"p": f"{run}-%"})).all()
    by_order: dict[str, tuple[int, list[tuple[str, str, int]]]] = {}
    for r in rows:
        by_order.setdefault(r.order_id, (int(r.external_id.rsplit("-", 1)[1]), []))[1].append((r.line_id, r.sku, r.qty))
    return [(oid, lines) for oid, (_, lines) in sorted(by_order.items(), key=lambda kv: kv[1][0])]

async def run(orders: int, batch: int, skus: int, profile: str | None, database_url: str, pg_pid: int | None,
              gc_threshold: int) -> None:
    engine = create_engine(database_url, schema=SCHEMA, pool_size=2)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    run_id = uuid.uuid4().hex[:6]
    sku_ids = [f"{run_id}-S{i:05d}" for i in range(skus)]
    offset0 = int(time.time()) * 1000  # record positions of this run (the inbox remembers earlier runs')
    records = _channel_orders(run_id, sku_ids, orders, offset0)
    if gc_threshold:  # as the service host does once it is ready
        tune_garbage_collector(gc_threshold)
    warm, timed = records[:batch * 2], records[batch * 2:]
    for i in range(0, len(warm), batch):
        await _place(engine, warm[i:i + batch])
    placed = await _placed(engine, run_id)  # of the warm-up: their results warm tracking up
    for i in range(0, len(placed), batch):
        await _track(engine, _allocation_results(placed[i:i + batch], offset0 + i))

    meter = BatchMeter(pg_pid, profile)
    report = [await meter.timed("placing", [timed[i:i + batch] for i in range(0, len(timed), batch)],
                                lambda b: _place(engine, b))]
    placed = (await _placed(engine, run_id))[len(warm):]
    assert len(placed) == len(timed), f"{len(placed)} of {len(timed)} orders placed"
    results = _allocation_results(placed, offset0 + len(warm))
    report.append(await meter.timed("tracking", [results[i:i + batch] for i in range(0, len(results), batch)],
                                    lambda b: _track(engine, b)))
    async with engine.connect() as conn:
        wrong = (await conn.execute(text("SELECT count(*) FROM orders o JOIN order_status s USING (order_id) WHERE o.external_id LIKE :p AND s.status <> 'allocated'"),
                                    {"p": f"{run_id}-%"})).scalar()
    assert wrong == 0, f"{wrong} orders not allocated in the order view"
    print(f"order intake hot path: {len(timed)} orders in batches of {batch}, {skus} SKUs")
    print("\n".join(report))
    meter.dump()
    await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = arguments("python -m bench.hotpath_intake", __doc__)
    args = ap.parse_args(argv)
    with database() as (url, pid):
        asyncio.run(run(args.orders, args.batch, args.skus, args.profile, url, pid, args.gc_threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
