"""One benchmark run (SPEC section 7) on one machine with the broker, PostgreSQL, the four
services and a separate load-generator process together.

Scenarios: ``steady``, ``flash-sale``, ``backorder-refill``, ``stock-shrink``, one class each in
``bench/scenarios.py`` (see docs/benchmark.md). Each run:

1. starts the system (embedded broker and PostgreSQL unless OMS_KAFKA_BOOTSTRAP /
   OMS_DATABASE_URL are set) or uses a running ``System`` handed in;
2. measures the transport ceiling: the same load through two bare relay processes on the same
   broker (same hops, same message sizes, no database);
3. seeds locations and stock through the inventory HTTP API and waits until allocation has
   consumed it (consumer lag 0);
4. drives the scenario's phases through the real ingress (oms.channel-orders.v1) from the load
   generator process, measuring each order's first allocation result on oms.allocations.v1;
5. checks correctness (a fast wrong run is a failure: exit code 1) and writes JSON, Markdown,
   a PNG chart and a HISTORY.md line into ``--out``.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.measure import (
    LINE_STATES,
    FirstResult,
    ProcessMeter,
    ResultCollector,
    phase_stats,
    wait_lag_zero,
)
from bench.report import budget_rows, judge, machine_facts, write_all
from bench.scenarios import LOCATIONS, SCENARIOS, Phase, Scenario
from bench.workload import Workload
from libs.contracts import ALL_TOPICS, Topic
from libs.messaging.kafka import ensure_topics
from libs.messaging.settings import KafkaSettings
from services.cli.launcher import SERVICES, STAFF_HEADERS, System

# OMS_BENCH_PG_STATEMENTS=1: load pg_stat_statements into the embedded PostgreSQL and write its top
# statements after the load phases (pg_statements.txt): where the database's share goes.
STATEMENTS = os.environ.get("OMS_BENCH_PG_STATEMENTS", "") == "1"

RELAY_SEQ_BASE = 900_000_000
# The folder that holds bench/: the load generator and relay processes import from it.
SOURCE_ROOT = Path(__file__).resolve().parents[1]


@asynccontextmanager
async def _postgres(url: str) -> AsyncIterator[asyncpg.Connection]:
    """A plain asyncpg connection to the system's database (``url`` as the services take it)."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        yield conn
    finally:
        await conn.close()


class BenchFailure(RuntimeError):
    """The run could not be completed (the system did not answer in time, a call failed)."""


@dataclass
class Bench:
    """One benchmark run. ``system``: a running System to use (its services stay up)."""

    scenario: str
    smoke: bool = False
    orders: int | None = None
    rate: float | None = None
    out: Path = Path("bench-results")
    workdir: Path | None = None
    system: System | None = None
    ports: dict[str, int] = field(default_factory=lambda: dict(SERVICES))
    kafka_port: int = 19092
    pg_port: int = 15432
    relay: bool = True
    note: str = ""  # what the run is for (before/after which change): kept in HISTORY.md
    say: Callable[[str], None] = print

    run_id: str = field(default_factory=lambda: "b" + uuid.uuid4().hex[:6])
    # Sequence numbers are unique across runs (the correlation id is bench:<seq>:<ns>), so a late
    # result of an earlier run on the same broker can never pass for one of this run.
    seq_base: int = field(default_factory=lambda: (1 + secrets.randbelow(9_000_000)) * 1_000_000_000)
    problems: list[str] = field(default_factory=list)
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    on_hand: dict[tuple[str, str, str, str], int] = field(default_factory=dict)  # seeded, then adjusted
    bench_skus: set[str] = field(default_factory=set)
    kind: Scenario = field(init=False)  # what SCENARIOS names ``scenario``

    # --- the run ------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; one of: {', '.join(SCENARIOS)}")
        self.kind = SCENARIOS[self.scenario]()
        started = datetime.now(UTC)
        self.load_at_start = [round(x, 2) for x in os.getloadavg()]
        own_system = self.system is None
        workdir = self.workdir or Path(tempfile.mkdtemp(prefix="oms-bench-"))
        if own_system:
            self.system = System(workdir=workdir, ports=self.ports, log_to=None)
            if STATEMENTS:
                # and every lock wait over 5 ms in postgres.log (summed up by ``lock_waits``)
                self.system.pg_settings = {"shared_preload_libraries": "pg_stat_statements",
                                           "log_lock_waits": "on", "deadlock_timeout": "5ms"}
        system = self.system
        assert system is not None
        try:
            if own_system:
                self.say(f"starting infrastructure (logs in {workdir})")
                system.start_infra(kafka_port=self.kafka_port, pg_port=self.pg_port, fresh=True)
            asyncio.run(self._run(system, workdir, own_system))
        except BenchFailure as exc:
            self.problems.append(f"run aborted: {exc}")
        finally:
            if own_system:
                system.stop()
                if self.workdir is None:
                    # The run's database is thrown away with the run (1.5 GB after `steady`): dozens
                    # of runs filled a disk. The logs and workload files beside it stay.
                    shutil.rmtree(workdir / "pgdata", ignore_errors=True)
        return self._result(started, system)

    async def _run(self, system: System, workdir: Path, own_system: bool) -> None:
        self.bootstrap = system.kafka_bootstrap
        self.broker_kind = f"embedded Tansu {self.bootstrap}" if system.embedded_kafka else self.bootstrap
        self.workdir_ = workdir
        self.http = httpx.AsyncClient(timeout=60.0, headers=STAFF_HEADERS)
        try:
            if self.relay:
                await self._relay_phases()
            if own_system:
                self.say("starting the four services")
                await asyncio.to_thread(system.start_all, 180)
            await self._scenario(system)
        finally:
            await self.http.aclose()

    # --- the scenario's plan -------------------------------------------------------------------
    def _plan(self) -> list[Phase]:
        return self.kind.phases(self)

    def group(self, service: str, topic: str) -> str:
        """The consumer group a service uses for ``topic`` (services append OMS_KAFKA_GROUP_SUFFIX)."""
        assert self.system is not None
        suffix = self.system.extra_env.get("OMS_KAFKA_GROUP_SUFFIX", os.environ.get("OMS_KAFKA_GROUP_SUFFIX", ""))
        per_topic = os.environ.get("OMS_KAFKA_CONSUMER_PER_TOPIC", "").lower() in ("1", "true", "yes")
        return f"oms-{service}{suffix}" + (f".{topic}" if per_topic else "")  # docs/decisions.md 2

    def seqs(self, offset: int, count: int) -> range:
        return range(self.seq_base + offset, self.seq_base + offset + count)

    # --- transport ceiling ------------------------------------------------------------------------
    async def _relay_phases(self) -> None:
        phases = [p for p in self._plan()]
        src, mid, dst = (f"bench.{self.run_id}.{n}" for n in ("channel-orders", "orders", "allocations"))
        await ensure_topics(KafkaSettings(bootstrap=self.bootstrap), [src, mid, dst])
        self.say("transport ceiling: bare relay, 2 hops, same broker")
        assert self.system is not None
        procs = []
        for hop, a, b in (("intake", src, mid), ("allocation", mid, dst)):
            procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.relay", "--bootstrap", self.bootstrap, "--hop", hop,
                "--source", a, "--target", b, "--group", f"bench.{self.run_id}.relay-{hop}",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                env=_importable(self.system.env_for("relay", 0)),  # the services' Kafka settings, read the same way
            ))
        collector = ResultCollector(self.bootstrap, dst)
        try:
            for proc in procs:
                line = await asyncio.wait_for(proc.stdout.readline(), 60)  # type: ignore[union-attr]
                if b"ready" not in line:
                    raise BenchFailure(f"relay did not start: {line!r}")
            await collector.start()
            meter = self._meter({"relay-intake": (procs[0].pid, False), "relay-allocation": (procs[1].pid, False)})
            for i, phase in enumerate(phases):
                seqs = self.seqs(RELAY_SEQ_BASE + i * 10_000_000, len(phase.seqs))
                t0 = time.monotonic()
                if phase.measure:
                    meter.begin()
                gen = await self._loadgen(src, phase.workload, seqs, phase.rate)
                if not await collector.wait_for(seqs, idle_timeout=20):
                    raise BenchFailure(f"relay lost orders in {phase.name}")
                if phase.measure:
                    stats = phase_stats([collector.first[s] for s in seqs])
                    self.phases.setdefault(phase.name, {})["relay"] = stats
                    self.phases[phase.name]["relay_processes"] = meter.end(time.monotonic() - t0)
                    self.phases[phase.name]["relay_loadgen"] = gen
                    self.say(f"  relay {phase.name}: {stats['orders_per_s']:,.0f} orders/s, "
                             f"p99 {stats['latency_ms']['p99']:.0f} ms")
        finally:
            await collector.stop()
            for proc in procs:
                if proc.returncode is None:
                    proc.terminate()
            for proc in procs:
                try:
                    await asyncio.wait_for(proc.wait(), 15)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()

    # --- load generator -------------------------------------------------------------------------
    async def _loadgen(self, topic: str, workload: Workload, seqs: range, rate: float | None) -> dict[str, Any]:
        wl_file = self.workdir_ / f"workload-{uuid.uuid4().hex[:8]}.json"
        wl_file.write_bytes(orjson.dumps(workload.to_json()))
        summary = wl_file.with_suffix(".summary.json")
        args = [sys.executable, "-m", "bench.loadgen", "--bootstrap", self.bootstrap,
                "--topic", topic, "--workload", str(wl_file), "--seq-start", str(seqs.start),
                "--orders", str(len(seqs)), "--summary", str(summary)]
        if rate:
            args += ["--rate", str(rate)]
        proc = await asyncio.create_subprocess_exec(*args, env=_importable(dict(os.environ)))
        if await proc.wait() != 0:
            raise BenchFailure(f"load generator exited with {proc.returncode}")
        return orjson.loads(summary.read_bytes())

    # --- seeding ----------------------------------------------------------------------------------
    async def call(self, method: str, service: str, path: str, **kw: Any) -> Any:
        assert self.system is not None
        resp = await self.http.request(method, self.system.url(service) + path, **kw)
        if resp.status_code >= 400:
            raise BenchFailure(f"{method} {service}{path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json() if resp.content else None

    def locations(self) -> list[str]:
        return [f"{self.run_id}-WH{i + 1}" for i in range(LOCATIONS)]

    async def _seed(self, stock: dict[str, int]) -> None:
        t0 = time.monotonic()
        for i, loc in enumerate(self.locations()):
            await self.call("POST", "inventory", "/v1/locations", json={
                "location_id": loc, "name": f"Bench warehouse {i + 1}", "kind": "warehouse", "country": "DE",
                "lat": 48.0 + i, "lon": 8.0 + i, "ships_to": ["DE"], "priority": LOCATIONS - i, "active": True})
        per_location: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for sku, units in stock.items():
            self.bench_skus.add(sku)
            locs = self.locations() if units >= LOCATIONS * 2 else self.locations()[:1]
            share, rest = divmod(units, len(locs))
            for j, loc in enumerate(locs):
                qty = share + (1 if j < rest else 0)
                if qty > 0:
                    per_location[loc].append({"sku": sku, "bin": "A-01", "lot": "", "qty": qty})
                    self.on_hand[(sku, loc, "A-01", "")] = qty
        lines_total, requests = 0, 0
        sem = asyncio.Semaphore(2)

        async def receipt(loc: str, n: int, chunk: list[dict[str, Any]]) -> None:
            async with sem:
                await self.call("POST", "inventory", "/v1/receipts",
                                 json={"location_id": loc, "reference": f"{self.run_id}-GRN-{n}", "lines": chunk})

        jobs = []
        for loc, lines in per_location.items():
            for k in range(0, len(lines), 2_000):
                chunk = lines[k:k + 2_000]
                jobs.append(receipt(loc, requests, chunk))
                requests += 1
                lines_total += len(chunk)
        await asyncio.gather(*jobs)
        self.say(f"seeded {LOCATIONS} locations, {lines_total:,} positions in {requests} receipts; "
                 "waiting for allocation to consume them")
        waited = await wait_lag_zero(self.bootstrap, self.group("allocation", Topic.INVENTORY), Topic.INVENTORY,
                                     say=self.say)
        self.extra["seeding"] = {"positions": lines_total, "receipts": requests,
                                 "seconds": round(time.monotonic() - t0, 1),
                                 "allocation_catch_up_s": round(waited, 1)}

    # --- the measured part ------------------------------------------------------------------------
    async def _scenario(self, system: System) -> None:
        phases = self._plan()
        await self._seed(self.kind.stock(self, phases))
        collector = ResultCollector(self.bootstrap, Topic.ALLOCATIONS)
        await collector.start()
        self.collector = collector
        roots = {sp.label: (sp.process.pid, True) for sp in system.processes}
        if system.embedded_kafka and system.embedded_kafka.process:
            roots["broker"] = (system.embedded_kafka.process.pid, False)
        if system.embedded_pg and system.embedded_pg.process:
            roots["postgresql"] = (system.embedded_pg.process.pid, True)
        meter = self._meter(roots)
        try:
            t_load = None
            wal_at_start: dict[str, int] | None = None
            for phase in phases:
                if phase.measure and t_load is None:
                    meter.begin()
                    t_load = time.monotonic()
                    wal_at_start = await self._wal(system)
                self.say(f"phase {phase.name}: {len(phase.seqs):,} orders "
                         + (f"at {phase.rate:g}/s" if phase.rate else "at full speed"))
                phase_meter, t_phase = self._meter(roots), time.monotonic()  # is this phase CPU-bound?
                phase_meter.begin()
                gen = await self._loadgen(Topic.CHANNEL_ORDERS, phase.workload, phase.seqs, phase.rate)
                complete = await collector.wait_for(phase.seqs, idle_timeout=60 if not self.smoke else 45)
                self._services_alive(system)
                got = [collector.first[s] for s in phase.seqs if s in collector.first]
                if not complete:
                    self.problems.append(f"{phase.name}: {len(phase.seqs) - len(got)} of {len(phase.seqs)} orders "
                                         "got no allocation result")
                self._check_first_results(phase, got)
                if phase.measure:
                    stats = phase_stats(got)
                    entry = self.phases.setdefault(phase.name, {})
                    entry.update(services=stats, offered=phase.rate or "max", loadgen=gen)
                    self._ratio(entry)
                    used = phase_meter.end(time.monotonic() - t_phase)
                    entry["cpu_cores"] = {name: v["cpu_cores"] for name, v in used.items()}
                    if stats.get("orders"):
                        self.say(f"  {stats['orders_per_s']:,.0f} orders/s, {stats['lines_per_s']:,.0f} lines/s, "
                                 f"p50 {stats['latency_ms']['p50']:.0f} / p99 {stats['latency_ms']['p99']:.0f} ms")
                    self.say("  CPU cores: " + ", ".join(f"{k} {v:.2f}" for k, v in entry["cpu_cores"].items())
                             + f" (together {sum(entry['cpu_cores'].values()):.2f} of {os.cpu_count()};"
                             " the load generator and this process not counted)")
                if phase.name == "warm-up":
                    await collector.quiet(0.5)
            await self.kind.after_load(self, phases[-1])
            self.resources = meter.end(time.monotonic() - (t_load or time.monotonic()))
            if t_load is not None:
                self._wal_used(wal_at_start, await self._wal(system), sum(len(p.seqs) for p in phases if p.measure))
            if STATEMENTS and system.embedded_pg:
                await self._top_statements(system.database_url)
            await self._settle()
            await self._check_settled(phases)
            await self._records_by_topic()
        finally:
            await collector.stop()

    async def _records_by_topic(self) -> None:
        """Records each topic holds at the end (the broker started empty: seeding and warm-up
        included), and per order checked: how many handlings an order costs on the broker. The
        sum of end offsets: exact on Apache Kafka; the embedded Tansu seems to leave out each
        partition's last batch (a lower bound, within ~6 % in ``steady``)."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap)
        await consumer.start()
        try:
            await consumer.topics()  # metadata, so the partitions are known
            parts = [TopicPartition(t, p) for t in ALL_TOPICS for p in sorted(consumer.partitions_for_topic(t) or ())]
            ends = await consumer.end_offsets(parts) if parts else {}
        finally:
            await consumer.stop()
        records: dict[str, int] = defaultdict(int)
        for tp, end in ends.items():
            records[tp.topic] += end
        orders = self.extra.get("checks", {}).get("orders_checked") or 1
        self.extra["records"] = {t: n for t, n in sorted(records.items()) if n}
        self.say("records on the broker (whole run), per order checked: " + ", ".join(
            f"{t} {n:,} ({n / orders:.2f})" for t, n in self.extra["records"].items()))

    async def _wal(self, system: System) -> dict[str, int] | None:
        """PostgreSQL's WAL counters (records, full-page images, bytes) and checkpoints so far,
        on the embedded server the bench started (another server's counters include other work)."""
        if not system.embedded_pg:
            return None
        async with _postgres(system.database_url) as conn:
            wal = await conn.fetchrow("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")
            cp = await conn.fetchrow("SELECT num_timed + num_requested AS checkpoints FROM pg_stat_checkpointer")
        return {"records": int(wal["wal_records"]), "fpi": int(wal["wal_fpi"]), "bytes": int(wal["wal_bytes"]),
                "checkpoints": int(cp["checkpoints"])}

    def _wal_used(self, start: dict[str, int] | None, end: dict[str, int] | None, orders: int) -> None:
        """What the measured phases wrote to PostgreSQL's WAL, per order offered: every row write
        is a WAL record, and the first change of a page after a checkpoint copies the whole page."""
        if start is None or end is None or not orders:
            return
        used = {k: end[k] - start[k] for k in end}
        self.extra["wal"] = {
            "bytes_per_order": round(used["bytes"] / orders), "records_per_order": round(used["records"] / orders, 1),
            "full_page_images_per_order": round(used["fpi"] / orders, 2), "checkpoints": used["checkpoints"],
        }
        w = self.extra["wal"]
        self.say(f"PostgreSQL WAL in the measured phases, per order: {w['bytes_per_order']:,} bytes,"
                 f" {w['records_per_order']} records, {w['full_page_images_per_order']} full-page images;"
                 f" {w['checkpoints']} checkpoints")

    async def _top_statements(self, url: str) -> None:
        """OMS_BENCH_PG_STATEMENTS=1: the statements PostgreSQL spent the run on (pg_stat_statements,
        since the server started: seeding included), into pg_statements.txt of the run's directory."""
        async with _postgres(url) as conn:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            rows = await conn.fetch(
                "SELECT round(total_exec_time) AS ms, calls, rows, round(wal_bytes / 1e6) AS wal_mb,"
                " round(100 * total_exec_time / sum(total_exec_time) OVER ()) AS pct, left(regexp_replace(query,"
                " '\\s+', ' ', 'g'), 160) AS query FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 40")
            # Tables read whole: a lookup planned as a sequential scan (no statistics yet, or a
            # generic plan) costs more with every row the table gains.
            scans = await conn.fetch(
                "SELECT schemaname || '.' || relname AS t, seq_scan, seq_tup_read, idx_scan, n_live_tup,"
                " autoanalyze_count FROM pg_stat_user_tables WHERE seq_tup_read > 100000 ORDER BY seq_tup_read DESC")
            # Row writes per table, and how many updates were HOT (no new index entries: possible
            # only when no indexed column changes and the row's page has room).
            writes = await conn.fetch(
                "SELECT schemaname || '.' || relname AS t, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del"
                " FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 10000"
                " ORDER BY n_tup_ins + n_tup_upd + n_tup_del DESC")
        lines = [f"{r['pct']:>3}% {r['ms']:>8} ms {r['calls']:>8} calls {r['rows']:>9} rows {r['wal_mb']:>6} MB WAL  {r['query']}"
                 for r in rows]
        lines += [f"row writes: {r['t']} inserted {r['n_tup_ins']:,}, updated {r['n_tup_upd']:,}"
                  f" ({round(100 * r['n_tup_hot_upd'] / max(r['n_tup_upd'], 1))} % HOT), deleted {r['n_tup_del']:,}"
                  for r in writes]
        lines += [f"sequential scans: {r['t']} {r['seq_scan']} scans read {r['seq_tup_read']:,} rows"
                  f" (index scans {r['idx_scan']}, {r['n_live_tup']:,} rows now, analyzed {r['autoanalyze_count']}x)"
                  for r in scans]
        log = self.workdir_ / "postgres.log"
        lines += lock_waits(log.read_text(errors="replace")) if log.exists() else []
        (self.workdir_ / "pg_statements.txt").write_text("\n".join(lines) + "\n")
        self.say("PostgreSQL's top statements (pg_stat_statements):\n  " + "\n  ".join(lines[:25] + lines[len(rows):]))

    def _services_alive(self, system: System) -> None:
        dead = [f"{sp.label} (exit code {sp.process.returncode})" for sp in system.processes
                if sp.process.poll() is not None]
        if dead:
            raise BenchFailure("service process ended during the run: " + ", ".join(dead))

    def _meter(self, roots: dict[str, tuple[int, bool]]) -> ProcessMeter:
        return ProcessMeter(roots)

    def _ratio(self, entry: dict[str, Any]) -> None:
        st, relay = entry.get("services") or {}, entry.get("relay") or {}
        if st.get("orders") and relay.get("orders"):
            entry["ratio"] = {
                "orders_per_s": round(st["orders_per_s"] / relay["orders_per_s"], 3),
                "p99": round(st["latency_ms"]["p99"] / max(relay["latency_ms"]["p99"], 0.001), 1),
            }

    # --- correctness -----------------------------------------------------------------------------
    def _check_first_results(self, phase: Phase, got: list[FirstResult]) -> None:
        bad = 0
        for r in got:
            want = sorted(phase.workload.lines(r.seq))
            have = sorted((sku, qty) for sku, qty, _, _ in r.lines)
            split_ok = all(a + b == q for _, q, a, b in r.lines)
            if want != have or not split_ok:
                bad += 1
                if bad <= 5:
                    self.problems.append(f"{phase.name}: order seq {r.seq} ({r.order_id}) first result "
                                         f"lines {r.lines} vs ordered {want}: allocated + backordered != qty")
        if bad > 5:
            self.problems.append(f"{phase.name}: {bad} first results in all broke allocated + backordered = qty")
        self.kind.check_first_results(self, phase, got)

    async def _settle(self) -> None:
        """Until allocation has consumed everything and no result arrived for a second."""
        for group, topic in ((self.group("allocation", Topic.ORDERS), Topic.ORDERS),
                             (self.group("allocation", Topic.INVENTORY), Topic.INVENTORY)):
            try:
                await wait_lag_zero(self.bootstrap, group, topic, limit_s=120)
            except TimeoutError as exc:
                self.problems.append(f"not settled: {exc}")
        await self.collector.quiet(1.0)

    async def _check_settled(self, phases: list[Phase]) -> None:
        c = self.collector
        # 1. Conservation per order line on the newest snapshot of every benchmark order.
        bench_orders = {c.first[s].order_id for p in phases for s in p.seqs if s in c.first}
        broken = 0
        reserved: dict[tuple[str, str, str, str], int] = defaultdict(int)
        for order_id in bench_orders:
            snap = c.latest[order_id]
            for ln in snap.lines:
                if sum(ln.get(k, 0) for k in LINE_STATES) != ln["qty"]:
                    broken += 1
                    if broken <= 5:
                        self.problems.append(f"order {order_id} line {ln['line_id']}: states "
                                             f"{ {k: ln.get(k, 0) for k in LINE_STATES} } do not add up to "
                                             f"qty {ln['qty']}")
            for a in snap.allocations:
                if a.get("status", "allocated") in ("allocated", "packed"):
                    reserved[(a["sku"], a["location_id"], a["bin"], a.get("lot", ""))] += a["qty"]
        # 2. No position oversold, from the snapshots against the stock the benchmark put there.
        oversold = [(k, r, self.on_hand.get(k, 0)) for k, r in reserved.items() if r > self.on_hand.get(k, 0)]
        for k, r, oh in oversold[:5]:
            self.problems.append(f"oversold (from allocation snapshots): {k} reserved {r} > on_hand {oh}")
        if len(oversold) > 5:
            self.problems.append(f"{len(oversold)} positions oversold in all")
        # 3. The allocation service's own stock report (per SKU totals), every SKU of this run.
        rows = await self._stock_report()
        for row in rows:
            on_hand, res = int(row.get("on_hand", 0)), int(row.get("reserved", 0))
            if res > on_hand:
                self.problems.append(f"oversold (allocation stock report): {row['sku']} reserved {res} > "
                                     f"on_hand {on_hand}")
            self.kind.check_report_row(self, row, res)
        missing = self.bench_skus - {r["sku"] for r in rows}
        if missing:
            self.problems.append(f"stock report lacks {len(missing)} SKUs of this run (e.g. {sorted(missing)[:3]})")
        foreign = sum(1 for _, order_id, _ in c.arrivals if order_id not in bench_orders)
        self.extra["checks"] = {"orders_checked": len(bench_orders), "positions_with_reservations": len(reserved),
                                "stock_report_skus": len(rows), "oversold_positions": len(oversold),
                                "results_seen": c.results_seen, "results_for_other_orders": foreign}

    async def _stock_report(self) -> list[dict[str, Any]]:
        """Every row of allocation's stock report for this run's SKUs (paged)."""
        assert self.system is not None
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            try:
                resp = await self.http.get(self.system.url("allocation") + "/v1/reports/stock",
                                           params={"limit": 10_000, "offset": offset})
            except httpx.HTTPError as exc:
                self.problems.append(f"stock report: {exc}")
                return out
            if resp.status_code != 200:
                self.problems.append(f"stock report: HTTP {resp.status_code} {resp.text[:200]}")
                return out
            body = resp.json()
            page = body if isinstance(body, list) else body.get("skus") or body.get("rows") or []
            out += [r for r in page if r.get("sku") in self.bench_skus]
            if len(page) < 10_000:
                return out
            offset += len(page)

    # --- result -----------------------------------------------------------------------------------
    def _result(self, started: datetime, system: System) -> dict[str, Any]:
        resources = getattr(self, "resources", {})
        measures: dict[str, float] = {}
        if not self.smoke and not self.problems:
            fs = self.phases.get("full-speed", {}).get("services", {})
            if fs.get("orders"):
                measures["sustained_orders_per_s"] = fs["orders_per_s"]
            r1 = self.phases.get("rate-1000", {}).get("services", {})
            if r1.get("orders"):
                measures["p99_ms_at_1000"] = r1["latency_ms"]["p99"]
            r5 = self.phases.get("rate-500", {}).get("services", {})
            if r5.get("orders"):
                measures["p99_ms_at_500"] = r5["latency_ms"]["p99"]  # reported, no target of its own
            fl = self.phases.get("flash-sale", {}).get("services", {})
            if fl.get("orders"):
                measures["flash_sale_orders_per_s"] = fl["orders_per_s"]
            rf = self.phases.get("refill", {}).get("services", {})
            if rf.get("lines"):
                measures["refill_lines_per_s"] = rf["lines_per_s"]
            svc = [r["peak_rss_mb"] for n, r in resources.items() if n.split("#")[0] in SERVICES]
            if svc:
                measures["max_service_rss_mb"] = max(svc)
        correct = not self.problems
        result: dict[str, Any] = {
            "scenario": self.scenario,
            "note": self.note,
            "run_id": self.run_id,
            "started_at": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "started_at_compact": started.strftime("%Y%m%dT%H%M%SZ"),
            "smoke": self.smoke,
            "correct": correct,
            "problems": self.problems,
            "targets": judge(measures),
            "phases": self.phases,
            "extra": self.extra,
            "resources": resources,
            "machine": {**machine_facts(), "load_average_at_start": getattr(self, "load_at_start", None)},
            "broker": getattr(self, "broker_kind", "?"),
        }
        result["headline"] = _headline(result)
        result["files"] = write_all(result, self.out)
        return result


def _headline(result: dict[str, Any]) -> str:
    parts = []
    for name, ph in result["phases"].items():
        st = ph.get("services") or {}
        if not st.get("orders"):
            continue
        ratio = ph.get("ratio", {}).get("orders_per_s")
        unit = "lines/s" if name == "refill" else "orders/s"
        value = st["lines_per_s"] if name == "refill" else st["orders_per_s"]
        text = f"{name} {value:,.0f} {unit}"
        if "latency_ms" in st:
            text += f" p99 {st['latency_ms']['p99']:,.0f} ms"
        if ratio:
            text += f" ({ratio:.2f}x relay)"
        parts.append(text)
    totals = [r for r in budget_rows(result) if r["process"] == "**all measured**"]
    if totals and totals[0]["ms_per_order"] is not None:
        parts.append(f"CPU {totals[0]['ms_per_order']:.2f} ms/order (budget {totals[0]['budget_ms']:.2f})")
    return "; ".join(parts)


def run_scenario(scenario: str, **kw: Any) -> dict[str, Any]:
    """Python API (tests, notebooks): run one scenario, return the result dict (``correct``,
    ``problems``, ``files``, every number)."""
    return Bench(scenario, **kw).run()


def _importable(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a child process that runs ``python -m bench.<module>`` from any directory."""
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SOURCE_ROOT), env.get("PYTHONPATH", "")]))
    return env


_WAITING = re.compile(r"\[(\d+)\] LOG:  process \d+ still waiting for (.+?) after ")
_ACQUIRED = re.compile(r"\[(\d+)\] LOG:  process \d+ acquired .+? after ([\d.]+) ms")
_STATEMENT = re.compile(r"\[(\d+)\] STATEMENT:  (.*)")


def lock_waits(postgres_log: str) -> list[str]:
    """The lock waits PostgreSQL logged (``log_lock_waits``, over ``deadlock_timeout``), per
    statement that waited: how many, and how long in all until the lock came (a wait that never
    ended in a lock, a deadlock say, counts without its time). Most waited first."""
    waiting: dict[str, str] = {}  # pid -> the statement now waiting
    expect_statement: set[str] = set()
    count: dict[str, int] = {}
    waited_ms: dict[str, float] = {}
    longest: dict[str, float] = {}
    for line in postgres_log.replace("\n\t", " ").splitlines():  # a statement's further lines start with a tab
        if m := _WAITING.search(line):
            expect_statement.add(m[1])
        elif (m := _STATEMENT.search(line)) and m[1] in expect_statement:
            expect_statement.discard(m[1])
            statement = " ".join(m[2].split())[:110]
            waiting[m[1]] = statement
            count[statement] = count.get(statement, 0) + 1
        elif (m := _ACQUIRED.search(line)) and m[1] in waiting:
            statement, ms = waiting.pop(m[1]), float(m[2])
            waited_ms[statement] = waited_ms.get(statement, 0.0) + ms
            longest[statement] = max(longest.get(statement, 0.0), ms)
    return [f"lock waits: {count[q]:>4} x, {waited_ms.get(q, 0):>8,.0f} ms in all, longest {longest.get(q, 0):,.0f} ms  {q}"
            for q in sorted(count, key=lambda q: (-waited_ms.get(q, 0), -count[q]))]
