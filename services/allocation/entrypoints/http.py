"""HTTP API of allocation (port 8003): views with explanations, manual operations, policy, reports."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from libs.contracts.events import LocationChoice
from libs.contracts.problems import Problem
from libs.contracts.storable import INT32_MAX, INT64_MAX, Text, storable_problems
from libs.service_host import Runtime
from libs.service_host.auth import ADMIN, OPERATOR, VIEWER, AccessTable
from libs.service_host.bodies import JsonBodyRoute, documented_as
from libs.service_host.errors import problem_response
from services.allocation.domain.book import CommandRefused, UnknownOrder
from services.allocation.service_layer import allocating, views


class DeallocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_ids: list[Text] = Field(min_length=1, description="lines whose unpacked allocations go back to stock (held)")


class ReleaseHoldRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    line_ids: list[Text] | None = Field(default=None, description="omit to release every held line")


class ReallocateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    location_id: Text = Field(min_length=1, description="preferred location; the rest follows the policy")


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_order_id: Text = Field(min_length=1)
    to_order_id: Text = Field(min_length=1)
    sku: Text = Field(min_length=1)
    qty: int = Field(gt=0, le=INT32_MAX, strict=True)
    location_id: Text | None = Field(default=None, description="only units allocated at this location")


class ReservedPosition(BaseModel):
    sku: str
    location_id: str
    bin: str
    lot: str
    reserved: int = Field(description="units of live (allocated or packed) allocations at this position")


class SafetyStockIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(default="*", min_length=1, description="a SKU, or '*' for every SKU")
    location_id: str = Field(default="*", min_length=1, description="a known location, or '*' for every location")
    qty: int = Field(ge=0, description="units held back from allocation")


class PresellCapIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: str = Field(default="*", description="a SKU, or '*' for any SKU without its own cap")
    cap: int = Field(ge=0, description="units of the SKU that may be promised from inbound supply at once")


class PolicyIn(BaseModel):
    """A channel's allocation policy as ``PUT /v1/policy`` takes it. Documents the body; the
    policy rules (services/allocation/domain/policy.py) check it and list every problem."""

    model_config = ConfigDict(extra="forbid")
    channel: str = Field(default="*", description="'*' for the default policy")
    rank_by: list[Literal["priority", "distance"]] = Field(
        default=["priority", "distance"], description="how candidate locations are ranked, in order"
    )
    fewest_splits: bool = True
    max_locations_per_order: int | None = Field(default=None, ge=1, description="null: no cap")
    safety_stock: list[SafetyStockIn] = Field(default_factory=list)
    buffer: int = Field(default=0, ge=0)
    version: int | None = Field(default=None, description="ignored: the service numbers versions itself")
    dropship_mode: Literal["fallback", "always", "never"] = Field(
        default="fallback", description="when lines may go to a dropship supplier: fallback, only what no own "
        "location can give; always, suppliers first; never")
    dropship_skus: list[str] | None = Field(
        default=None, description="the SKUs dropship applies to; null: every SKU")
    presell: list[PresellCapIn] = Field(
        default_factory=list, description="per-SKU caps on units this channel may pre-sell against inbound"
        " purchase orders; a SKU without a cap (and no '*' cap) is not pre-sold")


class LineView(BaseModel):
    line_id: str
    sku: str
    qty: int
    allocated: int
    backordered: int
    packed: int
    shipped: int
    cancelled: int
    on_hold: bool
    backorder_reason: str | None


class AllocationOut(BaseModel):
    allocation_id: int
    line_id: str
    sku: str
    location_id: str
    bin: str
    lot: str
    qty: int
    status: str = Field(description="allocated | packed (live); shipped | released | cancelled (history)")
    shipment_id: str | None
    manual: bool
    created_at: datetime
    explanation: Any = Field(description="why this location, bin and lot: the rule that chose them")


class BackorderOut(BaseModel):
    line_id: str
    sku: str
    qty: int
    on_hold: bool
    reason: str | None
    ahead_in_queue: int | None = Field(description="open backorders of the SKU before it; null when held")


class PresaleOut(BaseModel):
    line_id: str
    sku: str
    purchase_order_id: str
    location_id: str | None
    qty: int
    promised_date: date


class AllocationView(BaseModel):
    """An order as allocation sees it: lines, live allocations with their explanation, history, backorders."""

    order_id: str
    channel: str
    placed_at: datetime
    priority: int
    ship_complete: bool
    pickup_location_id: str | None
    ship_to_country: str | None
    version: int = Field(description="grows by one per change of the order's allocations")
    lines: list[LineView]
    allocations: list[AllocationOut] = Field(description="live units: allocated or packed")
    history: list[AllocationOut] = Field(description="shipped, released and cancelled allocations")
    backorders: list[BackorderOut]
    locations: LocationChoice | None = Field(
        default=None, description="where channel rules let the order's stock come from (OrderPlaced.locations)")
    presales: list[PresaleOut] = Field(
        default_factory=list, description="backordered units promised from inbound purchase orders (pre-sold):"
        " counted in the line's backordered, not packable until the receipt is booked")


class TransferOut(BaseModel):
    from_: AllocationView = Field(alias="from")
    to: AllocationView


class QueuedBackorder(BaseModel):
    order_id: str
    line_id: str
    sku: str
    qty: int
    priority: int
    placed_at: datetime
    on_hold: bool
    reason: str | None
    channel: str
    ship_complete: bool
    queue_position: int | None = Field(description="1 = next to be filled; null: held, outside the queue")


class PolicyOut(PolicyIn):
    version: int | None = Field(default=None, description="grows by one per change of the channel's policy")
    applies_to: str | None = Field(default=None, description="the channel asked for (GET)")
    inherited: bool | None = Field(default=None, description="true: the channel has none of its own; the default applies")
    built_in: bool | None = Field(default=None, description="true: nobody has stored a policy yet")


class StockRow(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    backordered_demand: int
    backordered_on_hold: int
    available: int = Field(description="sellable, unexpired stock at active locations not reserved")
    quarantined: int


class AgeBucket(BaseModel):
    age: Literal["<1h", "1h-1d", "1d-3d", "3d-7d", ">7d"]
    orders: int
    unallocated_orders: int
    on_hold_orders: int
    backordered_units: int
    oldest_placed_at: datetime | None


class OldestBackorder(BaseModel):
    order_id: str
    placed_at: datetime
    backordered: int


class BackordersByAge(BaseModel):
    buckets: list[AgeBucket]
    oldest_orders: list[OldestBackorder] = Field(description="the 20 longest-waiting orders")


def build_router(runtime: Runtime) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["allocation"], route_class=JsonBodyRoute)
    engine = runtime.engine

    async def view(order_id: str) -> Any:
        async with engine.connect() as conn:
            return jsonable_encoder(await views.allocation_view(conn, order_id))

    async def run(order_id: str, fn: Any) -> Any:
        try:
            async with runtime.transaction() as conn:
                await fn(conn)
        except UnknownOrder as exc:
            raise HTTPException(404, f"no order {exc.args[0]}") from None
        except CommandRefused as exc:
            return problem_response(exc.problems)
        return await view(order_id)

    @router.get(
        "/allocations/{order_id}", summary="An order's lines, allocations (with why) and backorders (with why)",
        responses={200: {"model": AllocationView}},
    )
    async def get_allocation(order_id: str) -> Any:
        try:
            return await view(order_id)
        except views.NotFound:
            raise HTTPException(404, f"no order {order_id}") from None

    @router.get(
        "/backorders", summary="Open backorders in fair-queue order (held lines flagged)",
        responses={200: {"model": list[QueuedBackorder]}},
    )
    async def get_backorders(
        sku: str | None = None,
        limit: Annotated[int, Query(ge=1, le=5000)] = 500,
        offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    ) -> Any:
        async with engine.connect() as conn:
            return jsonable_encoder(await views.backorder_queue(conn, sku, limit, offset))

    @router.post(
        "/orders/{order_id}/deallocate", summary="Remove lines' allocations by hand; the lines go on hold",
        responses={200: {"model": AllocationView}},
    )
    async def post_deallocate(order_id: str, body: DeallocateRequest) -> Any:
        return await run(order_id, lambda conn: allocating.deallocate(conn, order_id, body.line_ids))

    @router.post(
        "/orders/{order_id}/release-hold", summary="Put held lines back in the queue at their original place",
        responses={200: {"model": AllocationView}},
    )
    async def post_release_hold(order_id: str, body: ReleaseHoldRequest | None = None) -> Any:
        body = body or ReleaseHoldRequest()
        return await run(order_id, lambda conn: allocating.release_hold(conn, order_id, body.line_ids))

    @router.post(
        "/orders/{order_id}/reallocate", summary="Re-allocate the order's unpacked units preferring a location",
        responses={200: {"model": AllocationView}},
    )
    async def post_reallocate(order_id: str, body: ReallocateRequest) -> Any:
        return await run(order_id, lambda conn: allocating.reallocate(conn, order_id, body.location_id))

    @router.post(
        "/transfers", summary="Move allocated units of a SKU from one order to another's backorder",
        responses={200: {"model": TransferOut}},
    )
    async def post_transfer(body: TransferRequest) -> Any:
        result = await run(body.to_order_id, lambda conn: allocating.transfer(
            conn, body.from_order_id, body.to_order_id, body.sku, body.qty, body.location_id))
        if isinstance(result, JSONResponse):
            return result
        return {"from": await view(body.from_order_id), "to": result}

    @router.get(
        "/policy", summary="The allocation policy in force for a channel (default '*')",
        responses={200: {"model": PolicyOut}},
    )
    async def get_policy(channel: str | None = None) -> Any:
        async with engine.connect() as conn:
            return await views.get_policy(conn, channel)

    @router.put(
        "/policy", summary="Replace a channel's policy (validated as a whole; every problem listed)",
        responses={200: {"model": PolicyOut}},
    )
    async def put_policy(doc: Annotated[Any, Body(), documented_as(PolicyIn)]) -> Any:
        # Checked before the use case looks the channel up: a policy is stored as jsonb.
        if isinstance(doc, dict) and not isinstance(doc.get("channel", "*"), str):
            return problem_response(
                [Problem(field="channel", problem="must be a non-empty string ('*' for the default policy)")])
        if unstorable := storable_problems(doc):
            return problem_response([Problem(field=f, problem=p) for f, p in unstorable])
        try:
            async with runtime.transaction() as conn:
                stored = await allocating.put_policy(conn, doc)
        except allocating.PolicyRefused as exc:
            return problem_response(exc.problems)
        return stored

    @router.get(
        "/reports/stock", summary="Per SKU: on hand, reserved, backordered demand, available",
        responses={200: {"model": list[StockRow]}},
    )
    async def get_stock_report(
        sku: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
        offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    ) -> Any:
        async with engine.connect() as conn:
            return await views.stock_report(conn, sku, limit, offset)

    @router.get(
        "/reports/reserved",
        summary="Reserved units per position of a location or a SKU (what a stock take protects)",
        response_model=list[ReservedPosition],
    )
    async def get_reserved(location_id: str | None = None, sku: str | None = None) -> Any:
        if location_id is None and sku is None:
            return problem_response([Problem(field="location_id", problem="give location_id or sku (or both)")])
        async with engine.connect() as conn:
            return await views.reserved_positions(conn, location_id, sku)

    @router.get(
        "/reports/backorders-by-age", summary="Backordered and unallocated orders by age",
        responses={200: {"model": BackordersByAge}},
    )
    async def get_backorders_by_age() -> Any:
        async with engine.connect() as conn:
            return jsonable_encoder(await views.backorders_by_age(conn))

    return router


# Who may call each route (libs/service_host/auth.py); the host refuses to serve a route missing here.
ACCESS: AccessTable = {
    ("GET", "/v1/allocations/{order_id}"): VIEWER,
    ("GET", "/v1/backorders"): VIEWER,
    ("POST", "/v1/orders/{order_id}/deallocate"): OPERATOR,
    ("POST", "/v1/orders/{order_id}/release-hold"): OPERATOR,
    ("POST", "/v1/orders/{order_id}/reallocate"): OPERATOR,
    ("POST", "/v1/transfers"): OPERATOR,
    ("GET", "/v1/policy"): VIEWER,
    ("PUT", "/v1/policy"): ADMIN,
    ("GET", "/v1/reports/stock"): VIEWER,
    ("GET", "/v1/reports/reserved"): VIEWER,
    ("GET", "/v1/reports/backorders-by-age"): VIEWER,
}
