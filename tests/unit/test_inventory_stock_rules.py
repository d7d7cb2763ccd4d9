"""Pure rules of stock positions: adjustments, transfers, and booking changes in order."""

from datetime import UTC, datetime, timedelta

from services.inventory.domain.stock import (
    PositionKey,
    StockChange,
    StockPosition,
    Transfer,
    apply_changes,
    check_adjustment,
    check_receipt_dates,
    check_transfer,
)

KEY = PositionKey("SKU-1", "WH1", "A-01", "L1")
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_adjustment_needs_a_known_reason_code_and_a_nonzero_delta():
    problems = check_adjustment(0, "lost-in-space")
    assert {p.field for p in problems} == {"delta", "reason_code"}


def test_damage_and_theft_only_remove_stock_found_only_adds():
    assert check_adjustment(-2, "damage") == []
    assert check_adjustment(-1, "theft") == []
    assert [p.field for p in check_adjustment(3, "damage")] == ["delta"]
    assert [p.field for p in check_adjustment(-3, "found")] == ["delta"]
    assert check_adjustment(-3, "correction") == [] and check_adjustment(3, "other") == []


def test_changes_raise_seq_by_one_each_and_report_the_absolute_on_hand():
    positions = {KEY: StockPosition(KEY, on_hand=5, seq=7)}
    entries, refusals = apply_changes(
        positions, [StockChange(KEY, 3, "receipt"), StockChange(KEY, -8, "shipment")]
    )
    assert refusals == []
    assert [(e.on_hand_after, e.seq) for e in entries] == [(8, 8), (0, 9)]
    assert positions[KEY].on_hand == 0 and positions[KEY].seq == 9


def test_a_change_below_zero_is_refused_naming_the_change():
    positions = {KEY: StockPosition(KEY, on_hand=2, seq=1)}
    _, refusals = apply_changes(
        positions, [StockChange(KEY, 1, "receipt"), StockChange(KEY, -4, "adjustment")]
    )
    assert [r.index for r in refusals] == [1]
    assert "only 3 on hand" in refusals[0].problem


def test_removing_from_a_position_that_does_not_exist_is_refused():
    _, refusals = apply_changes({}, [StockChange(KEY, -1, "adjustment")])
    assert refusals and refusals[0].problem == "no stock at this position"


def test_transfer_moves_out_then_in_keeping_the_lot():
    t = Transfer("SKU-1", "WH1", "A-01", "L1", "WH2", "B-02", 4)
    out, into = t.changes()
    assert (out.key, out.delta, out.reason) == (KEY, -4, "transfer_out")
    assert (into.key, into.delta, into.reason) == (
        PositionKey("SKU-1", "WH2", "B-02", "L1"),
        4,
        "transfer_in",
    )


def test_transfer_to_the_same_position_or_of_nothing_is_refused():
    problems = check_transfer(KEY, KEY, 0)
    assert {p.field for p in problems} == {"qty", "to_bin"}


def test_quarantined_stock_is_never_available():
    assert StockPosition(KEY, on_hand=5, reserved=2).available == 3
    assert StockPosition(KEY, on_hand=5, sellable=False).available == 0


def test_a_shipment_beyond_the_records_is_booked_after_a_correction():
    positions = {KEY: StockPosition(KEY, on_hand=2, seq=4)}
    shipment = StockChange(
        KEY, -5, "shipment", "shp-1", order_id="o-1", allocation_id=9, cover_shortfall=True
    )
    entries, refusals = apply_changes(positions, [shipment])
    assert refusals == []
    assert [(e.change.reason, e.change.delta, e.on_hand_after, e.seq, e.index) for e in entries] == [
        ("adjustment", 3, 5, 5, 0),
        ("shipment", -5, 0, 6, 0),
    ]
    assert entries[0].change.reason_code == "correction"
    assert sum(e.change.delta for e in entries) == -2 and positions[KEY].on_hand == 0


def test_a_lot_that_would_arrive_expired_is_refused_naming_its_expiry():
    day = timedelta(days=1)
    assert check_receipt_dates(NOW - 5 * day, NOW - 4 * day, NOW, field="lines.0") == []  # valid, already old
    assert check_receipt_dates(None, NOW + day, NOW, field="lines.0") == []
    assert check_receipt_dates(NOW, None, NOW, field="lines.0") == []
    [before_receipt] = check_receipt_dates(NOW - 3 * day, NOW - 4 * day, NOW, field="lines.2")
    assert before_receipt.field == "lines.2.expires_at" and "arrive expired" in before_receipt.problem
    [before_now] = check_receipt_dates(None, NOW - day, NOW, field="lines.0")  # no receipt date: received now
    assert before_now.field == "lines.0.expires_at"
