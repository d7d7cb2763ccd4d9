"""HTTP API of dropship requests (fulfillment, port 8004), beside ``http.py``: what suppliers
are asked to ship, and their answers (confirm with carrier and tracking, or refuse).

Bad input: 422 naming the field; an unknown request: 404 naming ``request_id``; a request
already answered (or not sent yet): 409 naming ``request_id``. Nothing changes then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.contracts.orders import Address
from libs.contracts.storable import Text as Storable
from libs.service_host import Runtime
from libs.service_host.auth import OPERATOR, VIEWER, AccessTable
from libs.service_host.bodies import JsonBodyRoute
from libs.service_host.errors import problem_response
from services.fulfillment.domain.packing import ShipRefused
from services.fulfillment.service_layer.dropship import (
    RequestAnswered,
    RequestNotFound,
    confirm,
    list_requests,
    refuse,
    request_view,
)

Text = Annotated[Storable, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Status = Literal["pending", "requested", "rejected", "confirmed", "refused"]


class ConfirmRequest(BaseModel):
    """The supplier shipped the request's lines."""

    model_config = ConfigDict(extra="forbid")
    carrier: Text
    tracking_number: Text


class RefuseRequest(BaseModel):
    """The supplier will not ship the request's lines."""

    model_config = ConfigDict(extra="forbid")
    reason: Annotated[Storable, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class DropshipLineOut(BaseModel):
    allocation_id: int
    line_id: str
    sku: str
    qty: int


class DropshipRequestOut(BaseModel):
    request_id: str = Field(description="the reference the supplier answers with (also the shipment's id)")
    order_id: str
    location_id: str = Field(description="the supplier's dropship location")
    status: Status = Field(description="pending: waiting for allocation to lock the units; requested: sent to the "
                           "supplier; rejected: allocation had nothing to lock; confirmed: shipped; refused")
    line_ids: list[str]
    lines: list[DropshipLineOut]
    ship_to: Address | None
    reason: str | None
    carrier: str | None
    tracking_number: str | None
    created_at: datetime
    requested_at: datetime | None
    answered_at: datetime | None


def _not_found(request_id: str) -> JSONResponse:
    return JSONResponse(
        {"detail": [{"field": "request_id", "problem": f"no dropship request {request_id!r}"}]}, status_code=404)


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["fulfillment"], route_class=JsonBodyRoute)
    engine = runtime.engine

    @router.get("/dropship-requests", summary="Dropship requests, newest first",
                responses={200: {"model": list[DropshipRequestOut]}})
    async def get_requests(location_id: str | None = None, status: Status | None = None,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Any:
        async with engine.connect() as conn:
            return await list_requests(conn, location_id, status, limit)

    @router.get("/dropship-requests/{request_id}", summary="One dropship request",
                responses={200: {"model": DropshipRequestOut}})
    async def get_request(request_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await request_view(conn, request_id)
            except RequestNotFound:
                return _not_found(request_id)

    @router.post("/dropship-requests/{request_id}/confirm",
                 summary="The supplier shipped the request's lines (publishes OrderShipped, as a shipment does)",
                 responses={200: {"model": DropshipRequestOut}})
    async def post_confirm(request_id: str, body: ConfirmRequest) -> Any:
        try:
            async with runtime.transaction() as conn:
                await confirm(conn, request_id, body.carrier, body.tracking_number)
        except RequestNotFound:
            return _not_found(request_id)
        except RequestAnswered as exc:
            return problem_response([exc.problem], status=409)
        except ShipRefused as exc:
            return problem_response(exc.problems, status=409)
        async with engine.connect() as conn:
            return await request_view(conn, request_id)

    @router.post("/dropship-requests/{request_id}/refuse",
                 summary="The supplier will not ship the request's lines (publishes DropshipRefused: the supplier's "
                 "stated stock falls by them and allocation allocates them again)",
                 responses={200: {"model": DropshipRequestOut}})
    async def post_refuse(request_id: str, body: RefuseRequest) -> Any:
        try:
            async with runtime.transaction() as conn:
                await refuse(conn, request_id, body.reason)
        except RequestNotFound:
            return _not_found(request_id)
        except RequestAnswered as exc:
            return problem_response([exc.problem], status=409)
        async with engine.connect() as conn:
            return await request_view(conn, request_id)

    return router


ACCESS: AccessTable = {
    ("GET", "/v1/dropship-requests"): VIEWER,
    ("GET", "/v1/dropship-requests/{request_id}"): VIEWER,
    ("POST", "/v1/dropship-requests/{request_id}/confirm"): OPERATOR,
    ("POST", "/v1/dropship-requests/{request_id}/refuse"): OPERATOR,
}
