"""Order intake use cases on a real PostgreSQL: idempotent placement, conflicts, rejections."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from sqlalchemy import text

from libs.contracts import Topic
from libs.database import create_engine, upgrade_schema
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.service_layer.placing import Incoming, place_orders

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"


@pytest.fixture(scope="module")
async def engine(database_url: str):  # type: ignore[no-untyped-def]
    eng = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(eng, schema=SCHEMA, versions_dir=VERSIONS)
    yield eng
    await eng.dispose()


def order(external_id: str, qty: int = 2, **extra: object) -> dict:
    return {"channel": "web", "external_id": external_id, "placed_at": "2026-11-22T10:00:00Z", "currency": "EUR",
            "ship_to": {"country": "DE"}, "lines": [{"line_id": "1", "sku": "SKU-1", "qty": qty, "unit_price": "1.50"}],
            **extra}


async def outbox(conn, topic: str) -> list[dict]:  # type: ignore[no-untyped-def]
    rows = await conn.execute(text("SELECT key, value FROM outbox_messages WHERE topic = :t ORDER BY id, position"), {"t": topic})
    return [orjson.loads(r.value) | {"_key": r.key} for r in rows]


async def test_same_order_sent_twice_gets_the_same_id_and_one_order_placed(engine) -> None:  # type: ignore[no-untyped-def]
    ext = uuid.uuid4().hex
    async with engine.begin() as conn:
        [first] = await place_orders(conn, [Incoming(order(ext), f"web:{ext}")], publish_rejections=True)
        [again] = await place_orders(conn, [Incoming(order(ext), f"web:{ext}")], publish_rejections=True)
        placed = [e for e in await outbox(conn, Topic.ORDERS) if e["data"].get("external_id") == ext]
        await conn.rollback()
    assert first.status == "created" and again.status == "existing"
    assert first.order_id == again.order_id
    assert len(placed) == 1 and placed[0]["_key"] == first.order_id
    assert placed[0]["event_type"] == "OrderPlaced"


async def test_same_key_with_other_content_is_a_conflict_and_changes_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    ext = uuid.uuid4().hex
    async with engine.begin() as conn:
        [first] = await place_orders(conn, [Incoming(order(ext, qty=2), f"web:{ext}")], publish_rejections=True)
        [clash] = await place_orders(conn, [Incoming(order(ext, qty=3), f"web:{ext}")], publish_rejections=True)
        qty = (await conn.execute(text("SELECT qty FROM order_lines WHERE order_id = :o"), {"o": first.order_id})).scalar()
        rejected = [e for e in await outbox(conn, Topic.CHANNEL_ORDERS_REJECTED) if e["_key"] == f"web:{ext}"]
        await conn.rollback()
    assert clash.status == "conflict" and clash.problems[0].field == "external_id"
    assert qty == 2
    assert len(rejected) == 1 and rejected[0]["data"]["reasons"][0]["field"] == "external_id"


async def test_a_redelivered_record_is_answered_once_whether_it_was_placed_rejected_or_a_conflict(engine) -> None:  # type: ignore[no-untyped-def]
    """Kafka gives a record again after a crash: the order it placed is found by its channel key (no
    inbox row), its rejection or conflict by the record's position (inbox): nothing twice."""
    good, bad, clash = uuid.uuid4().hex, uuid.uuid4().hex, uuid.uuid4().hex
    topic = Topic.CHANNEL_ORDERS

    def records() -> list[Incoming]:  # the same three records each time: same partition and offsets
        return [Incoming(order(good), f"web:{good}", record=(topic, 0, 1)),
                Incoming(order(bad, qty=0), f"web:{bad}", record=(topic, 0, 2)),
                Incoming(order(clash, qty=5), f"web:{clash}", record=(topic, 0, 3))]

    async with engine.begin() as conn:
        await place_orders(conn, [Incoming(order(clash, qty=1), f"web:{clash}")], publish_rejections=True)
        first = await place_orders(conn, records(), publish_rejections=True)
        again = await place_orders(conn, records(), publish_rejections=True)
        placed = [e for e in await outbox(conn, Topic.ORDERS) if e["data"].get("external_id") == good]
        rejected = [e["_key"] for e in await outbox(conn, Topic.CHANNEL_ORDERS_REJECTED)
                    if e["_key"] in (f"web:{bad}", f"web:{clash}")]
        await conn.rollback()
    assert [o.status for o in first] == ["created", "rejected", "conflict"]
    assert [o.status for o in again] == ["existing", "rejected", "conflict"]
    assert first[0].order_id == again[0].order_id and len(placed) == 1
    assert sorted(rejected) == sorted([f"web:{bad}", f"web:{clash}"])  # once each


async def test_invalid_order_in_a_batch_is_rejected_with_reasons_and_the_rest_placed(engine) -> None:  # type: ignore[no-untyped-def]
    good, bad = uuid.uuid4().hex, uuid.uuid4().hex
    async with engine.begin() as conn:
        before = (await conn.execute(text("SELECT count(*) FROM orders"))).scalar()
        outcomes = await place_orders(
            conn,
            [Incoming(order(good), f"web:{good}"), Incoming(order(bad, qty=0, currency="XYZ"), f"web:{bad}")],
            publish_rejections=True,
        )
        after = (await conn.execute(text("SELECT count(*) FROM orders"))).scalar()
        rejected = [e for e in await outbox(conn, Topic.CHANNEL_ORDERS_REJECTED) if e["_key"] == f"web:{bad}"]
        await conn.rollback()
    assert [o.status for o in outcomes] == ["created", "rejected"]
    assert after == before + 1
    reasons = {r["field"] for r in rejected[0]["data"]["reasons"]}
    assert reasons == {"lines.0.qty", "currency"}


async def test_http_path_publishes_no_rejection(engine) -> None:  # type: ignore[no-untyped-def]
    bad = uuid.uuid4().hex
    async with engine.begin() as conn:
        [outcome] = await place_orders(conn, [Incoming(order(bad, qty=-1), f"web:{bad}")], publish_rejections=False)
        rejected = [e for e in await outbox(conn, Topic.CHANNEL_ORDERS_REJECTED) if e["_key"] == f"web:{bad}"]
        await conn.rollback()
    assert outcome.status == "rejected" and rejected == []


async def test_a_return_delivered_twice_in_one_batch_is_counted_once(engine) -> None:  # type: ignore[no-untyped-def]
    from decimal import Decimal

    from libs.contracts import new_envelope
    from libs.contracts.events import ReturnLine, ReturnReceived
    from libs.messaging.consumer import EventMessage
    from services.order_intake.service_layer.tracking import apply_downstream_events

    ext = uuid.uuid4().hex
    async with engine.begin() as conn:
        [placed] = await place_orders(conn, [Incoming(order(ext, qty=2), f"web:{ext}")], publish_rejections=True)
        event = ReturnReceived(order_id=placed.order_id, return_id="R1", refund_total=Decimal("1.50"), lines=[
            ReturnLine(line_id="1", sku="SKU-1", qty=1, condition="sellable", location_id="L", bin="B", refund=Decimal("1.50"))])
        envelope = new_envelope(event, source="fulfillment", correlation_id=placed.order_id)
        twice = [EventMessage(envelope, event)] * 2
        await apply_downstream_events(conn, twice)
        await apply_downstream_events(conn, twice)
        returned = (await conn.execute(text("SELECT returned FROM order_lines WHERE order_id = :o"), {"o": placed.order_id})).scalar()
        entries = (await conn.execute(text("SELECT count(*) FROM timeline WHERE order_id = :o AND event_type = 'ReturnReceived'"),
                                      {"o": placed.order_id})).scalar()
        await conn.rollback()
    assert returned == 1 and entries == 1


async def test_the_same_order_twice_in_one_batch_is_one_order_and_both_get_its_id(engine) -> None:  # type: ignore[no-untyped-def]
    ext, clash = uuid.uuid4().hex, uuid.uuid4().hex
    async with engine.begin() as conn:
        outcomes = await place_orders(conn, [
            Incoming(order(ext), f"web:{ext}"), Incoming(order(ext), f"web:{ext}"),
            Incoming(order(clash, qty=2), f"web:{clash}"), Incoming(order(clash, qty=5), f"web:{clash}"),
        ], publish_rejections=True)
        placed = [e for e in await outbox(conn, Topic.ORDERS) if e["data"].get("external_id") in (ext, clash)]
        await conn.rollback()
    assert [o.status for o in outcomes] == ["created", "existing", "created", "conflict"]
    assert outcomes[1].order_id == outcomes[0].order_id is not None
    assert outcomes[3].order_id == outcomes[2].order_id
    assert len(placed) == 2


async def test_allocation_results_apply_once_whatever_the_delivery(engine) -> None:  # type: ignore[no-untyped-def]
    """Duplicates in one batch, a redelivered batch, and an older result after a newer one change
    nothing: the order view keeps the newest version, and each result has one timeline entry."""
    from libs.contracts import new_envelope
    from libs.contracts.events import LineState, OrderAllocated, OrderBackordered
    from libs.messaging.consumer import EventMessage
    from services.order_intake.service_layer.tracking import apply_downstream_events

    ext = uuid.uuid4().hex
    async with engine.begin() as conn:
        [placed] = await place_orders(conn, [Incoming(order(ext, qty=2), f"web:{ext}")], publish_rejections=True)
        oid = placed.order_id

        def result(version: int, allocated: int) -> EventMessage:
            kind = OrderAllocated if allocated == 2 else OrderBackordered
            event = kind(order_id=oid, version=version, change="placed", allocations=[], lines=[
                LineState(line_id="1", sku="SKU-1", qty=2, allocated=allocated, backordered=2 - allocated)])
            return EventMessage(new_envelope(event, source="allocation", correlation_id=oid), event)

        async def state() -> tuple[int, str, int, list[str]]:
            row = (await conn.execute(text("SELECT allocation_version, status FROM order_status WHERE order_id = :o"),
                                      {"o": oid})).one()
            allocated = (await conn.execute(text("SELECT allocated FROM order_lines WHERE order_id = :o"),
                                            {"o": oid})).scalar()
            entries = (await conn.execute(text(
                "SELECT event_type FROM timeline WHERE order_id = :o AND source = 'allocation' ORDER BY id"),
                {"o": oid})).scalars().all()
            return row.allocation_version, row.status, allocated, list(entries)

        v1, v2 = result(1, 0), result(2, 2)
        await apply_downstream_events(conn, [v1, v1])
        assert await state() == (1, "backordered", 0, ["OrderBackordered"])
        await apply_downstream_events(conn, [v2, v1, v2])  # newer, then the older one again
        await apply_downstream_events(conn, [v1, v2])  # the whole batch redelivered
        assert await state() == (2, "allocated", 2, ["OrderBackordered", "OrderAllocated"])
        await conn.rollback()
