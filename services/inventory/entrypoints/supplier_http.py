"""HTTP API of dropship suppliers' stated stock (inventory, port 8002), beside ``http.py``.

``PUT /v1/locations/{location_id}/supplier-stock``: set what a dropship supplier says it has,
per SKU (publishes StockAdjusted reason ``supplier_stock``). Bad input: 422 naming the field;
nothing changes.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.contracts.storable import Text
from libs.service_host import Runtime
from libs.service_host.auth import OPERATOR, AccessTable
from libs.service_host.bodies import JsonBodyRoute
from libs.service_host.errors import peer_unavailable, problem_response
from services.inventory.adapters.allocation_api import AllocationReservations
from services.inventory.entrypoints.common import ChangeOut, Code
from services.inventory.service_layer.reservations import Reservations, ReservationsUnavailable
from services.inventory.service_layer.stock import StockRefused, entry_view
from services.inventory.service_layer.supplier_stock import (
    StatedStock,
    UnknownDropshipLocation,
    set_supplier_stock,
)


class StatedStockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Code
    qty: int = Field(ge=0, le=10_000_000, strict=True, description="the units the supplier says it can ship")


class SupplierStockIn(BaseModel):
    """The supplier's stated stock of some SKUs (the others stay as they are)."""

    model_config = ConfigDict(extra="forbid")
    lines: list[StatedStockIn] = Field(min_length=1, max_length=5000)
    reference: Annotated[Text, StringConstraints(max_length=200)] | None = Field(
        default=None, description="e.g. the supplier feed's id")


class StatedStockOut(BaseModel):
    sku: str
    on_hand: int = Field(description="the stated stock now")
    requested: int = Field(description="units already requested from the supplier (allocated, not shipped)")
    changed: bool


class SupplierStockOut(BaseModel):
    location_id: str
    lines: list[StatedStockOut]
    changes: list[ChangeOut] = Field(description="the ledger entries booked (reason supplier_stock)")


def build_router(runtime: Runtime, reservations: Reservations | None = None) -> APIRouter:
    """``reservations``: what is already requested from the supplier (allocation's HTTP API by default)."""
    router = APIRouter(prefix="/v1", tags=["inventory"], route_class=JsonBodyRoute)
    reserved_by: Reservations = reservations or AllocationReservations()

    @router.put(
        "/locations/{location_id}/supplier-stock",
        summary="Set a dropship supplier's stated stock per SKU (publishes StockAdjusted reason supplier_stock); "
        "never below what is already requested from it",
        responses={200: {"model": SupplierStockOut}},
    )
    async def put_supplier_stock(
        location_id: str, body: SupplierStockIn, x_actor: Annotated[str | None, Header()] = None
    ) -> Any:
        lines = [StatedStock(ln.sku, ln.qty) for ln in body.lines]
        try:
            async with runtime.transaction() as conn:
                results = await set_supplier_stock(
                    conn, location_id, lines, reserved_by, reference=body.reference, actor=x_actor)
        except UnknownDropshipLocation:
            return JSONResponse(
                {"detail": [{"field": "location_id", "problem": f"no location {location_id!r}"}]}, status_code=404)
        except StockRefused as exc:
            return problem_response(exc.problems)
        except ReservationsUnavailable as exc:
            return peer_unavailable("allocation", f"what is requested from the supplier is unknown: {exc}")
        return {
            "location_id": location_id,
            "lines": [
                {"sku": r.sku, "on_hand": r.on_hand, "requested": r.requested, "changed": r.change is not None}
                for r in results
            ],
            "changes": [entry_view(r.change) for r in results if r.change is not None],
        }

    return router


ACCESS: AccessTable = {
    ("PUT", "/v1/locations/{location_id}/supplier-stock"): OPERATOR,
}
