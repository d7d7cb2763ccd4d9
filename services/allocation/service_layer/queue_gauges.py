"""Gauges of the backorder queue, read every metrics interval by the host (never per message):
how many order lines wait for stock, how many units, how long the oldest has waited, and how many
SKUs have a long queue being filled chunk by chunk (service_layer/refill.py; it stays above 0 only
while a refill runs: a value that does not fall means the refill loop is stuck)."""

from __future__ import annotations

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

BACKORDER_LINES = Gauge("oms_backorder_lines", "Order lines with units waiting for stock (not on hold)")
BACKORDER_UNITS = Gauge("oms_backorder_units", "Units waiting for stock on order lines not on hold")
BACKORDER_OLDEST_AGE = Gauge(
    "oms_backorder_oldest_age_seconds",
    "Time since the order of the oldest line waiting for stock was placed (0 when none waits)",
)
SKUS_FILLING = Gauge("oms_allocation_skus_filling", "SKUs whose long backorder queue is being filled chunk by chunk")

# order_lines_backordered_idx (placed_at WHERE backordered > 0) keeps this an index scan
_QUERY = text(
    "SELECT count(*), COALESCE(sum(backordered), 0), COALESCE(EXTRACT(EPOCH FROM now() - min(placed_at)), 0) "
    "FROM order_lines WHERE backordered > 0 AND NOT on_hold"
)

_FILLING = text("SELECT count(*) FROM skus WHERE filling")  # skus_filling_idx


async def refresh_backorder_gauges(conn: AsyncConnection) -> None:
    lines, units, oldest = (await conn.execute(_QUERY)).one()
    BACKORDER_LINES.set(lines)
    BACKORDER_UNITS.set(units)
    BACKORDER_OLDEST_AGE.set(max(float(oldest), 0.0))
    SKUS_FILLING.set((await conn.execute(_FILLING)).scalar() or 0)
