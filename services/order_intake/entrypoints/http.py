"""HTTP API of order intake (port 8001)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from libs.contracts.events import LineChange
from libs.contracts.orders import OrderChangeIn, Problem, problems_of
from libs.contracts.storable import INT64_MAX, Text
from libs.service_host import Runtime
from libs.service_host.auth import CHANNEL_KEY, VIEWER, AccessTable, ChannelKeys, Role, StaffOrChannel
from libs.service_host.errors import problem_response as _problems
from services.order_intake.entrypoints.shopify import SIGNED, WEBHOOK_PATH
from services.order_intake.service_layer.placing import Incoming, parse_json, place_orders
from services.order_intake.service_layer.tracking import (
    ChangeRefused,
    OrderNotFound,
    cancel_order,
    list_orders,
    modify_order,
    order_channel,
    order_view,
    orders_by_channel_and_status,
)


class CancelRequest(BaseModel):
    line_ids: list[Text] | None = Field(default=None, description="omit to cancel the whole order")
    reason: Text = Field(default="customer request", max_length=500)


def build_router(runtime: Runtime, api_keys: ChannelKeys) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["orders"])
    engine = runtime.engine

    @router.post("/orders", status_code=201, summary="Place an order (authenticated per channel with X-API-Key)")
    async def post_order(request: Request, x_api_key: Annotated[str | None, Header()] = None) -> JSONResponse:
        document, parse_problem = parse_json(await request.body())
        if parse_problem:
            return _problems([parse_problem])
        if not isinstance(document, dict):
            return _problems([Problem(field="(body)", problem="must be a JSON object")])
        channel = document.get("channel")
        if not isinstance(channel, str) or not api_keys.allows(channel, x_api_key):
            return JSONResponse(
                {"detail": [{"field": "X-API-Key", "problem": "missing, or not the key of this order's channel"}]},
                status_code=401,
                headers={"WWW-Authenticate": 'ApiKey realm="oms", header="X-API-Key"'},
            )
        key = f"{channel}:{document.get('external_id')}"
        async with engine.begin() as conn:
            [outcome] = await place_orders(conn, [Incoming(document, key)], publish_rejections=False)
        if outcome.status == "rejected":
            return _problems(outcome.problems)
        if outcome.status == "conflict":
            return JSONResponse(
                {"detail": [p.model_dump() for p in outcome.problems], "order_id": outcome.order_id}, status_code=409)
        runtime.relay.notify()
        return JSONResponse({"order_id": outcome.order_id, "created": outcome.status == "created"},
                            status_code=201 if outcome.status == "created" else 200)

    @router.get("/orders/{order_id}", summary="An order: every line's quantities by state and its timeline")
    async def get_order(order_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await order_view(conn, order_id)
            except OrderNotFound:
                raise HTTPException(404, f"no order {order_id}") from None

    @router.get("/orders", summary="Orders, newest first, filtered by status and channel")
    async def get_orders(
        status: str | None = None, channel: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    ) -> Any:
        async with engine.connect() as conn:
            return await list_orders(conn, status, channel, limit, offset)

    @router.get("/reports/orders-by-channel-status", summary="Orders by channel and status (SPEC 3.8)")
    async def get_report() -> Any:
        async with engine.connect() as conn:
            return await orders_by_channel_and_status(conn)

    @router.post("/orders/{order_id}/cancel", status_code=202, summary="Cancel the order or some lines")
    async def post_cancel(order_id: str, body: CancelRequest | None = None) -> Any:
        body = body or CancelRequest()
        try:
            async with engine.begin() as conn:
                await cancel_order(conn, order_id, body.line_ids, body.reason)
        except OrderNotFound:
            raise HTTPException(404, f"no order {order_id}") from None
        except ChangeRefused as exc:
            return _problems(exc.problems)
        runtime.relay.notify()
        return {"order_id": order_id, "status": "cancellation requested"}

    @router.patch("/orders/{order_id}", status_code=202, summary="Change line quantities, add lines, or priority")
    async def patch_order(order_id: str, request: Request) -> Any:
        document, parse_problem = parse_json(await request.body())
        if parse_problem:
            return _problems([parse_problem])
        try:
            body = OrderChangeIn.model_validate(document)
        except ValidationError as exc:
            return _problems(problems_of(exc))
        changes = [LineChange.model_construct(**ln.model_dump()) for ln in body.lines]  # validated above
        try:
            async with engine.begin() as conn:
                await modify_order(conn, order_id, changes, body.priority)
        except OrderNotFound:
            raise HTTPException(404, f"no order {order_id}") from None
        except ChangeRefused as exc:
            return _problems(exc.problems)
        runtime.relay.notify()
        return {"order_id": order_id, "status": "modification requested"}

    return router


async def _channel_of_order(request: Request) -> str | None:
    """The channel that placed the order in the path (None: no such order)."""
    order_id = request.path_params.get("order_id", "")
    if "\x00" in order_id:  # PostgreSQL cannot hold it, so no order has it
        return None
    runtime: Runtime = request.app.state.runtime
    async with runtime.engine.connect() as conn:
        return await order_channel(conn, order_id)


# Who may call each route (libs/service_host/auth.py); the host refuses to serve a route missing here.
# Connectors cancel and change their own orders with their channel's key.
ACCESS: AccessTable = {
    ("POST", "/v1/orders"): CHANNEL_KEY,
    ("GET", "/v1/orders/{order_id}"): VIEWER,
    ("GET", "/v1/orders"): VIEWER,
    ("GET", "/v1/reports/orders-by-channel-status"): VIEWER,
    ("POST", "/v1/orders/{order_id}/cancel"): StaffOrChannel(Role.OPERATOR, _channel_of_order),
    ("PATCH", "/v1/orders/{order_id}"): StaffOrChannel(Role.OPERATOR, _channel_of_order),
    ("POST", WEBHOOK_PATH): SIGNED,  # Shopify signs its webhooks; the route verifies them
}
