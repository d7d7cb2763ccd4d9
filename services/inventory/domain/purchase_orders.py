"""Pure rules of purchase orders: an expected receipt of one SKU at one location, open until it
is received (once, possibly short) or cancelled.

A refusal names the request field it is about, so the HTTP answer can say which one."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date

from libs.contracts.problems import Problem

OPEN, CANCELLED, RECEIVED = "open", "cancelled", "received"


@dataclass(frozen=True, slots=True)
class PurchaseOrder:
    purchase_order_id: str
    sku: str
    location_id: str
    qty: int
    expected_date: date
    supplier_reference: str | None = None
    status: str = OPEN
    received_qty: int = 0
    receipt_reference: str | None = None
    version: int = 1


def check_terms(qty: int | None, expected_date: date | None, today: date) -> list[Problem]:
    """Quantity and date of a new or changed purchase order (None: not given, nothing to check)."""
    problems = []
    if qty is not None and qty <= 0:
        problems.append(Problem("qty", "must be a whole number >= 1"))
    if expected_date is not None and expected_date < today:
        problems.append(Problem("expected_date", f"{expected_date.isoformat()} is in the past (today is {today.isoformat()})"))
    return problems


def check_new(*, sku_known: bool, location_known: bool, sku: str, location_id: str, qty: int,
              expected_date: date, today: date) -> list[Problem]:
    """A new purchase order: a SKU inventory knows (it has a position somewhere), a known location,
    a positive quantity and an expected date not in the past."""
    problems = []
    if not location_known:
        problems.append(Problem("location_id", f"unknown location {location_id!r}"))
    if not sku_known:
        problems.append(Problem("sku", f"unknown SKU {sku!r} (inventory has never held it)"))
    return problems + check_terms(qty, expected_date, today)


def _must_be_open(po: PurchaseOrder, doing: str) -> list[Problem]:
    if po.status == OPEN:
        return []
    return [Problem("purchase_order_id", f"purchase order {po.purchase_order_id} is {po.status}: cannot {doing}")]


def change(po: PurchaseOrder, *, qty: int | None, expected_date: date | None, supplier_reference: str | None,
           today: date) -> tuple[PurchaseOrder | None, list[Problem]]:
    """The changed purchase order, or every problem (an order no longer open cannot change)."""
    problems = _must_be_open(po, "be changed") + check_terms(qty, expected_date, today)
    if problems:
        return None, problems
    return replace(
        po,
        qty=po.qty if qty is None else qty,
        expected_date=po.expected_date if expected_date is None else expected_date,
        supplier_reference=po.supplier_reference if supplier_reference is None else supplier_reference,
        version=po.version + 1,
    ), []


def cancel(po: PurchaseOrder) -> tuple[PurchaseOrder | None, list[Problem]]:
    problems = _must_be_open(po, "be cancelled")
    if problems:
        return None, problems
    return replace(po, status=CANCELLED, version=po.version + 1), []


def receive(po: PurchaseOrder, qty: int, reference: str) -> tuple[PurchaseOrder | None, list[Problem]]:
    """Book the receipt against the order: it closes the order whatever the quantity (fewer units
    than ordered is a short receipt, the rest is not coming)."""
    problems = _must_be_open(po, "book a receipt against it")
    if qty <= 0:
        problems.append(Problem("qty", "must be a whole number >= 1"))
    if problems:
        return None, problems
    return replace(po, status=RECEIVED, received_qty=qty, receipt_reference=reference, version=po.version + 1), []
