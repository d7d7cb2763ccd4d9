"""Stock take: reading counted sheets (rejected whole, with row numbers) and planning the count."""

import pytest

from services.inventory.domain.stocktake import (
    CountedRow,
    CurrentStock,
    RawSheet,
    parse_count,
    plan_count,
    read_counted_sheet,
)

HEADER = ["sku", "bin", "lot", "on_hand", "reserved", "counted"]
SKUS = {"A", "B"}
BINS = {"X1", "X2"}


def sheet(*rows, header=HEADER):
    return RawSheet(header, 1, [(i + 2, list(r)) for i, r in enumerate(rows)])


def read(s):
    return read_counted_sheet(s, known_skus=SKUS, known_bins=BINS)


def test_exported_sheet_with_counts_is_read_with_spreadsheet_row_numbers():
    rows, problems = read(sheet(["A", "X1", "L1", 5, 0, 4], ["B", "X2", None, 1, 0, "2"]))
    assert problems == []
    assert rows == [CountedRow(2, "A", "X1", "L1", 4), CountedRow(3, "B", "X2", "", 2)]


def test_every_bad_row_is_reported_and_nothing_is_accepted():
    rows, problems = read(
        sheet(
            ["A", "X1", "", 5, 0, 3],  # fine
            ["ZZZ", "X1", "", 0, 0, 1],  # unknown SKU
            ["A", "NOPE", "", 0, 0, 1],  # unknown bin
            ["B", "X2", "", 0, 0, -1],  # negative
            ["B", "X1", "", 0, 0, "lots"],  # not a number
            ["A", "X1", "", 5, 0, 3],  # duplicate of row 2
            ["B", "X2", "L9", 0, 0, 2.5],  # not whole
        )
    )
    assert rows == []
    found = {(p.row, p.column) for p in problems}
    assert found == {(3, "sku"), (4, "bin"), (5, "counted"), (6, "counted"), (7, None), (8, "counted")}
    assert any("duplicate of row 2" in p.problem for p in problems)


def test_missing_or_unknown_columns_reject_the_sheet():
    _, problems = read(sheet(["A", "X1", 3], header=["sku", "bin", "qty"]))
    assert {(p.row, p.column) for p in problems} == {(1, "lot"), (1, "counted"), (1, "qty")}


def test_empty_counted_cell_is_an_error_and_blank_rows_are_skipped():
    rows, problems = read(sheet(["A", "X1", "", 5, 0, None], [None, None, None, None, None, None]))
    assert [(p.row, p.column) for p in problems] == [(2, "counted")]


def test_a_sheet_without_rows_is_rejected():
    _, problems = read(sheet())
    assert problems and "no rows" in problems[0].problem


def test_spreadsheet_numbers_are_read_as_codes_and_counts():
    rows, problems = read_counted_sheet(
        sheet([1001.0, "X1", 7, None, None, 3.0]), known_skus={"1001"}, known_bins=BINS
    )
    assert problems == [] and rows == [CountedRow(2, "1001", "X1", "7", 3)]


@pytest.mark.parametrize("value,expected", [(0, 0), ("12", 12), (" 3 ", 3), (4.0, 4), ("5.0", 5)])
def test_counts_accept_whole_numbers(value, expected):
    assert parse_count(value) == (expected, None)


@pytest.mark.parametrize("value", [-1, "-2", "abc", 1.5, True, float("nan"), ""])
def test_counts_refuse_anything_else(value):
    assert parse_count(value)[1] is not None


CURRENT = [
    CurrentStock("A", "X1", "L1", on_hand=10, reserved=4),
    CurrentStock("A", "X2", "L1", on_hand=6, reserved=0),
    CurrentStock("B", "X2", "", on_hand=3, reserved=3),
]


def test_all_bins_counts_missing_positions_as_zero_but_protects_reserved():
    lines = plan_count([CountedRow(2, "A", "X1", "L1", 8)], CURRENT, mode="all_bins", release_shortfall=False)
    by_key = {(ln.sku, ln.bin): ln for ln in lines}
    assert by_key["A", "X1"].new_on_hand == 8 and by_key["A", "X1"].delta == -2
    assert by_key["A", "X2"].new_on_hand == 0 and by_key["A", "X2"].row is None
    assert by_key["B", "X2"].new_on_hand == 3 and by_key["B", "X2"].delta == 0  # reserved 3 kept
    assert any("kept at 3" in p for p in by_key["B", "X2"].problems)


def test_all_bins_with_release_shortfall_counts_below_reserved_and_flags_it():
    lines = plan_count([CountedRow(2, "A", "X1", "L1", 1)], CURRENT, mode="all_bins", release_shortfall=True)
    by_key = {(ln.sku, ln.bin): ln for ln in lines}
    assert by_key["A", "X1"].new_on_hand == 1 and by_key["A", "X1"].release_shortfall
    assert by_key["B", "X2"].new_on_hand == 0 and by_key["B", "X2"].release_shortfall
    assert not by_key["A", "X2"].release_shortfall


def test_specific_bins_changes_only_the_listed_rows_and_never_goes_below_reserved():
    lines = plan_count(
        [CountedRow(2, "A", "X1", "L1", 2), CountedRow(3, "B", "X2", "L7", 5)],
        CURRENT,
        mode="specific_bins",
        release_shortfall=False,
    )
    assert [(ln.sku, ln.bin, ln.lot, ln.new_on_hand, ln.delta) for ln in lines] == [
        ("A", "X1", "L1", 4, -6),  # protected at the 4 reserved
        ("B", "X2", "L7", 5, 5),  # a lot found in a known bin: new position
    ]


def test_protection_never_adds_stock_that_was_not_there():
    current = [CurrentStock("A", "X1", "", on_hand=2, reserved=5)]  # a decrease not yet reallocated
    [line] = plan_count(
        [CountedRow(2, "A", "X1", "", 0)], current, mode="specific_bins", release_shortfall=False
    )
    assert line.new_on_hand == 2 and line.delta == 0


def test_release_shortfall_is_refused_in_specific_bins_mode():
    with pytest.raises(ValueError):
        plan_count([], CURRENT, mode="specific_bins", release_shortfall=True)
