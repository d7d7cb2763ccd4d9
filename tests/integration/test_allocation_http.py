"""Allocation's HTTP API on real PostgreSQL: manual operations, policy, reports, availability."""

from __future__ import annotations

import httpx
import pytest
from allocation_support import fresh_engine, location, order, outbox, stock
from http_support import runtime as http_runtime
from sqlalchemy import text
from staff_auth import ADMIN, OPERATOR, VIEWER, guarded_app

from services.allocation.entrypoints.http import ACCESS, build_router
from services.allocation.service_layer import allocating
from services.allocation.service_layer.availability import publish_dirty

pytestmark = pytest.mark.integration


@pytest.fixture
async def api(database_url: str):  # type: ignore[no-untyped-def]
    engine = await fresh_engine(database_url)
    app = guarded_app("allocation", ACCESS, [
        build_router(http_runtime(engine))])  # type: ignore[arg-type]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://alloc", headers=ADMIN
    ) as client:
        client.engine = engine  # type: ignore[attr-defined]
        async with engine.begin() as conn:
            await allocating.apply_events(conn, [
                location("WH1", priority=5), location("WH2", priority=1),
                stock("P1", 10, 10, 1), stock("P1", 10, 10, 1, location_id="WH2"),
                order("h-1", [("1", "P1", 8)], minutes=0), order("h-2", [("1", "P1", 15)], minutes=1),
            ])
        yield client
    await engine.dispose()


async def test_unknown_order_is_404_and_bad_body_lists_every_problem(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/allocations/nope")).status_code == 404
    assert (await api.post("/v1/orders/nope/deallocate", json={"line_ids": ["1"]})).status_code == 404
    r = await api.post("/v1/transfers", json={"from_order_id": "", "qty": 0, "extra": 1})
    assert r.status_code == 422
    fields = {d["field"] for d in r.json()["detail"]}
    assert {"from_order_id", "to_order_id", "sku", "qty", "extra"} <= fields


async def test_deallocate_holds_the_line_and_release_hold_refills_it(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/orders/h-1/deallocate", json={"line_ids": ["1"]})
    assert r.status_code == 200, r.text
    line = r.json()["lines"][0]
    assert (line["allocated"], line["backordered"], line["on_hold"]) == (0, 8, True)
    # h-2 (15 wanted, 12 allocated) takes what h-1 gave back: it is next in the queue.
    h2 = (await api.get("/v1/allocations/h-2")).json()
    assert h2["lines"][0]["allocated"] == 15
    r = await api.post("/v1/orders/h-1/release-hold", json={})
    line = r.json()["lines"][0]
    assert (line["on_hold"], line["allocated"], line["backordered"]) == (False, 5, 3)
    queue = (await api.get("/v1/backorders", params={"sku": "P1"})).json()
    assert [(q["order_id"], q["qty"], q["queue_position"]) for q in queue] == [("h-1", 3, 1)]
    assert (await api.post("/v1/orders/h-1/deallocate", json={"line_ids": ["9"]})).status_code == 422


async def test_transfer_and_reallocate(api: httpx.AsyncClient) -> None:
    r = await api.post("/v1/transfers", json={"from_order_id": "h-1", "to_order_id": "h-2", "sku": "P1", "qty": 3})
    assert r.status_code == 200, r.text
    assert r.json()["to"]["lines"][0]["allocated"] == 15
    assert r.json()["from"]["lines"][0]["backordered"] == 3
    r = await api.post("/v1/transfers", json={"from_order_id": "h-1", "to_order_id": "h-2", "sku": "P1", "qty": 50})
    assert r.status_code == 422 and len(r.json()["detail"]) == 2
    r = await api.post("/v1/orders/h-1/reallocate", json={"location_id": "NOWHERE"})
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "location_id"
    r = await api.post("/v1/orders/h-1/reallocate", json={"location_id": "WH2"})
    assert r.status_code == 200, r.text
    assert all(a["explanation"] for a in r.json()["allocations"])


async def test_policy_put_is_validated_whole_and_changes_allocation(api: httpx.AsyncClient) -> None:
    before = (await api.get("/v1/policy")).json()
    bad = {"rank_by": ["price"], "max_locations_per_order": -1, "safety_stock": [{"sku": "*", "location_id": "X9", "qty": 1}]}
    r = await api.put("/v1/policy", json=bad)
    assert r.status_code == 422
    assert {d["field"] for d in r.json()["detail"]} == {"rank_by.0", "max_locations_per_order",
                                                        "safety_stock.0.location_id"}
    assert (await api.get("/v1/policy")).json() == before
    r = await api.put("/v1/policy", json={"channel": "web", "rank_by": ["priority"], "buffer": 1})
    assert r.status_code == 200 and r.json()["version"] == 1
    got = (await api.get("/v1/policy", params={"channel": "web"})).json()
    assert (got["buffer"], got["inherited"]) == (1, False)
    assert (await api.get("/v1/policy", params={"channel": "pos"})).json()["inherited"] is True



async def test_viewer_reads_operator_operates_and_only_admin_changes_policy(api: httpx.AsyncClient) -> None:
    assert (await api.get("/v1/backorders", headers=VIEWER)).status_code == 200
    assert (await api.get("/v1/policy", headers=VIEWER)).status_code == 200
    held = await api.post("/v1/orders/h-2/deallocate", json={"line_ids": ["1"]}, headers=VIEWER)
    assert held.status_code == 403 and "needs role operator" in held.text
    policy = {"channel": "web", "rank_by": ["priority"], "buffer": 2}
    refused = await api.put("/v1/policy", json=policy, headers=OPERATOR)
    assert refused.status_code == 403 and "needs role admin" in refused.text
    assert (await api.get("/v1/policy", params={"channel": "web"})).json()["inherited"] is True
    assert (await api.post("/v1/orders/h-2/deallocate", json={"line_ids": ["1"]}, headers=OPERATOR)).status_code == 200
    assert (await api.put("/v1/policy", json=policy)).status_code == 200  # the client's default: admin

async def test_reports_and_coalesced_availability(api: httpx.AsyncClient) -> None:
    [row] = (await api.get("/v1/reports/stock", params={"sku": "P1"})).json()
    assert row == {"sku": "P1", "on_hand": 20, "reserved": 20, "backordered_demand": 3, "backordered_on_hold": 0,
                   "available": 0, "quarantined": 0}
    ages = (await api.get("/v1/reports/backorders-by-age")).json()
    assert sum(b["orders"] for b in ages["buckets"]) == 1
    engine = api.engine  # type: ignore[attr-defined]
    async with engine.begin() as conn:
        assert await publish_dirty(conn) == 1  # many changes to P1, one event
        assert await publish_dirty(conn) == 0
    [event] = [e for e in await outbox(engine) if e["event_type"] == "AvailabilityChanged"]
    assert event["data"]["total"] == 0 and event["data"]["positions"] == []
    assert event["data"]["locations"] == [{"location_id": "WH1", "available": 0}, {"location_id": "WH2", "available": 0}]
    # reserved per position: what inventory's stock take asks for
    reserved = (await api.get("/v1/reports/reserved", params={"location_id": "WH1"})).json()
    assert reserved == [{"sku": "P1", "location_id": "WH1", "bin": "A1", "lot": "", "reserved": 10}]
    by_sku = (await api.get("/v1/reports/reserved", params={"sku": "P1"})).json()
    assert sorted((r["location_id"], r["reserved"]) for r in by_sku) == [("WH1", 10), ("WH2", 10)]
    r = await api.get("/v1/reports/reserved")
    assert r.status_code == 422 and r.json()["detail"][0]["field"] == "location_id"
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM skus WHERE availability_dirty"))).scalar() == 0
