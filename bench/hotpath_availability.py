"""CPU per AvailabilityChanged event of allocation's availability publisher, in this process,
against a real PostgreSQL and no broker: the yardstick for one change to the feed on a shared
machine (``bench/hotpath.py`` is the one for the batch use case).

Each window marks ``--dirty`` SKUs dirty (untimed, in a transaction of its own that also empties
the outbox, as the relay would), then runs ``publish_dirty`` in one timed transaction: the dirty
SKUs taken, free units and inbound supply read, policies and locations read, one event per SKU
built and written to the outbox, the flags cleared, commit. Reported: this process's CPU time and
the PostgreSQL server's per published event. The outbox relay is not run.

    python -m bench.hotpath_availability --skus 2000 [--profile availability.pstats]

Set-up (through ``apply_events`` and ``put_policy`` as the service receives them): five
warehouses, a store kept for one channel, a dropship supplier; every SKU stocked in the
warehouses (a few lots and bins), a tenth at the store, a fifth at the supplier; four channel
policies besides the default (safety stock rules, buffers, a channel that never dropships, one
that dropships only a few SKUs, pre-sell caps); open purchase orders for one SKU in twenty.
"""

from __future__ import annotations

import asyncio
import cProfile
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.hotpath import VERSIONS, _postgres_cpu, arguments, database
from libs.contracts import decode_event, encode_event
from libs.contracts.envelope import new_envelope
from libs.contracts.events import Event, LocationChanged, PurchaseOrderChanged, StockAdjusted
from libs.database.engine import create_engine
from libs.database.migrations import upgrade_schema
from libs.service_host.host import tune_garbage_collector
from services.allocation.adapters.repository import MARK_AVAILABILITY_CHANGED
from services.allocation.adapters.tables import SCHEMA
from services.allocation.service_layer.allocating import apply_events, put_policy
from services.allocation.service_layer.availability import publish_dirty

WAREHOUSES = 5


def _encoded(event: Event) -> bytes:
    return encode_event(new_envelope(event, source="bench", correlation_id=uuid.uuid4().hex))


async def _setup(engine: AsyncEngine, run_id: str, skus: list[str]) -> None:
    wh = [f"{run_id}-L{i}" for i in range(WAREHOUSES)]
    store, supplier = f"{run_id}-STORE", f"{run_id}-DROP"
    events: list[bytes] = [_encoded(LocationChanged(location_id=loc, name=loc, country="DE", ships_to=["DE"], priority=i))
                           for i, loc in enumerate(wh)]
    events.append(_encoded(LocationChanged(location_id=store, name="store", kind="store", country="DE",
                                           ships_to=["DE"], channels=["shop"], pickup=True)))
    events.append(_encoded(LocationChanged(location_id=supplier, name="supplier", kind="dropship", country="DE",
                                           ships_to=["DE"], priority=9)))
    now = datetime.now(UTC)
    for n, s in enumerate(skus):
        for i, loc in enumerate(wh):
            for b in range(1 + (n + i) % 3):  # one to three bins
                events.append(_encoded(StockAdjusted(sku=s, location_id=loc, bin=f"B{b}", delta=50, on_hand=50, seq=1,
                                                     reason="receipt", received_at=now)))
        if n % 10 == 0:
            events.append(_encoded(StockAdjusted(sku=s, location_id=store, bin="A", delta=5, on_hand=5, seq=1,
                                                 reason="receipt", received_at=now)))
        if n % 5 == 0:
            events.append(_encoded(StockAdjusted(sku=s, location_id=supplier, bin="A", delta=500, on_hand=500, seq=1,
                                                 reason="receipt", received_at=now)))
        if n % 20 == 0:
            for k in range(2):
                events.append(_encoded(PurchaseOrderChanged(
                    purchase_order_id=f"{run_id}-PO{n}-{k}", change="created", sku=s, location_id=wh[k], qty=100,
                    expected_date=(now + timedelta(days=7 + k)).date(), status="open", version=1)))
    for i in range(0, len(events), 2000):
        async with engine.begin() as conn:
            await apply_events(conn, [decode_event(raw) for raw in events[i:i + 2000]])
    policies = [
        {"channel": "*", "safety_stock": [{"sku": "*", "location_id": wh[0], "qty": 2},
                                          {"sku": skus[1], "location_id": "*", "qty": 4}]},
        {"channel": "web", "buffer": 2, "presell": [{"sku": "*", "cap": 50}]},
        {"channel": "shop", "buffer": 1, "safety_stock": [{"sku": "*", "location_id": store, "qty": 1}]},
        {"channel": "market", "buffer": 3, "dropship_mode": "never", "presell": [{"sku": skus[0], "cap": 10}]},
        {"channel": "b2b", "dropship_mode": "always", "dropship_skus": skus[:50]},
    ]
    for doc in policies:
        async with engine.begin() as conn:
            await put_policy(conn, doc)


async def run(windows: int, dirty: int, skus: int, profile: str | None, database_url: str, pg_pid: int | None,
              gc_threshold: int) -> None:
    engine = create_engine(database_url, schema=SCHEMA, pool_size=2)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    run_id = uuid.uuid4().hex[:6]
    sku_ids = [f"{run_id}-S{i:05d}" for i in range(skus)]
    await _setup(engine, run_id, sku_ids)
    if gc_threshold:  # as the service host does once it is ready
        tune_garbage_collector(gc_threshold)
    rng = random.Random(7)
    pgs = [pg_pid] if pg_pid else []

    async def window(timed: bool) -> tuple[int, float, float]:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM outbox"))  # as the relay would
            await conn.execute(MARK_AVAILABILITY_CHANGED, {"s": rng.sample(sku_ids, min(dirty, len(sku_ids)))})
        pg0, cpu0 = _postgres_cpu(pgs), time.process_time()
        if timed and profiler:
            profiler.enable()
        async with engine.begin() as conn:
            n = await publish_dirty(conn)
        if timed and profiler:
            profiler.disable()
        return n, time.process_time() - cpu0, _postgres_cpu(pgs) - pg0

    profiler = cProfile.Profile() if profile else None
    for _ in range(3):  # warm up: caches, prepared statements, plans
        await window(False)
    events = 0
    cpu = pg = 0.0
    per_window: list[float] = []
    wall0 = time.perf_counter()
    for _ in range(windows):
        n, c, p = await window(True)
        events += n
        cpu += c
        pg += p
        per_window.append(c * 1e6 / n)
    wall = time.perf_counter() - wall0
    print(f"availability feed: {windows} windows of {dirty} dirty SKUs ({events} events), {skus} SKUs,"
          f" {WAREHOUSES} warehouses + store + supplier, 5 policies")
    print(f"  service CPU {cpu * 1e6 / events:.1f} us/event (median window {statistics.median(per_window):.1f}),"
          f" PostgreSQL CPU {pg * 1e6 / events:.1f} us/event" + ("" if pg_pid else " (not measured: external database)")
          + f", wall incl. marking {wall * 1e6 / events:.1f} us/event")
    if profiler and profile:
        profiler.dump_stats(profile)
        print(f"  profile: {profile}")
    await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = arguments("python -m bench.hotpath_availability", __doc__, orders=False)
    ap.add_argument("--windows", type=int, default=20)
    ap.add_argument("--dirty", type=int, default=1000, help="SKUs marked dirty per window")
    ap.add_argument("--skus", type=int, default=2000)
    args = ap.parse_args(argv)
    with database() as (url, pid):
        asyncio.run(run(args.windows, args.dirty, args.skus, args.profile, url,
                        pid, args.gc_threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
