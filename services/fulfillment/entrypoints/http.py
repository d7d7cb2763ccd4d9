"""HTTP API of fulfillment (port 8004): pick lists, packing, shipping, returns, serialized SKUs.

Handlers parse, call one use case and translate its outcome to a status code.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.contracts.events import ReturnLine
from libs.contracts.problems import ProblemAnswer
from libs.contracts.storable import Text as Storable
from libs.service_host import Runtime
from libs.service_host.auth import ADMIN, OPERATOR, VIEWER, AccessTable
from libs.service_host.bodies import JsonBodyRoute
from libs.service_host.errors import peer_unavailable, problem_response
from services.fulfillment.adapters.intake_api import IntakePrices
from services.fulfillment.domain.packing import PackRefused, ShipRefused
from services.fulfillment.domain.returns import ReturnRefused, ReturnRequestLine
from services.fulfillment.service_layer.packing import (
    OrderNotFound,
    ShipmentNotFound,
    await_pack_answer,
    pick_lists,
    request_pack_when_mirrored,
    set_serialized,
    ship_shipment,
    shipment_view,
)
from services.fulfillment.service_layer.prices import Prices, PricesUnavailable
from services.fulfillment.service_layer.returns import receive_return

Text = Annotated[Storable, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Serial = Annotated[Storable, StringConstraints(max_length=200)]


class PackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_ids: list[Text] | None = Field(default=None, description="omit to pack every allocated line")
    serials: dict[Storable, list[Serial]] = Field(default_factory=dict, description="line_id -> one serial per unit")


class ShipRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    carrier: Text
    tracking_number: Text


class ReturnLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_id: Text
    qty: int = Field(gt=0, le=1_000_000, strict=True)
    condition: Literal["sellable", "damaged"]
    location_id: Text
    bin: Text
    lot: Annotated[Storable, StringConstraints(max_length=200)] = ""


class ReturnRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    order_id: Text
    lines: list[ReturnLineIn] = Field(min_length=1, max_length=500)


class SkuSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    serialized: bool


class SkuSettingsOut(BaseModel):
    sku: str
    serialized: bool


class PickTarget(BaseModel):
    order_id: str
    line_id: str
    allocation_id: int
    qty: int


class PickRow(BaseModel):
    sku: str
    bin: str
    lot: str
    qty: int
    orders: list[PickTarget] = Field(description="who the picked units are for")


class PickList(BaseModel):
    location_id: str
    total_qty: int
    rows: list[PickRow] = Field(description="sorted by bin")


class ShipmentLineOut(BaseModel):
    allocation_id: int
    line_id: str
    sku: str
    location_id: str
    bin: str
    lot: str
    qty: int
    serials: list[str]


class ShipmentOut(BaseModel):
    shipment_id: str
    order_id: str
    status: str = Field(description="pending (allocation has not answered) | packed | rejected | shipped")
    detail: str | None
    requested_line_ids: list[str] | None
    carrier: str | None
    tracking_number: str | None
    requested_at: datetime
    packed_at: datetime | None
    rejected_at: datetime | None
    shipped_at: datetime | None
    total_qty: int
    lines: list[ShipmentLineOut]


class ReturnOut(BaseModel):
    return_id: str
    order_id: str
    currency: str
    refund_total: str = Field(description="decimal, as a string")
    lines: list[ReturnLine]


def _jsonable(doc: dict[str, Any]) -> Any:
    return orjson.loads(orjson.dumps(doc, default=str))


def _prices_unavailable(exc: PricesUnavailable) -> JSONResponse:
    """Prices are order intake's: without them no refund can be computed; nothing was recorded."""
    return peer_unavailable("order_intake", f"order prices unavailable: {exc}")


def build_router(runtime: Runtime, *, pack_wait_seconds: float = 10.0, prices: Prices | None = None) -> APIRouter:
    """``prices``: where a return's unit prices come from (order intake's HTTP API by default)."""
    router = APIRouter(prefix="/v1", tags=["fulfillment"], route_class=JsonBodyRoute)
    engine = runtime.engine
    order_prices: Prices = prices or IntakePrices()

    @router.get(
        "/picklists", summary="Pick lists per location: allocated, not yet packed, sorted by bin",
        responses={200: {"model": list[PickList]}},
    )
    async def get_picklists(location_id: str | None = None) -> Any:
        async with engine.connect() as conn:
            return await pick_lists(conn, location_id)

    @router.post(
        "/orders/{order_id}/pack",
        summary="Pack what is allocated (optionally only some lines)",
        responses={
            200: {"description": "packed", "model": ShipmentOut},
            202: {"description": "allocation has not answered yet", "model": ShipmentOut},
            404: {"description": "unknown order"},
            409: {"description": "nothing to pack or refused", "model": ProblemAnswer},
            422: {"description": "bad lines or serial numbers", "model": ProblemAnswer},
        },
    )
    async def post_pack(order_id: str, body: PackRequest | None = None) -> Any:
        body = body or PackRequest()
        try:
            shipment_id = await request_pack_when_mirrored(runtime.transaction, order_id, body.line_ids, body.serials)
        except OrderNotFound:
            raise HTTPException(404, f"no order {order_id}") from None
        except PackRefused as exc:
            return problem_response(exc.problems, 422 if exc.kind == "invalid" else 409)
        shipment = _jsonable(await await_pack_answer(engine, shipment_id, wait_seconds=pack_wait_seconds))
        if shipment["status"] == "rejected":
            return JSONResponse(
                {
                    "detail": [{"field": "order", "problem": shipment["detail"]}],
                    "shipment_id": shipment_id,
                    "status": "rejected",
                },
                status_code=409,
            )
        return JSONResponse(shipment, status_code=200 if shipment["status"] == "packed" else 202)

    @router.get(
        "/shipments/{shipment_id}", summary="A shipment: status, carrier, lines with serials",
        responses={200: {"model": ShipmentOut}},
    )
    async def get_shipment(shipment_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return _jsonable(await shipment_view(conn, shipment_id))
            except ShipmentNotFound:
                raise HTTPException(404, f"no shipment {shipment_id}") from None

    @router.post(
        "/shipments/{shipment_id}/ship", summary="Ship a packed shipment with carrier and tracking number",
        responses={200: {"model": ShipmentOut}},
    )
    async def post_ship(shipment_id: str, body: ShipRequest) -> Any:
        try:
            async with runtime.transaction() as conn:
                await ship_shipment(conn, shipment_id, body.carrier, body.tracking_number)
        except ShipmentNotFound:
            raise HTTPException(404, f"no shipment {shipment_id}") from None
        except ShipRefused as exc:
            return problem_response(exc.problems, 422 if exc.kind == "invalid" else 409)
        async with engine.connect() as conn:
            return _jsonable(await shipment_view(conn, shipment_id))

    @router.post(
        "/returns", status_code=201, summary="Receive returned units of shipped lines; records the refund",
        responses={
            201: {"model": ReturnOut},
            503: {"description": "order intake cannot be asked for the lines' prices; nothing recorded",
                  "model": ProblemAnswer},
        },
    )
    async def post_return(body: ReturnRequest) -> Any:
        lines = [
            ReturnRequestLine(ln.line_id, ln.qty, ln.condition, ln.location_id, ln.bin, ln.lot)
            for ln in body.lines
        ]
        try:
            prices = await order_prices.of_order(body.order_id)  # before the transaction: no lock held over HTTP
        except PricesUnavailable as exc:
            return _prices_unavailable(exc)
        if prices is None:
            raise HTTPException(404, f"no order {body.order_id}")
        try:
            async with runtime.transaction() as conn:
                result = await receive_return(conn, body.order_id, lines, prices)
        except PricesUnavailable as exc:
            return _prices_unavailable(exc)
        except OrderNotFound:
            raise HTTPException(404, f"no order {body.order_id}") from None
        except ReturnRefused as exc:
            return problem_response(exc.problems)
        return JSONResponse(result, status_code=201)

    @router.put(
        "/skus/{sku}", summary="Flag a SKU as serialized (serial numbers required at packing)",
        response_model=SkuSettingsOut,
    )
    async def put_sku(sku: str, body: SkuSettings) -> Any:
        async with engine.begin() as conn:
            await set_serialized(conn, sku, body.serialized)
        return {"sku": sku, "serialized": body.serialized}

    return router


# Who may call each route (libs/service_host/auth.py); the host refuses to serve a route missing here.
ACCESS: AccessTable = {
    ("GET", "/v1/picklists"): VIEWER,
    ("POST", "/v1/orders/{order_id}/pack"): OPERATOR,
    ("GET", "/v1/shipments/{shipment_id}"): VIEWER,
    ("POST", "/v1/shipments/{shipment_id}/ship"): OPERATOR,
    ("POST", "/v1/returns"): OPERATOR,
    ("PUT", "/v1/skus/{sku}"): ADMIN,
}
