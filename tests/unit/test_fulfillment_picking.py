"""Pick lists: batch picking across orders, grouped by location, in bin walking order."""

from services.fulfillment.domain.picking import AllocatedStock, bin_order, build_pick_lists


def stock(order_id: str, line_id: str, aid: int, sku: str, bin_: str, qty: int, *, lot: str = "",
          location: str = "WH1") -> AllocatedStock:
    return AllocatedStock(order_id, line_id, aid, sku, location, bin_, lot, qty)


def test_same_sku_bin_and_lot_of_several_orders_is_one_row_with_the_total():
    [pick] = build_pick_lists([
        stock("o2", "L1", 2, "SCREW", "A-1", 3),
        stock("o1", "L1", 1, "SCREW", "A-1", 5),
    ])
    [row] = pick.rows
    assert (row.sku, row.bin, row.qty) == ("SCREW", "A-1", 8)
    assert [(t.order_id, t.qty) for t in row.targets] == [("o1", 5), ("o2", 3)]


def test_rows_are_sorted_by_bin_then_sku_with_numbers_in_bins_compared_as_numbers():
    [pick] = build_pick_lists([
        stock("o1", "L1", 1, "Z", "A-10", 1),
        stock("o1", "L2", 2, "B", "A-2", 1),
        stock("o1", "L3", 3, "A", "A-2", 1),
        stock("o1", "L4", 4, "C", "B-1", 1),
    ])
    assert [(r.bin, r.sku) for r in pick.rows] == [("A-2", "A"), ("A-2", "B"), ("A-10", "Z"), ("B-1", "C")]


def test_different_lots_in_one_bin_stay_separate_rows():
    [pick] = build_pick_lists([
        stock("o1", "L1", 1, "SCREW", "A-1", 15, lot="A"),
        stock("o1", "L1", 2, "SCREW", "A-1", 10, lot="B"),
    ])
    assert [(r.lot, r.qty) for r in pick.rows] == [("A", 15), ("B", 10)]


def test_one_pick_list_per_location():
    lists = build_pick_lists([
        stock("o1", "L1", 1, "SCREW", "A-1", 1, location="WH2"),
        stock("o1", "L2", 2, "NUT", "A-1", 2, location="WH1"),
    ])
    assert [(p.location_id, p.total_qty) for p in lists] == [("WH1", 2), ("WH2", 1)]


def test_bin_order_is_natural():
    assert sorted(["R10-S2", "R2-S10", "R2-S9"], key=bin_order) == ["R2-S9", "R2-S10", "R10-S2"]
