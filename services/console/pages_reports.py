"""Reports: sales by channel, SKU or day (order intake), one table per currency."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from services.console.client import ServiceRefused
from services.console.web import Outcome, call, page, refused, texts

router = APIRouter()

GROUPS = {"channel": "Channel", "sku": "SKU", "day": "Day placed (UTC)"}
MEASURES = ["ordered", "cancelled", "backordered", "allocated", "shipped", "returned"]
INPUTS = ["group_by", "date_from", "date_to", "channel", "currency"]


def by_currency(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The report's rows, one table per currency (values are never added across currencies)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        tables.setdefault(row["currency"], []).append(row)
    return dict(sorted(tables.items()))


@router.get("/reports/sales", response_class=HTMLResponse)
async def sales_page(request: Request) -> HTMLResponse:
    filters = texts(request.query_params, *INPUTS)
    filters["group_by"] = filters["group_by"] or "channel"
    params = {k: v for k, v in filters.items() if v}
    outcome, tables = Outcome(), {}
    try:
        report = await call(request, "GET", "order_intake", "/v1/reports/sales", params=params)
        tables = by_currency(report["rows"])
    except ServiceRefused as exc:  # a bad filter is named beside its input; a service down, at the form's head
        outcome = refused(exc, filters, INPUTS)
    return page(request, "sales.html", filters=filters, groups=GROUPS, measures=MEASURES, tables=tables,
                outcome=outcome)
