"""How the console turns what staff type into a service's request body, and a report into tables."""

from __future__ import annotations

from services.console.pages_dropship import stated_lines
from services.console.pages_reports import by_currency
from services.console.web import texts


def test_stated_stock_is_one_sku_and_quantity_a_line_and_a_bad_quantity_goes_as_typed() -> None:
    assert stated_lines("A-1 5\n\nB-2, 0\nC-3 many\nD-4") == [
        {"sku": "A-1", "qty": 5}, {"sku": "B-2", "qty": 0}, {"sku": "C-3", "qty": "many"}, {"sku": "D-4", "qty": None}]


def test_sales_rows_are_split_by_currency_never_added_across() -> None:
    rows = [{"key": "web", "currency": "USD"}, {"key": "web", "currency": "EUR"}, {"key": "pos", "currency": "EUR"}]
    assert by_currency(rows) == {"EUR": [rows[1], rows[2]], "USD": [rows[0]]}


def test_form_texts_are_stripped_and_missing_ones_empty() -> None:
    assert texts({"sku": "  A-1 ", "qty": 3}, "sku", "qty", "bin") == {"sku": "A-1", "qty": "3", "bin": ""}
