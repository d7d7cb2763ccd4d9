"""CPU per filled line of allocation's backorder refill, in this process, against a real
PostgreSQL and no broker: the yardstick for the refill target (5,000 lines/s, memory flat).

Places ``--orders`` single-line orders of one SKU with no stock (all backordered), then applies
one receipt of exactly their quantity the way the consumer does (``apply_events``: the first
chunk) and runs the refill loop's step (``fill_next_chunk``) until no SKU is left filling, each
in its own transaction, as the service would. Reports this process's CPU and PostgreSQL's per
filled line, the chunks, and the growth of this process's peak resident memory during the fill.

    python -m bench.hotpath_refill --orders 20000 [--profile refill.pstats]
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from bench.hotpath import VERSIONS, _encoded, _postgres_cpu, arguments, database
from bench.measure import vm_hwm_mb
from libs.contracts import decode_event
from libs.contracts.events import LocationChanged, OrderLine, OrderPlaced, StockAdjusted
from libs.contracts.orders import Address, Customer
from libs.database.engine import create_engine
from libs.database.migrations import upgrade_schema
from libs.service_host.host import tune_garbage_collector
from services.allocation.adapters.tables import SCHEMA
from services.allocation.service_layer.allocating import apply_events
from services.allocation.service_layer.refill import fill_next_chunk


async def run(orders: int, qty: int, profile: str | None, database_url: str, pg_pid: int | None,
              gc_threshold: int) -> None:
    engine = create_engine(database_url, schema=SCHEMA, pool_size=2)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    run_id = uuid.uuid4().hex[:6]
    sku, loc = f"{run_id}-REFILL", f"{run_id}-L0"
    async with engine.begin() as conn:
        await apply_events(conn, [decode_event(_encoded(LocationChanged(
            location_id=loc, name="L0", country="DE", ships_to=["DE"])))])
    t0 = datetime.now(UTC)
    for start in range(0, orders, 1000):
        records = [_encoded(OrderPlaced(
            order_id=f"ord-{run_id}-{seq}", channel="bench", external_id=f"{run_id}-{seq}",
            placed_at=t0 + timedelta(microseconds=seq), currency="EUR", customer=Customer(),
            ship_to=Address(country="DE"),
            lines=[OrderLine(line_id="1", sku=sku, qty=qty, unit_price="1.00")],  # type: ignore[arg-type]
        )) for seq in range(start, min(start + 1000, orders))]
        async with engine.begin() as conn:
            await apply_events(conn, [decode_event(raw) for raw in records])
    if gc_threshold:
        tune_garbage_collector(gc_threshold)
    receipt = decode_event(_encoded(StockAdjusted(sku=sku, location_id=loc, bin="A", delta=orders * qty,
                                                  on_hand=orders * qty, seq=1, reason="receipt", received_at=t0)))
    profiler = cProfile.Profile() if profile else None
    rss0 = vm_hwm_mb(os.getpid())
    pids = [pg_pid] if pg_pid else []
    pg0, cpu0, wall0 = _postgres_cpu(pids), time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    async with engine.begin() as conn:
        await apply_events(conn, [receipt])
    chunks = 1
    while True:
        async with engine.begin() as conn:
            if await fill_next_chunk(conn) is None:
                break
        chunks += 1
    if profiler:
        profiler.disable()
    cpu, wall, pg = time.process_time() - cpu0, time.perf_counter() - wall0, _postgres_cpu(pids) - pg0
    async with engine.connect() as conn:
        filled = (await conn.execute(text("SELECT count(*) FROM order_lines WHERE sku = :s AND backordered = 0"),
                                     {"s": sku})).scalar()
    print(f"allocation refill: {orders} backordered lines of {qty} unit(s), one receipt, {chunks} chunks;"
          f" {filled} lines filled")
    print(f"  refill    service CPU {cpu * 1000 / orders:.3f} ms/line, PostgreSQL CPU "
          + (f"{pg * 1000 / orders:.3f} ms/line" if pids else "not measured")
          + f", wall {wall * 1000 / orders:.3f} ms/line ({orders / wall:,.0f} lines/s in one process);"
          f" peak RSS {rss0:.0f} -> {vm_hwm_mb(os.getpid()):.0f} MB")
    if profiler and profile:
        profiler.dump_stats(profile)
        print(f"  profile: {profile}")
    await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = arguments("python -m bench.hotpath_refill", __doc__, orders=False)
    ap.add_argument("--orders", type=int, default=20000)
    ap.add_argument("--qty", type=int, default=1)
    args = ap.parse_args(argv)
    with database() as (url, pid):
        asyncio.run(run(args.orders, args.qty, args.profile, url, pid, args.gc_threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
