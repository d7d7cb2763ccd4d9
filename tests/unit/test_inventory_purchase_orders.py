"""Purchase-order rules in inventory (pure): what a new, changed, cancelled or received purchase
order may be, each refusal naming its field."""

from __future__ import annotations

from datetime import date, timedelta

from services.inventory.domain import purchase_orders as rules
from services.inventory.domain.purchase_orders import PurchaseOrder

TODAY = date(2026, 11, 23)
PO = PurchaseOrder("po-1", "X", "WH1", 10, TODAY + timedelta(days=3), "SUP-1")


def fields(problems) -> list[str]:  # type: ignore[no-untyped-def]
    return [p.field for p in problems]


def test_a_new_purchase_order_names_every_bad_field():
    assert rules.check_new(sku_known=True, location_known=True, sku="X", location_id="WH1", qty=1,
                           expected_date=TODAY, today=TODAY) == []
    assert fields(rules.check_new(sku_known=False, location_known=False, sku="X", location_id="WH9", qty=0,
                                  expected_date=TODAY - timedelta(days=1), today=TODAY)) == [
        "location_id", "sku", "qty", "expected_date"]


def test_changes_keep_what_is_not_given_and_count_versions():
    changed, problems = rules.change(PO, qty=12, expected_date=None, supplier_reference=None, today=TODAY)
    assert problems == [] and changed is not None
    assert (changed.qty, changed.expected_date, changed.supplier_reference, changed.version) == (
        12, PO.expected_date, "SUP-1", 2)
    _, problems = rules.change(PO, qty=None, expected_date=TODAY - timedelta(days=1), supplier_reference=None,
                               today=TODAY)
    assert fields(problems) == ["expected_date"]


def test_a_receipt_closes_the_order_short_or_not_and_only_an_open_order_takes_one():
    received, _ = rules.receive(PO, 8, "GRN-1")
    assert received is not None
    assert (received.status, received.received_qty, received.receipt_reference, received.version) == (
        "received", 8, "GRN-1", 2)
    cancelled, _ = rules.cancel(PO)
    assert cancelled is not None and cancelled.status == "cancelled"
    for closed in (received, cancelled):
        assert fields(rules.receive(closed, 1, "GRN-2")[1]) == ["purchase_order_id"]
        assert fields(rules.cancel(closed)[1]) == ["purchase_order_id"]
        assert fields(rules.change(closed, qty=1, expected_date=None, supplier_reference=None, today=TODAY)[1]) == [
            "purchase_order_id"]
    assert "is cancelled" in rules.receive(cancelled, 1, "GRN-2")[1][0].problem
