"""HTTP API of inventory (port 8002). Handlers parse, call one use case, and answer.

Bad input: 422 ``{"detail": [{"field", "problem"}, ...]}`` listing every problem; nothing changes.
``X-Actor`` (optional) names who did it; it is written to the ledger and the events.
"""

from __future__ import annotations

from fastapi import APIRouter

from libs.service_host import Runtime
from libs.service_host.auth import ADMIN, OPERATOR, VIEWER, AccessTable
from libs.service_host.bodies import JsonBodyRoute
from services.inventory.adapters.allocation_api import AllocationReservations
from services.inventory.entrypoints.locations import add_location_routes
from services.inventory.entrypoints.purchase_orders import ACCESS as PURCHASE_ORDER_ACCESS
from services.inventory.entrypoints.purchase_orders import add_purchase_order_routes
from services.inventory.entrypoints.stock import add_stock_routes
from services.inventory.entrypoints.stocktakes import add_stocktake_routes
from services.inventory.service_layer.reservations import Reservations


def build_router(runtime: Runtime, reservations: Reservations | None = None) -> APIRouter:
    """``reservations``: where reserved quantities come from (allocation's HTTP API by default).
    Each route group is its own module with its models; who may call them is ``ACCESS`` below."""
    router = APIRouter(prefix="/v1", tags=["inventory"], route_class=JsonBodyRoute)
    reserved_by: Reservations = reservations or AllocationReservations()
    add_location_routes(router, runtime)
    add_stock_routes(router, runtime, reserved_by)  # receipts, adjustments, transfers; positions, ledger
    add_stocktake_routes(router, runtime, reserved_by)
    add_purchase_order_routes(router, runtime)  # purchase orders (expected receipts)
    return router


# Who may call each route (libs/service_host/auth.py); the host refuses to serve a route missing here.
ACCESS: AccessTable = {
    ("POST", "/v1/locations"): ADMIN,
    ("PATCH", "/v1/locations/{location_id}"): ADMIN,
    ("GET", "/v1/locations"): VIEWER,
    ("GET", "/v1/locations/{location_id}"): VIEWER,
    ("POST", "/v1/receipts"): OPERATOR,
    ("POST", "/v1/adjustments"): OPERATOR,
    ("POST", "/v1/transfers"): OPERATOR,
    ("GET", "/v1/stock/{sku}"): VIEWER,
    ("GET", "/v1/ledger"): VIEWER,
    ("GET", "/v1/stocktakes/export"): VIEWER,
    ("POST", "/v1/stocktakes"): OPERATOR,
    ("GET", "/v1/stocktakes/{stocktake_id}"): VIEWER,
    ("POST", "/v1/stocktakes/{stocktake_id}/submit"): OPERATOR,
    **PURCHASE_ORDER_ACCESS,
}
