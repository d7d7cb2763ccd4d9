"""CPU per order of fulfillment's batch use case, in this process, against a real PostgreSQL and
no broker: the yardstick for one change to fulfillment's hot path on a shared machine.

Fulfillment handles one record per order on the steady path: allocation's result (a full
snapshot of the order's lines and live allocations) on ``oms.allocations.v1``, mirrored into its
tables for pick lists and packing. This feeds the raw record values of such results to the use
case its subscriber runs (``apply_allocation_results`` in one transaction, commit) and reports the
CPU time of this process and of the PostgreSQL server per order, as ``bench/hotpath.py`` does
for allocation, and what PostgreSQL wrote per order: WAL bytes (``pg_current_wal_lsn()`` before and
after) and table rows inserted, updated or deleted in fulfillment's schema (``pg_stat_user_tables``,
read after the connections closed so their counts are flushed).

    python -m bench.hotpath_fulfillment --orders 6000 --batch 500 [--profile fulfillment.pstats]

Workload: the steady scenario's orders (1-5 lines of Zipf-popular SKUs, 1-2 units each) over five
locations: most fully allocated at one location, some lines split over two locations, some lines
backordered in part or whole (OrderBackordered). ``--later`` of the records (default 5 %) are later
snapshots of orders already mirrored in an earlier batch: a re-allocation to another location or a
release back to backorder (version 2).
"""

from __future__ import annotations

import asyncio
import random
import sys
import uuid
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.hotpath import BatchMeter, arguments, database
from bench.workload import Workload
from libs.contracts import decode_event, encode_event
from libs.contracts.envelope import new_envelope
from libs.contracts.events import (
    AllocationLine,
    AllocationReleased,
    AllocationResult,
    LineState,
    OrderAllocated,
    OrderBackordered,
    OrderReallocated,
)
from libs.database.engine import create_engine
from libs.database.migrations import upgrade_schema
from libs.service_host.host import tune_garbage_collector
from services.fulfillment.adapters.tables import SCHEMA
from services.fulfillment.service_layer.mirroring import apply_allocation_results

LOCATIONS = 5
VERSIONS = Path(__file__).resolve().parents[1] / "services" / "fulfillment" / "adapters" / "migrations" / "versions"


def _encoded(event: AllocationResult) -> bytes:
    return encode_event(new_envelope(event, source="allocation", correlation_id=uuid.uuid4().hex))


class _Orders:
    """Allocation results as allocation would publish them (deterministic from the seed)."""

    def __init__(self, run: str, skus: list[str], seed: int = 11) -> None:
        self.run = run
        self.wl = Workload("mix", run, skus, zipf_s=0.8, max_lines=5, max_qty=2)
        self.rng = random.Random(seed)
        self.next_allocation_id = 1
        self.first: dict[str, tuple[list[tuple[str, int]], list[AllocationLine]]] = {}

    def _alloc(self, line_id: str, sku: str, location: int, qty: int) -> AllocationLine:
        self.next_allocation_id += 1
        return AllocationLine(allocation_id=self.next_allocation_id, line_id=line_id, sku=sku,
                              location_id=f"{self.run}-L{location}", bin=f"B{int(sku[-5:]) % 97:02d}", lot="",
                              qty=qty, status="allocated")

    def first_result(self, seq: int) -> AllocationResult:
        order_id = f"ord-{self.run}-{seq}"
        rng = self.rng
        home = rng.randrange(LOCATIONS)
        lines, allocs = [], []
        for i, (sku, qty) in enumerate(self.wl.lines(seq), 1):
            line_id = str(i)
            roll = rng.random()
            if roll < 0.06:  # backordered, in part or whole
                got = rng.randint(0, qty - 1)
                if got:
                    allocs.append(self._alloc(line_id, sku, home, got))
                lines.append(LineState(line_id=line_id, sku=sku, qty=qty, allocated=got, backordered=qty - got,
                                       backorder_reason="no stock"))
            elif roll < 0.16 and qty > 1:  # split over two locations
                allocs.append(self._alloc(line_id, sku, home, 1))
                allocs.append(self._alloc(line_id, sku, (home + 1) % LOCATIONS, qty - 1))
                lines.append(LineState(line_id=line_id, sku=sku, qty=qty, allocated=qty))
            else:
                allocs.append(self._alloc(line_id, sku, home, qty))
                lines.append(LineState(line_id=line_id, sku=sku, qty=qty, allocated=qty))
        self.first[order_id] = ([(ln.sku, ln.qty) for ln in lines], allocs)
        cls = OrderBackordered if any(ln.backordered for ln in lines) else OrderAllocated
        return cls(order_id=order_id, version=1, change="placed", lines=lines, allocations=allocs,
                   ship_complete=rng.random() < 0.1)

    def later_result(self, order_id: str) -> AllocationResult:
        """Version 2: a re-allocation (all to another location) or a release of one line."""
        wanted, allocs = self.first[order_id]
        if self.rng.random() < 0.5:
            moved = [self._alloc(a.line_id, a.sku, (int(a.location_id.rsplit("L", 1)[1]) + 2) % LOCATIONS, a.qty)
                     for a in allocs]
            by_line = {a.line_id: 0 for a in allocs}
            for a in moved:
                by_line[a.line_id] += a.qty
            lines = [LineState(line_id=str(i), sku=sku, qty=qty, allocated=by_line.get(str(i), 0),
                               backordered=qty - by_line.get(str(i), 0))
                     for i, (sku, qty) in enumerate(wanted, 1)]
            return OrderReallocated(order_id=order_id, version=2, change="reallocated", lines=lines,
                                    allocations=moved)
        gone = allocs[0].line_id if allocs else "1"
        kept = [a for a in allocs if a.line_id != gone]
        by_line = {}
        for a in kept:
            by_line[a.line_id] = by_line.get(a.line_id, 0) + a.qty
        lines = [LineState(line_id=str(i), sku=sku, qty=qty, allocated=by_line.get(str(i), 0),
                           backordered=qty - by_line.get(str(i), 0),
                           backorder_reason="released" if str(i) == gone else None)
                 for i, (sku, qty) in enumerate(wanted, 1)]
        return AllocationReleased(order_id=order_id, version=2, change="released", detail="stock shrink",
                                  lines=lines, allocations=kept)

    def batches(self, orders: int, batch: int, later: float) -> list[list[bytes]]:
        """Batches of ``batch`` records; from the second batch on, a share ``later`` are version-2
        results of orders mirrored in an earlier batch."""
        out: list[list[bytes]] = []
        seq = 0
        seen: list[str] = []
        while seq < orders:
            records: list[bytes] = []
            again = int(batch * later) if seen else 0
            for order_id in self.rng.sample(seen, min(again, len(seen))):
                records.append(_encoded(self.later_result(order_id)))
                seen.remove(order_id)  # one later result per order
            fresh = []
            while len(records) < batch and seq < orders:
                r = self.first_result(seq)
                records.append(_encoded(r))
                fresh.append(r.order_id)
                seq += 1
            self.rng.shuffle(records)
            out.append(records)
            seen += fresh
        return out


async def _written(worker: AsyncEngine, probe: AsyncEngine) -> tuple[int, int]:
    """(WAL position in bytes, rows inserted + updated + deleted in SCHEMA so far). The worker's
    connections are closed first: a backend flushes its table counts when it exits."""
    await worker.dispose()
    rows = -1
    async with probe.connect() as conn:
        for _ in range(50):  # until the closed backends' counts have arrived
            await asyncio.sleep(0.2)
            await conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            now = int((await conn.execute(text(
                "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
                " WHERE schemaname = :s"), {"s": SCHEMA})).scalar_one())
            if now == rows:
                break
            rows = now
        lsn = int((await conn.execute(text("SELECT pg_current_wal_lsn() - '0/0'"))).scalar_one())
        await conn.rollback()
    return lsn, rows


async def run(orders: int, batch: int, skus: int, later: float, profile: str | None, database_url: str,
              pg_pid: int | None, gc_threshold: int) -> None:
    engine = create_engine(database_url, schema=SCHEMA, pool_size=2)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    run_id = uuid.uuid4().hex[:6]
    sku_ids = [f"{run_id}-S{i:05d}" for i in range(skus)]
    batches = _Orders(run_id, sku_ids).batches(orders, batch, later)
    if gc_threshold:  # as the service host does once it is ready
        tune_garbage_collector(gc_threshold)
    warm, timed = batches[:2], batches[2:]
    for records in warm:
        async with engine.begin() as conn:
            await apply_allocation_results(conn, [decode_event(raw) for raw in records])

    probe = create_engine(database_url, schema=SCHEMA, pool_size=1)
    wal0, rows0 = await _written(engine, probe)
    meter = BatchMeter(pg_pid, profile)

    async def step(records: list[bytes]) -> None:
        # as the subscriber does: decode each raw value (decode_envelope), one transaction per batch
        messages = [decode_event(raw) for raw in records]
        async with engine.begin() as conn:
            await apply_allocation_results(conn, messages)

    line = await meter.timed("results", timed, step)
    wal1, rows1 = await _written(engine, probe)
    await probe.dispose()
    n = sum(len(b) for b in timed)
    print(f"fulfillment hot path: {sum(len(b) for b in timed)} allocation results in batches of {batch}"
          f" ({later:.0%} later snapshots), {skus} SKUs x {LOCATIONS} locations")
    print(line)
    print(f"  PostgreSQL wrote {(wal1 - wal0) / n:.0f} WAL bytes/order, {(rows1 - rows0) / n:.2f} rows/order")
    meter.dump()
    await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = arguments("python -m bench.hotpath_fulfillment", __doc__)
    ap.add_argument("--later", type=float, default=0.05, help="share of records that are later snapshots")
    args = ap.parse_args(argv)
    with database() as (url, pid):
        asyncio.run(run(args.orders, args.batch, args.skus, args.later, args.profile, url,
                        pid, args.gc_threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
