"""Transport ceiling: one hop of a bare relay through the same broker, no database.

    python -m bench.relay --bootstrap B --hop intake|allocation --source T --target T --group G

Two of these chained (channel orders -> "intake" hop -> "allocation" hop -> results) carry a
message over the same number of broker hops as the services do (channel-orders -> order intake
-> oms.orders.v1 -> allocation -> oms.allocations.v1), each hop a consumer batch loop plus a
producer, offsets committed after the produced batch is acknowledged (as the services commit
after their database transaction). The messages have the services' shapes and sizes: the intake
hop emits an OrderPlaced envelope, the allocation hop an OrderAllocated snapshot with every line
allocated. What is left out is exactly the services' own work: validation, the database, rules.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer

from libs.messaging.kafka import create_producer
from libs.messaging.settings import KafkaSettings
from libs.service_host.loop import run  # the services' event loop


def _envelope(event_type: str, source: str, correlation_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": event_type,
        "schema_version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "source": source,
        "correlation_id": correlation_id,
        "causation_id": str(uuid.uuid4()),
        "data": data,
    }


def intake_hop(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[bytes, bytes, str]:
    """ChannelOrder -> OrderPlaced envelope keyed by a fresh order id."""
    doc = orjson.loads(value)
    correlation = next((v.decode() for k, v in headers if k == "correlation_id"), str(uuid.uuid4()))
    order_id = str(uuid.uuid4())
    data = {"order_id": order_id, "priority": 0, "ship_complete": False, "pickup_location_id": None, **doc}
    return order_id.encode(), orjson.dumps(_envelope("OrderPlaced", "order-intake", correlation, data)), "OrderPlaced"


def allocation_hop(value: bytes, headers: list[tuple[str, bytes]]) -> tuple[bytes, bytes, str]:
    """OrderPlaced envelope -> OrderAllocated snapshot (every line allocated at one position)."""
    env = orjson.loads(value)
    order = env["data"]
    lines, allocations = [], []
    for i, ln in enumerate(order["lines"]):
        lines.append({"line_id": ln["line_id"], "sku": ln["sku"], "qty": ln["qty"], "allocated": ln["qty"],
                      "backordered": 0, "packed": 0, "shipped": 0, "cancelled": 0, "on_hold": False,
                      "backorder_reason": None})
        allocations.append({"allocation_id": i + 1, "line_id": ln["line_id"], "sku": ln["sku"],
                            "location_id": "WH-1", "bin": "A-01", "lot": "", "qty": ln["qty"],
                            "status": "allocated", "shipment_id": None, "reason": None})
    data = {"order_id": order["order_id"], "version": 1, "change": "allocated", "detail": None,
            "shipment_id": None, "lines": lines, "allocations": allocations}
    out = _envelope("OrderAllocated", "allocation", env["correlation_id"], data)
    return order["order_id"].encode(), orjson.dumps(out), "OrderAllocated"


HOPS = {"intake": intake_hop, "allocation": allocation_hop}


async def relay(bootstrap: str, hop: str, source: str, target: str, group: str, max_seconds: float) -> None:
    transform = HOPS[hop]
    # Exactly the services' client settings (KafkaSettings from the same environment, the same
    # producer factory), so the ratio measures the services' work and not a setting.
    kafka = KafkaSettings(bootstrap=bootstrap)
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", max_poll_records=kafka.max_batch, client_id=f"oms-bench-relay-{hop}",
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
    )
    producer = create_producer(kafka, client_id=f"oms-bench-relay-{hop}")
    await producer.start()
    await consumer.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + max_seconds
    announced = False
    try:
        while not stop.is_set() and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=kafka.batch_wait_ms, max_records=kafka.max_batch)
            if not announced and consumer.assignment():
                print("ready", flush=True)
                announced = True
            futures = []
            for records in batches.values():
                for rec in records:
                    key, value, event_type = transform(rec.value, list(rec.headers or ()))
                    headers = [("event_type", event_type.encode())]
                    futures.append(await producer.send(target, value, key=key, headers=headers))
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--hop", choices=sorted(HOPS), required=True)
    parser.add_argument("--source", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    run(relay(args.bootstrap, args.hop, args.source, args.target, args.group, args.max_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
