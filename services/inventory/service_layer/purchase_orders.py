"""Use cases of purchase orders (expected receipts): create, change, cancel, and book the receipt
against one. Each writes the order and its PurchaseOrderChanged (topic oms.inventory.v1, key sku)
in the caller's transaction; booking the receipt also books the stock like any goods receipt
(ledger, positions, StockAdjusted), in the same transaction."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from libs.contracts import Topic, new_envelope
from libs.contracts.events import PurchaseOrderChanged
from libs.contracts.problems import Problem
from libs.messaging import OutboxMessage, write_outbox
from services.inventory.adapters.queries import location_exists
from services.inventory.adapters.tables import SCHEMA
from services.inventory.domain import purchase_orders as rules
from services.inventory.domain.purchase_orders import PurchaseOrder
from services.inventory.domain.stock import LedgerEntry
from services.inventory.service_layer.stock import ReceiptLine, StockRefused, receive_goods

SOURCE = "inventory"
COLUMNS = ("id AS purchase_order_id, sku, location_id, qty, expected_date, supplier_reference, status,"
           " received_qty, receipt_reference, version")


class PurchaseOrderNotFound(LookupError):
    pass


def today() -> date:
    return datetime.now(UTC).date()


async def _publish(conn: AsyncConnection, po: PurchaseOrder, change: str) -> None:
    event = PurchaseOrderChanged(change=change, **asdict(po))  # type: ignore[arg-type]
    envelope = new_envelope(event, source=SOURCE, correlation_id=f"purchase-order:{po.purchase_order_id}")
    await write_outbox(conn, SCHEMA, [OutboxMessage(Topic.INVENTORY, po.sku, envelope)])


async def _store(conn: AsyncConnection, po: PurchaseOrder, actor: str | None) -> None:
    await conn.execute(
        text("INSERT INTO purchase_orders (id, sku, location_id, qty, expected_date, supplier_reference, status,"
             " received_qty, receipt_reference, version, actor) VALUES (:purchase_order_id, :sku, :location_id,"
             " :qty, :expected_date, :supplier_reference, :status, :received_qty, :receipt_reference, :version,"
             " :actor) ON CONFLICT (id) DO UPDATE SET qty = EXCLUDED.qty, expected_date = EXCLUDED.expected_date,"
             " supplier_reference = EXCLUDED.supplier_reference, status = EXCLUDED.status,"
             " received_qty = EXCLUDED.received_qty, receipt_reference = EXCLUDED.receipt_reference,"
             " version = EXCLUDED.version, actor = EXCLUDED.actor, updated_at = now()"),
        {**asdict(po), "actor": actor},
    )


async def get_purchase_order(conn: AsyncConnection, purchase_order_id: str, *, lock: bool = False) -> PurchaseOrder:
    row = (await conn.execute(
        text(f"SELECT {COLUMNS} FROM purchase_orders WHERE id = :i" + (" FOR UPDATE" if lock else "")),
        {"i": purchase_order_id},
    )).first()
    if row is None:
        raise PurchaseOrderNotFound(purchase_order_id)
    return PurchaseOrder(**row._mapping)


async def list_purchase_orders(conn: AsyncConnection, *, sku: str | None, location_id: str | None,
                               status: str | None) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(f"SELECT {COLUMNS} FROM purchase_orders WHERE (CAST(:s AS text) IS NULL OR sku = :s)"
             " AND (CAST(:l AS text) IS NULL OR location_id = :l) AND (CAST(:st AS text) IS NULL OR status = :st)"
             " ORDER BY expected_date, id LIMIT 1000"),
        {"s": sku, "l": location_id, "st": status},
    )
    return [asdict(PurchaseOrder(**r._mapping)) for r in rows]


async def create_purchase_order(conn: AsyncConnection, *, sku: str, location_id: str, qty: int, expected_date: date,
                                supplier_reference: str | None, actor: str | None) -> PurchaseOrder:
    """A new open purchase order, or StockRefused naming every bad field (nothing written)."""
    location_known = await location_exists(conn, location_id)
    sku_known = (await conn.execute(
        text("SELECT 1 FROM positions WHERE sku = :s LIMIT 1"), {"s": sku})).first() is not None
    problems = rules.check_new(sku_known=sku_known, location_known=location_known, sku=sku,
                               location_id=location_id, qty=qty, expected_date=expected_date, today=today())
    if problems:
        raise StockRefused(problems)
    po = PurchaseOrder(f"po_{uuid.uuid4().hex[:16]}", sku, location_id, qty, expected_date, supplier_reference)
    await _store(conn, po, actor)
    await _publish(conn, po, "created")
    return po


async def change_purchase_order(conn: AsyncConnection, purchase_order_id: str, *, qty: int | None,
                                expected_date: date | None, supplier_reference: str | None,
                                actor: str | None) -> PurchaseOrder:
    po = await get_purchase_order(conn, purchase_order_id, lock=True)
    changed, problems = rules.change(po, qty=qty, expected_date=expected_date,
                                     supplier_reference=supplier_reference, today=today())
    if changed is None:
        raise StockRefused(problems)
    await _store(conn, changed, actor)
    await _publish(conn, changed, "changed")
    return changed


async def cancel_purchase_order(conn: AsyncConnection, purchase_order_id: str, actor: str | None) -> PurchaseOrder:
    po = await get_purchase_order(conn, purchase_order_id, lock=True)
    cancelled, problems = rules.cancel(po)
    if cancelled is None:
        raise StockRefused(problems)
    await _store(conn, cancelled, actor)
    await _publish(conn, cancelled, "cancelled")
    return cancelled


async def receive_purchase_order(conn: AsyncConnection, purchase_order_id: str, *, reference: str, bin: str,
                                 lot: str, qty: int, received_at: datetime | None, expires_at: datetime | None,
                                 actor: str | None) -> tuple[PurchaseOrder, list[LedgerEntry]]:
    """Book the goods receipt of the order's SKU at its location and close the order (received,
    possibly short). The StockAdjusted is written before the PurchaseOrderChanged (same key), so
    allocation has the stock when it hears the order was received."""
    po = await get_purchase_order(conn, purchase_order_id, lock=True)
    received, problems = rules.receive(po, qty, reference)
    if received is None:
        raise StockRefused(problems)
    try:
        entries = await receive_goods(conn, po.location_id, reference,
                                      [ReceiptLine(po.sku, bin, lot, qty, received_at, expires_at)], actor,
                                      purchase_order_id=po.purchase_order_id)
    except StockRefused as exc:  # the one receipt line's fields are this body's own
        raise StockRefused([Problem(p.field.removeprefix("lines.0."), p.problem) for p in exc.problems]) from exc
    await _store(conn, received, actor)
    await _publish(conn, received, "received")
    return received, entries
