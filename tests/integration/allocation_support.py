"""Helpers for allocation integration tests: a fresh allocation schema and event builders."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.contracts import new_envelope
from libs.contracts.envelope import Envelope, EventMessage
from libs.contracts.events import Event, LocationChanged, OrderLine, OrderPlaced, StockAdjusted
from libs.contracts.orders import Address, Customer
from libs.database import create_engine, upgrade_schema
from services.allocation.adapters.tables import SCHEMA

VERSIONS = Path(__file__).resolve().parents[2] / "services" / "allocation" / "adapters" / "migrations" / "versions"
T0 = datetime(2026, 11, 1, 10, 0, tzinfo=UTC)
TABLES = ("locations, skus, positions, orders, order_lines, allocations, policies, early_order_events, inbox, outbox, outbox_batches,"
          " inbound_supply, presales")


async def fresh_engine(database_url: str) -> AsyncEngine:
    engine = create_engine(database_url, schema=SCHEMA, pool_size=4)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    async with engine.begin() as conn:
        await conn.execute(text(f"TRUNCATE {TABLES} RESTART IDENTITY"))
    return engine


def env(event: Event) -> tuple[Envelope, Event]:
    return EventMessage(new_envelope(event, source="test", correlation_id="test"), event)


def location(location_id: str = "WH1", **kw: Any) -> tuple[Envelope, Event]:
    return env(LocationChanged(location_id=location_id, name=location_id, country=kw.pop("country", "DE"), **kw))


def stock(sku: str, on_hand: int, delta: int, seq: int, *, location_id: str = "WH1", bin: str = "A1", lot: str = "",
          reason: str = "receipt", received_days_ago: int | None = None, **kw: Any) -> tuple[Envelope, Event]:
    received = T0 - timedelta(days=received_days_ago) if received_days_ago is not None else None
    return env(StockAdjusted(sku=sku, location_id=location_id, bin=bin, lot=lot, delta=delta, on_hand=on_hand,
                             seq=seq, reason=reason, received_at=received, **kw))


def order(order_id: str, lines: list[tuple[str, str, int]], *, minutes: int = 0, country: str = "DE",
          **kw: Any) -> tuple[Envelope, Event]:
    return env(OrderPlaced(
        order_id=order_id, channel=kw.pop("channel", "web"), external_id=order_id,
        placed_at=T0 + timedelta(minutes=minutes), currency="EUR", customer=Customer(),
        ship_to=Address(country=country), lines=[OrderLine(line_id=i, sku=s, qty=q, unit_price=1) for i, s, q in lines],
        **kw,
    ))


async def outbox(engine: AsyncEngine) -> list[dict[str, Any]]:
    import orjson

    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT topic, key, value FROM outbox_messages ORDER BY id, position"))).all()
    return [{"topic": r.topic, "key": r.key, **orjson.loads(r.value)} for r in rows]


async def line_state(engine: AsyncEngine, order_id: str) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM order_lines WHERE order_id = :o"), {"o": order_id})).mappings()
        return {r["line_id"]: dict(r) for r in rows}
