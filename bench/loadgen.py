"""Benchmark load generator: its own OS process, publishing channel orders to a topic.

    python -m bench.loadgen --bootstrap HOST:PORT --topic T --workload FILE.json \
        --seq-start S --orders N [--rate R] [--summary OUT.json]

Each message: key ``{channel}:{external_id}``, JSON ChannelOrder, header
``correlation_id = bench:<seq>:<publish_time_ns>``. At a fixed rate the publish time is the
*scheduled* send time, so a generator that falls behind cannot hide queueing (no coordinated
omission); at full speed it is the time of the send call. Bounded: it stops after N orders or
``--max-seconds``, whichever comes first.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
from aiokafka import AIOKafkaProducer

from bench.workload import Workload, correlation_id
from libs.service_host.loop import run  # the services' event loop

MAX_IN_FLIGHT = 5_000


async def generate(
    bootstrap: str, topic: str, workload: Workload, seq_start: int, orders: int, rate: float | None,
    max_seconds: float = 900.0,
) -> dict[str, float | int]:
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, client_id="oms-bench-loadgen", acks="all", linger_ms=2,
        max_batch_size=256 * 1024, enable_idempotence=False,
    )
    await producer.start()
    placed_at = datetime.now(UTC).isoformat()
    sent, behind_max_ns = 0, 0
    in_flight: list[asyncio.Future[object]] = []
    t0_mono, t0_wall = time.monotonic(), time.time_ns()
    deadline = t0_mono + max_seconds
    try:
        while sent < orders and time.monotonic() < deadline:
            if rate:
                due = min(orders, int((time.monotonic() - t0_mono) * rate) + 1)
                if due <= sent:
                    await asyncio.sleep(max(0.0005, (sent / rate) - (time.monotonic() - t0_mono)))
                    continue
            else:
                due = min(orders, sent + 200)
            while sent < due:
                seq = seq_start + sent
                doc = workload.order(seq, placed_at)
                now_ns = time.time_ns()
                if rate:
                    publish_ns = t0_wall + int(sent * 1e9 / rate)
                    behind_max_ns = max(behind_max_ns, now_ns - publish_ns)
                else:
                    publish_ns = now_ns
                key = f"{doc['channel']}:{doc['external_id']}".encode()
                headers = [("correlation_id", correlation_id(seq, publish_ns).encode())]
                in_flight.append(await producer.send(topic, orjson.dumps(doc), key=key, headers=headers))
                sent += 1
            if len(in_flight) >= MAX_IN_FLIGHT:
                await asyncio.gather(*in_flight)
                in_flight.clear()
        await producer.flush()
        await asyncio.gather(*in_flight)
    finally:
        await producer.stop()
    elapsed = time.monotonic() - t0_mono
    return {
        "sent": sent,
        "seconds": round(elapsed, 3),
        "offered_per_s": round(sent / elapsed, 1) if elapsed else 0.0,
        "start_ns": t0_wall,
        "max_behind_ms": round(behind_max_ns / 1e6, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--workload", required=True, help="JSON file written by the benchmark")
    parser.add_argument("--seq-start", type=int, default=0)
    parser.add_argument("--orders", type=int, required=True)
    parser.add_argument("--rate", type=float, default=None, help="orders/s; default: full speed")
    parser.add_argument("--max-seconds", type=float, default=900.0)
    parser.add_argument("--summary", default=None, help="write the summary JSON here (else stdout)")
    args = parser.parse_args(argv)
    workload = Workload.from_json(orjson.loads(Path(args.workload).read_bytes()))
    summary = run(
        generate(args.bootstrap, args.topic, workload, args.seq_start, args.orders, args.rate, args.max_seconds)
    )
    out = orjson.dumps(summary)
    if args.summary:
        Path(args.summary).write_bytes(out)
    else:
        sys.stdout.write(out.decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
