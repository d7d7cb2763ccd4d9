"""CPU per order of allocation's batch use case, in this process, against a real PostgreSQL and
no broker: the yardstick for one change to allocation's hot path on a shared machine.

``oms bench`` measures the whole system, and its throughput moves with whatever else runs on the
two cores. This measures only the work a change touches: decode a batch of OrderPlaced records,
run ``apply_events`` in one transaction (inbox claim, locked slice, book, bulk writes, outbox
rows), commit. Process CPU time is what it reports (this process: the service's Python; the
PostgreSQL server processes: the database's share), which other load disturbs far less than
orders per second. The outbox relay is not run (its rows stay in the table).

    python -m bench.hotpath --orders 6000 --batch 500 [--profile allocation.pstats]

Workload: the steady scenario's mix (1-5 lines of Zipf-popular SKUs, 1-2 units each) over
``--skus`` SKUs stocked in five locations, so nearly every line is allocated.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench.workload import Workload
from libs.contracts import decode_event, encode_event
from libs.contracts.envelope import EventMessage, new_envelope
from libs.contracts.events import LocationChanged, OrderLine, OrderPlaced, StockAdjusted
from libs.contracts.orders import Address, Customer
from libs.database.engine import create_engine
from libs.database.migrations import upgrade_schema
from libs.embedded import EmbeddedPostgres
from libs.service_host.host import HostSettings, tune_garbage_collector
from services.allocation.adapters.tables import SCHEMA
from services.allocation.service_layer.allocating import apply_events

LOCATIONS = 5
VERSIONS = Path(__file__).resolve().parents[1] / "services" / "allocation" / "adapters" / "migrations" / "versions"


@contextmanager
def database() -> Iterator[tuple[str, int | None]]:
    """(url, PostgreSQL's pid): OMS_DATABASE_URL when set (its CPU is not measured), else an
    embedded server in a temporary directory that is removed afterwards."""
    url = os.environ.get("OMS_DATABASE_URL", "")
    if url:
        yield url, None
        return
    from services.cli.launcher import free_port

    with tempfile.TemporaryDirectory(prefix="oms-hotpath-") as tmp:
        pg = EmbeddedPostgres(Path(tmp) / "pgdata", port=free_port()).start()
        try:
            yield pg.url, pg.process.pid if pg.process else None
        finally:
            pg.stop()


def _encoded(event: OrderPlaced | StockAdjusted | LocationChanged) -> bytes:
    return encode_event(new_envelope(event, source="bench", correlation_id=uuid.uuid4().hex))


def _orders(run: str, skus: list[str], n: int) -> list[bytes]:
    wl = Workload("mix", run, skus, zipf_s=0.8, max_lines=5, max_qty=2)
    now = datetime.now(UTC)
    out = []
    for seq in range(n):
        out.append(_encoded(OrderPlaced(
            order_id=f"ord-{run}-{seq}", channel="bench", external_id=f"{run}-{seq}", placed_at=now, currency="EUR",
            customer=Customer(), ship_to=Address(country="DE"),
            lines=[OrderLine(line_id=str(i), sku=sku, qty=qty, unit_price="1.00")  # type: ignore[arg-type]
                   for i, (sku, qty) in enumerate(wl.lines(seq), 1)],
        )))
    return out


def _postgres_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                t = p.cpu_times()
                total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def arguments(prog: str, doc: str | None, *, orders: bool = True) -> argparse.ArgumentParser:
    """The options every hot-path yardstick takes (``orders``: also --orders, --batch, --skus)."""
    ap = argparse.ArgumentParser(prog=prog, description=(doc or "").split("\n\n")[0])
    if orders:
        ap.add_argument("--orders", type=int, default=6000)
        ap.add_argument("--batch", type=int, default=500)
        ap.add_argument("--skus", type=int, default=2000)
    ap.add_argument("--profile", help="write a cProfile of the timed batches here")
    ap.add_argument("--gc-threshold", type=int, default=HostSettings.model_fields["gc_threshold"].default,
                    help="young-generation threshold as the service sets it (0: leave CPython's default)")
    return ap


class BatchMeter:
    """Times batches of a use case: this process's CPU per order (median batch too), PostgreSQL's
    CPU (its processes' CPU time, when the database is the embedded one) and wall time, and a
    cProfile of the timed batches when asked."""

    def __init__(self, pg_pid: int | None, profile: str | None) -> None:
        self.pg_pid, self.profile = pg_pid, profile
        self.profiler = cProfile.Profile() if profile else None

    async def timed(self, name: str, batches: list[list[Any]], step: Callable[[list[Any]], Awaitable[None]]) -> str:
        per_batch: list[float] = []
        pids = [self.pg_pid] if self.pg_pid else []
        pg0, cpu0, wall0 = _postgres_cpu(pids), time.process_time(), time.perf_counter()
        for b in batches:
            b0 = time.process_time()
            if self.profiler:
                self.profiler.enable()
            await step(b)
            if self.profiler:
                self.profiler.disable()
            per_batch.append((time.process_time() - b0) * 1000 / len(b))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        pg = _postgres_cpu(pids) - pg0
        n = sum(len(b) for b in batches)
        return (f"  {name:<9} service CPU {cpu * 1000 / n:.3f} ms/order (median batch {statistics.median(per_batch):.3f}),"
                " PostgreSQL CPU " + (f"{pg * 1000 / n:.3f} ms/order" if pids else "not measured (external database)")
                + f", wall {wall * 1000 / n:.3f} ms/order")

    def dump(self) -> None:
        if self.profiler and self.profile:
            self.profiler.dump_stats(self.profile)
            print(f"  profile: {self.profile}")


async def run(orders: int, batch: int, skus: int, profile: str | None, database_url: str, pg_pid: int | None,
              gc_threshold: int) -> None:
    engine = create_engine(database_url, schema=SCHEMA, pool_size=2)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    run_id = uuid.uuid4().hex[:6]
    sku_ids = [f"{run_id}-S{i:05d}" for i in range(skus)]
    setup: list[bytes] = [_encoded(LocationChanged(location_id=f"{run_id}-L{i}", name=f"L{i}", country="DE",
                                                   ships_to=["DE"], priority=i)) for i in range(LOCATIONS)]
    now = datetime.now(UTC)
    setup += [_encoded(StockAdjusted(sku=s, location_id=f"{run_id}-L{i}", bin="A", delta=orders, on_hand=orders,
                                     seq=1, reason="receipt", received_at=now))
              for s in sku_ids for i in range(LOCATIONS)]
    for i in range(0, len(setup), 2000):
        async with engine.begin() as conn:
            await apply_events(conn, [decode_event(raw) for raw in setup[i:i + 2000]])
    records = _orders(run_id, sku_ids, orders)
    if gc_threshold:  # as the service host does once it is ready
        tune_garbage_collector(gc_threshold)
    warm, timed = records[:batch * 2], records[batch * 2:]
    for i in range(0, len(warm), batch):
        async with engine.begin() as conn:
            await apply_events(conn, [decode_event(raw) for raw in warm[i:i + batch]])

    meter = BatchMeter(pg_pid, profile)

    async def step(batch_records: list[bytes]) -> None:
        messages: list[EventMessage] = [decode_event(raw) for raw in batch_records]
        async with engine.begin() as conn:
            await apply_events(conn, messages)

    line = await meter.timed("orders", [timed[i:i + batch] for i in range(0, len(timed), batch)], step)
    print(f"allocation hot path: {len(timed)} orders in batches of {batch}, {skus} SKUs x {LOCATIONS} locations")
    print(line)
    meter.dump()
    await engine.dispose()


def main(argv: list[str] | None = None) -> int:
    ap = arguments("python -m bench.hotpath", __doc__)
    args = ap.parse_args(argv)
    with database() as (url, pid):
        asyncio.run(run(args.orders, args.batch, args.skus, args.profile, url,
                        pid, args.gc_threshold))
    return 0


if __name__ == "__main__":
    sys.exit(main())
