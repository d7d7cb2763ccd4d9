"""Allocation's backorders-by-age report on a fresh schema, with exact figures: orders, orders with
nothing allocated, orders on hold and backordered units per age bucket, and the oldest orders."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from allocation_support import env, fresh_engine, location, stock
from http_support import runtime as http_runtime
from staff_auth import OPERATOR, VIEWER, guarded_app

from libs.contracts.envelope import EventMessage
from libs.contracts.events import OrderLine, OrderPlaced
from libs.contracts.orders import Address, Customer
from services.allocation.entrypoints.http import ACCESS, build_router
from services.allocation.service_layer import allocating

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)


def placed(order_id: str, age: timedelta, lines: list[tuple[str, int]]) -> EventMessage:
    return env(OrderPlaced(
        order_id=order_id, channel="web", external_id=order_id, placed_at=NOW - age, currency="EUR",
        customer=Customer(), ship_to=Address(country="DE"),
        lines=[OrderLine(line_id=str(i), sku=sku, qty=qty, unit_price=1) for i, (sku, qty) in enumerate(lines, 1)],
    ))


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = await fresh_engine(database_url)
    app = guarded_app("allocation", ACCESS, [build_router(http_runtime(engine))])  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://alloc",
                                 headers=VIEWER) as client:
        async with engine.begin() as conn:
            await allocating.apply_events(conn, [
                location("WH1"), stock("P1", 2, 2, 1), stock("P3", 1, 1, 1),
                placed("a-10d", timedelta(days=10), [("P1", 3)]),  # 2 allocated, 1 backordered
                placed("b-5d", timedelta(days=5), [("P1", 2)]),
                placed("c-2d", timedelta(days=2), [("P1", 1), ("P2", 4)]),  # P2: no stock at all
                placed("d-5h", timedelta(hours=5), [("P1", 1)]),
                placed("e-30m", timedelta(minutes=30), [("P1", 2)]),
                placed("f-20d", timedelta(days=20), [("P3", 1)]),  # fully allocated: not in the report
            ])
        yield client
    await engine.dispose()


def bucket(age: str, orders: int = 0, unallocated: int = 0, on_hold: int = 0, units: int = 0) -> dict[str, object]:
    return {"age": age, "orders": orders, "unallocated_orders": unallocated, "on_hold_orders": on_hold,
            "backordered_units": units}


async def test_backorders_by_age_counts_orders_units_and_holds_per_bucket(api: httpx.AsyncClient) -> None:
    report = (await api.get("/v1/reports/backorders-by-age")).json()
    assert [{k: v for k, v in b.items() if k != "oldest_placed_at"} for b in report["buckets"]] == [
        bucket("<1h", 1, 1, 0, 2), bucket("1h-1d", 1, 1, 0, 1), bucket("1d-3d", 1, 1, 0, 5),
        bucket("3d-7d", 1, 1, 0, 2), bucket(">7d", 1, 0, 0, 1),  # a-10d has 2 allocated: not "unallocated"
    ]
    assert [(o["order_id"], o["backordered"]) for o in report["oldest_orders"]] == [
        ("a-10d", 1), ("b-5d", 2), ("c-2d", 5), ("d-5h", 1), ("e-30m", 2)]
    assert report["buckets"][3]["oldest_placed_at"] == (NOW - timedelta(days=5)).isoformat()

    # a-10d's line by hand: its 2 units go on hold and b-5d, next in the queue, takes them
    held = await api.post("/v1/orders/a-10d/deallocate", json={"line_ids": ["1"]}, headers=OPERATOR)
    assert held.status_code == 200, held.text
    report = (await api.get("/v1/reports/backorders-by-age")).json()
    assert [{k: v for k, v in b.items() if k != "oldest_placed_at"} for b in report["buckets"]] == [
        bucket("<1h", 1, 1, 0, 2), bucket("1h-1d", 1, 1, 0, 1), bucket("1d-3d", 1, 1, 0, 5),
        bucket("3d-7d"), bucket(">7d", 1, 1, 1, 3),
    ]
    assert report["buckets"][3]["oldest_placed_at"] is None
