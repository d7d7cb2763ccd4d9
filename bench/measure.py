"""What the benchmark measures: allocation results as they arrive, consumer lag, and the CPU and
memory of the processes under test."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from bench.workload import parse_correlation_id

# Event types of AllocationResult snapshots (libs/contracts/events.py).
RESULT_TYPES = frozenset({
    "OrderAllocated", "OrderBackordered", "AllocationReleased", "OrderReallocated", "AllocationPacked",
    "PackRejected", "AllocationShipped", "AllocationCancelled",
})
LINE_STATES = ("allocated", "backordered", "packed", "shipped", "cancelled")


@dataclass
class FirstResult:
    """The first allocation result of one benchmark order."""

    seq: int
    publish_ns: int
    receive_ns: int
    order_id: str
    lines: list[tuple[str, int, int, int]]  # (sku, qty, allocated, backordered)
    allocations: list[tuple[str, str, str, str, int, int]]  # (sku, location, bin, lot, qty, allocation_id)

    @property
    def latency_ms(self) -> float:
        return (self.receive_ns - self.publish_ns) / 1e6


@dataclass
class Snapshot:
    """The newest result seen for an order (highest version)."""

    version: int
    receive_ns: int
    event_type: str
    lines: list[dict[str, Any]]
    allocations: list[dict[str, Any]]


@dataclass
class ResultCollector:
    """Reads a results topic from its end, keeps each benchmark order's first result and every
    order's newest snapshot. Runs as a task until ``stop()``."""

    bootstrap: str
    topic: str
    first: dict[int, FirstResult] = field(default_factory=dict)
    latest: dict[str, Snapshot] = field(default_factory=dict)
    arrivals: list[tuple[int, str, int]] = field(default_factory=list)  # (receive_ns, order_id, version)
    results_seen: int = 0
    _consumer: AIOKafkaConsumer | None = None
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, client_id="oms-bench-measure",
            max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_wait_ms=20,
        )
        await consumer.start()
        partitions = None
        for _ in range(100):
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                break
            await consumer._client.force_metadata_update()  # noqa: SLF001 - topic just created
            await asyncio.sleep(0.1)
        if not partitions:
            await consumer.stop()
            raise RuntimeError(f"topic {self.topic} has no partitions")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:  # resolve the positions now: only results after this point count
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        assert self._consumer is not None
        while not self._stopping:
            batches = await self._consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.time_ns()
            for records in batches.values():
                for rec in records:
                    self._take(rec, now)

    def _take(self, rec: Any, now: int) -> None:
        event_type = next((v.decode() for k, v in (rec.headers or ()) if k == "event_type"), None)
        if event_type is not None and event_type not in RESULT_TYPES:
            return
        env = orjson.loads(rec.value)
        event_type = env.get("event_type", event_type)
        if event_type not in RESULT_TYPES:
            return
        data = env["data"]
        order_id, version = data["order_id"], int(data.get("version", 0))
        self.results_seen += 1
        self.arrivals.append((now, order_id, version))
        known = self.latest.get(order_id)
        if known is None or version >= known.version:
            self.latest[order_id] = Snapshot(version, now, event_type, data["lines"], data.get("allocations", []))
        parsed = parse_correlation_id(env.get("correlation_id", ""))
        if parsed is None or parsed[0] in self.first:
            return
        seq, publish_ns = parsed
        self.first[seq] = FirstResult(
            seq, publish_ns, now, order_id,
            [(ln["sku"], ln["qty"], ln.get("allocated", 0), ln.get("backordered", 0)) for ln in data["lines"]],
            [(a["sku"], a["location_id"], a["bin"], a.get("lot", ""), a["qty"], a["allocation_id"])
             for a in data.get("allocations", []) if a.get("status", "allocated") == "allocated"],
        )

    async def wait_for(self, seqs: range, *, idle_timeout: float = 30.0, max_wait: float = 900.0) -> bool:
        """Until every seq has a first result; gives up when nothing new arrived for idle_timeout."""
        deadline = time.monotonic() + max_wait
        last_count, last_change = -1, time.monotonic()
        while time.monotonic() < deadline:
            have = sum(1 for s in seqs if s in self.first) if len(seqs) < 2000 else self._count(seqs)
            if have == len(seqs):
                return True
            if have != last_count:
                last_count, last_change = have, time.monotonic()
            elif time.monotonic() - last_change > idle_timeout:
                return False
            if self._task and self._task.done():
                self._task.result()  # surfaces the consumer's error
            await asyncio.sleep(0.1)
        return False

    def _count(self, seqs: range) -> int:
        return sum(1 for s in self.first if seqs.start <= s < seqs.stop)

    async def quiet(self, seconds: float = 1.0, max_wait: float = 120.0) -> None:
        """Until no result arrived for ``seconds``."""
        deadline = time.monotonic() + max_wait
        while time.monotonic() < deadline:
            last = self.arrivals[-1][0] if self.arrivals else 0
            if time.time_ns() - last > seconds * 1e9:
                return
            await asyncio.sleep(0.1)

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)
        if self._consumer:
            await self._consumer.stop()


# --- statistics -------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return math.nan
    idx = min(len(sorted_values) - 1, max(0, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[idx]


def phase_stats(results: list[FirstResult]) -> dict[str, Any]:
    """Orders/s and lines/s (first publish to last result), latency percentiles, per-second series."""
    if not results:
        return {"orders": 0}
    lat = sorted(r.latency_ms for r in results)
    start = min(r.publish_ns for r in results)
    end = max(r.receive_ns for r in results)
    seconds = max((end - start) / 1e9, 1e-9)
    lines = sum(len(r.lines) for r in results)
    per_second: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        bucket = per_second[int((r.receive_ns - start) // 1_000_000_000)]
        bucket[0] += 1
        bucket[1] += len(r.lines)
    series = [[s, *per_second.get(s, [0, 0])] for s in range(int(seconds) + 1)]
    return {
        "orders": len(results),
        "lines": lines,
        "seconds": round(seconds, 3),
        "orders_per_s": round(len(results) / seconds, 1),
        "lines_per_s": round(lines / seconds, 1),
        "latency_ms": {
            "p50": round(percentile(lat, 50), 1), "p95": round(percentile(lat, 95), 1),
            "p99": round(percentile(lat, 99), 1), "max": round(lat[-1], 1),
            "mean": round(sum(lat) / len(lat), 1),
        },
        "per_second": series,  # [second, orders, lines]
        "latency_histogram": latency_histogram(lat),
    }


def latency_histogram(sorted_ms: list[float], bins: int = 60) -> dict[str, Any]:
    """Counts per bucket up to the 99.5th percentile (the rest counted as ``above``): small enough
    to keep in the JSON of every run, enough to draw the distribution."""
    top = max(percentile(sorted_ms, 99.5), 1.0)
    width = max(0.5, math.ceil(top / bins * 2) / 2)
    counts = [0] * (int(top // width) + 1)
    above = 0
    for x in sorted_ms:
        i = int(x // width)
        if i < len(counts):
            counts[i] += 1
        else:
            above += 1
    return {"bucket_ms": width, "counts": counts, "above": above}


# --- consumer lag ---------------------------------------------------------------------------------


async def group_lag(bootstrap: str, group: str, topic: str) -> int | None:
    """Messages of ``topic`` not yet committed by ``group`` (None: the group has no offsets yet).

    Partitions are named explicitly: the embedded Tansu broker answers an offset fetch without
    them with nothing."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, client_id="oms-bench-lag")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="oms-bench-lag")
    await consumer.start()
    await admin.start()
    try:
        await consumer._client.force_metadata_update()  # noqa: SLF001
        partitions = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return None
        ends = await consumer.end_offsets(tps)
        committed = await admin.list_consumer_group_offsets(group, partitions=tps)
        if not any(meta is not None and meta.offset >= 0 for meta in committed.values()):
            return None if any(ends.values()) else 0
        lag = 0
        for tp in tps:
            meta = committed.get(tp)
            done = meta.offset if meta is not None and meta.offset >= 0 else 0
            lag += max(0, ends[tp] - done)
        return lag
    finally:
        await admin.close()
        await consumer.stop()


async def wait_lag_zero(bootstrap: str, group: str, topic: str, *, limit_s: float = 600.0,
                        say: Any = None) -> float:
    """Seconds until ``group`` has consumed all of ``topic`` (TimeoutError after ``timeout``)."""
    t0 = time.monotonic()
    last_report = t0
    while True:
        lag = await group_lag(bootstrap, group, topic)
        if lag == 0:
            return time.monotonic() - t0
        if time.monotonic() - t0 > limit_s:
            raise TimeoutError(f"{group} still {lag} behind on {topic} after {limit_s:.0f}s")
        if say and time.monotonic() - last_report > 10:
            say(f"  waiting for {group}: lag {lag}")
            last_report = time.monotonic()
        await asyncio.sleep(0.3)


# --- processes: CPU and memory ---------------------------------------------------------------------


def _family(pid: int, with_children: bool) -> list[psutil.Process]:
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return []
    procs = [proc]
    if with_children:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs += proc.children(recursive=True)
    return procs


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set (VmHWM) of one process, MB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class ProcessMeter:
    """CPU seconds over a phase and peak memory of named process groups (a group = a root pid and,
    for PostgreSQL, all its children)."""

    roots: dict[str, tuple[int, bool]]  # name -> (pid, include children)
    _cpu0: dict[str, dict[int, float]] = field(default_factory=dict)

    def _cpu(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, (pid, children) in self.roots.items():
            per: dict[int, float] = {}
            for proc in _family(pid, children):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    t = proc.cpu_times()
                    per[proc.pid] = t.user + t.system
            out[name] = per
        return out

    def begin(self) -> None:
        self._cpu0 = self._cpu()

    def end(self, seconds: float) -> dict[str, dict[str, float]]:
        now = self._cpu()
        out = {}
        for name, per in now.items():
            before = self._cpu0.get(name, {})
            used = sum(v - before.get(pid, 0.0) for pid, v in per.items())
            pid, children = self.roots[name]
            peak = sum(vm_hwm_mb(p.pid) for p in _family(pid, children))
            out[name] = {
                "cpu_s": round(used, 2),
                "cpu_cores": round(used / seconds, 2) if seconds else 0.0,
                "peak_rss_mb": round(peak, 1),
            }
        return out
