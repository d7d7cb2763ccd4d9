"""HTTP API of order intake (port 8001)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

import pycountry
from fastapi import APIRouter, Body, Header, HTTPException, Query, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.contracts.events import LineChange, LocationChoice
from libs.contracts.orders import ChannelOrder, OrderChangeIn
from libs.contracts.problems import Problem, ProblemAnswer
from libs.contracts.storable import INT64_MAX, Text
from libs.service_host import Runtime
from libs.service_host.auth import (
    ADMIN,
    CHANNEL_KEY,
    OPERATOR,
    VIEWER,
    AccessTable,
    ChannelKeys,
    Role,
    StaffOrChannel,
)
from libs.service_host.bodies import JsonBodyRoute, documented_as
from libs.service_host.errors import peer_unavailable, problem_response
from services.order_intake.adapters.inventory_api import InventoryLocations
from services.order_intake.domain.customers import MergePolicy
from services.order_intake.domain.rules import RuleIn
from services.order_intake.entrypoints import shopify
from services.order_intake.entrypoints.shopify import SIGNED, WEBHOOK_PATH, ShopifyConnector
from services.order_intake.service_layer import customers, reports, rules
from services.order_intake.service_layer.locations import KnownLocations, LocationsUnavailable
from services.order_intake.service_layer.placing import Incoming, place_orders
from services.order_intake.service_layer.reports import Grouping
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


class HoldRequest(BaseModel):
    reason: Text = Field(min_length=1, max_length=500)


class HoldAnswer(BaseModel):
    order_id: str
    status: str


class ReleaseAnswer(BaseModel):
    order_id: str
    announced_events: int = Field(description="events now published: OrderPlaced and the changes kept while held,"
                                              " or 1 (OrderHoldReleased) for an order held after it was announced")


class RuleOut(RuleIn):
    rule_id: str
    created_at: datetime | None = None
    updated_at: datetime | None = None


class CustomerIdentity(BaseModel):
    channel: str
    customer_id: str | None


class CustomerRecord(BaseModel):
    customer_id: str
    name: str | None
    email: str | None
    tags: list[str]
    identities: list[CustomerIdentity]
    erased: dict[str, Any] | None = Field(description="{erased_at, erased_by, reason, orders} once erased")
    orders: list[dict[str, Any]]
    open_backorders: dict[str, int]
    returns: dict[str, Any]
    lifetime_value: dict[str, str] = Field(description="per currency: ordered minus cancelled and returned")


class CustomerFound(BaseModel):
    customer_id: str
    name: str | None
    email: str | None
    orders: int
    last_order_at: datetime
    channels: list[str]


class ErasureRequest(BaseModel):
    reason: Text = Field(default="erasure requested by the customer", max_length=500)


class ErasureAnswer(BaseModel):
    customer_id: str
    orders_erased: int


class CustomerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_CUSTOMER_", extra="ignore")

    merge_by_email: str = ""  # channels whose customers are one person per e-mail ("*": all)


class CancelRequest(BaseModel):
    line_ids: list[Text] | None = Field(default=None, description="omit to cancel the whole order")
    reason: Text = Field(default="customer request", max_length=500)


class Placed(BaseModel):
    order_id: str
    created: bool = Field(description="false: the same order was placed before (idempotent retry)")


class ChangeRequested(BaseModel):
    order_id: str
    status: str = Field(description="'cancellation requested' or 'modification requested'")


class OrderLineView(BaseModel):
    line_id: str
    sku: str
    qty: int
    unit_price: str = Field(description="decimal, as a string")
    allocated: int
    backordered: int
    packed: int
    shipped: int
    cancelled: int
    returned: int
    on_hold: bool
    backorder_reason: str | None


class TimelineEntry(BaseModel):
    at: datetime
    event_type: str
    source: str = Field(description="the service or channel that caused it")
    summary: str


class OrderHold(BaseModel):
    reason: str
    held_by: str
    held_at: datetime
    announced: bool = Field(
        default=False, description="true: held after allocation knew the order (OrderHeld): nothing more is allocated,"
                                   " allocated units stay reserved and cannot be packed; false: not announced yet")


class RuleEffectView(BaseModel):
    rule_id: str
    name: str
    did: list[str] = Field(description="what the rule did to this order, in words")


class OrderView(BaseModel):
    """An order: every line's quantities by state and its timeline."""

    order_id: str
    channel: str
    external_id: str
    status: str
    placed_at: datetime
    currency: str
    priority: int
    ship_complete: bool
    pickup_location_id: str | None
    customer: dict[str, Any]
    ship_to: dict[str, Any]
    lines: list[OrderLineView]
    timeline: list[TimelineEntry]
    hold: OrderHold | None = Field(description="set while the order is held (by a rule at intake, or by staff)")
    rules: list[RuleEffectView] = Field(description="which channel rule did what, in evaluation order")
    tags: list[str] = Field(description="tags the channel rules gave the order")
    locations: LocationChoice | None = Field(
        default=None, description="where the channel rules let allocation take stock from (as sent in OrderPlaced)")


class OrderSummary(BaseModel):
    order_id: str
    channel: str
    external_id: str
    status: str
    placed_at: datetime
    received_at: datetime


class ChannelStatusCount(BaseModel):
    channel: str
    status: str
    orders: int


class SalesQuery(BaseModel):
    """The query of ``GET /v1/reports/sales``: every problem is named by its parameter."""

    group_by: Grouping = Field(default="channel", description="channel, sku or day (of placed_at, UTC)")
    date_from: date | None = Field(default=None, description="first day (inclusive) of placed_at, UTC")
    date_to: date | None = Field(default=None, description="last day (inclusive) of placed_at, UTC")
    channel: Annotated[Text, StringConstraints(min_length=1, max_length=200)] | None = None
    currency: Annotated[Text, StringConstraints(min_length=3, max_length=3, to_upper=True)] | None = Field(
        default=None, description="ISO 4217 code: only orders in this currency")

    @field_validator("date_to")
    @classmethod
    def _not_before_start(cls, value: date | None, info: ValidationInfo) -> date | None:
        start = info.data.get("date_from")
        if value is not None and start is not None and value < start:
            raise ValueError(f"before date_from ({start.isoformat()}): the range is reversed")
        return value

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str | None) -> str | None:
        if value is not None and pycountry.currencies.get(alpha_3=value) is None:
            raise ValueError(f"unknown ISO 4217 currency code {value!r}")
        return value


class SalesAmount(BaseModel):
    units: int
    value: str = Field(description="units x the lines' unit prices, decimal as a string, in the row's currency")


class SalesRow(BaseModel):
    key: str = Field(description="the row's channel, SKU or day (YYYY-MM-DD, UTC), per group_by")
    currency: str
    orders: int = Field(description="orders with at least one line in this row")
    ordered: SalesAmount = Field(description="line quantities as they stand (cancelled units included)")
    cancelled: SalesAmount
    backordered: SalesAmount
    allocated: SalesAmount = Field(description="holding stock, not yet shipped (allocated + packed)")
    shipped: SalesAmount = Field(description="shipped (returned units included)")
    returned: SalesAmount = Field(description="shipped units returned (valued at the unit price)")


class SalesReport(BaseModel):
    """Sales by channel, SKU or day: one row per (group, currency), values never mixed across currencies."""

    group_by: Grouping
    date_from: date | None
    date_to: date | None
    channel: str | None
    currency: str | None
    rows: list[SalesRow]


def build_router(runtime: Runtime, api_keys: ChannelKeys, connector: ShopifyConnector | None = None,
                 locations: KnownLocations | None = None) -> APIRouter:
    """Every route of order intake, the Shopify connector's webhook included (``connector``:
    its shops; default: from the environment; ``locations``: where rules' location ids are
    checked, default inventory's HTTP API)."""
    connector = connector or ShopifyConnector.from_settings()
    router = APIRouter(prefix="/v1", tags=["orders"], route_class=JsonBodyRoute)
    _order_routes(router, runtime, api_keys)
    configured_channels = api_keys.named_channels() | frozenset(shop.channel for shop in connector.shops)
    _rule_routes(router, runtime, configured_channels, locations or InventoryLocations())
    _customer_routes(router, runtime)
    shopify.add_routes(router, runtime, connector)
    return router


def _order_routes(router: APIRouter, runtime: Runtime, api_keys: ChannelKeys) -> None:
    """Placing, reading, changing, cancelling and holding orders; the order reports."""
    engine = runtime.engine

    @router.post(
        "/orders",
        status_code=201,
        summary="Place an order (authenticated per channel with X-API-Key)",
        response_model=Placed,
        responses={200: {"model": Placed, "description": "placed before: the same order"}},
    )
    async def post_order(
        # checked by the use case (every problem at once), after the key of the order's channel
        document: Annotated[Any, Body(), documented_as(ChannelOrder)],
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> JSONResponse:
        if not isinstance(document, dict):
            return problem_response([Problem(field="(body)", problem="must be a JSON object")])
        channel = document.get("channel")
        if not isinstance(channel, str) or not api_keys.allows(channel, x_api_key):
            return JSONResponse(
                {"detail": [{"field": "X-API-Key", "problem": "missing, or not the key of this order's channel"}]},
                status_code=401,
                headers={"WWW-Authenticate": 'ApiKey realm="oms", header="X-API-Key"'},
            )
        key = f"{channel}:{document.get('external_id')}"
        async with runtime.transaction() as conn:
            [outcome] = await place_orders(conn, [Incoming(document, key)], publish_rejections=False)
        if outcome.status == "rejected":
            return problem_response(outcome.problems)
        if outcome.status == "conflict":
            return JSONResponse(
                {"detail": [p.model_dump() for p in outcome.problems], "order_id": outcome.order_id}, status_code=409)
        return JSONResponse({"order_id": outcome.order_id, "created": outcome.status == "created"},
                            status_code=201 if outcome.status == "created" else 200)

    @router.get(
        "/orders/{order_id}", summary="An order: every line's quantities by state and its timeline",
        responses={200: {"model": OrderView}},
    )
    async def get_order(order_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await order_view(conn, order_id)
            except OrderNotFound:
                raise HTTPException(404, f"no order {order_id}") from None

    @router.get(
        "/orders", summary="Orders, newest first, filtered by status and channel",
        responses={200: {"model": list[OrderSummary]}},
    )
    async def get_orders(
        status: str | None = None, channel: str | None = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100, offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
    ) -> Any:
        async with engine.connect() as conn:
            return await list_orders(conn, status, channel, limit, offset)

    @router.get(
        "/reports/orders-by-channel-status", summary="Orders by channel and status (SPEC 3.8)",
        responses={200: {"model": list[ChannelStatusCount]}},
    )
    async def get_report() -> Any:
        async with engine.connect() as conn:
            return await orders_by_channel_and_status(conn)

    @router.get("/reports/sales", response_model=SalesReport,
                summary="Sales by channel, SKU or day: ordered, allocated, shipped, returned units and values per currency")
    async def get_sales_report(query: Annotated[SalesQuery, Query()]) -> Any:
        async with engine.connect() as conn:
            rows = await reports.sales_report(conn, query.group_by, query.date_from, query.date_to,
                                              query.channel, query.currency)
        return SalesReport(**query.model_dump(), rows=[SalesRow.model_validate(r) for r in rows])

    @router.post(
        "/orders/{order_id}/cancel", status_code=202, summary="Cancel the order or some lines",
        response_model=ChangeRequested,
    )
    async def post_cancel(order_id: str, body: CancelRequest | None = None) -> Any:
        body = body or CancelRequest()
        try:
            async with runtime.transaction() as conn:
                await cancel_order(conn, order_id, body.line_ids, body.reason)
        except OrderNotFound:
            raise HTTPException(404, f"no order {order_id}") from None
        except ChangeRefused as exc:
            return problem_response(exc.problems)
        return {"order_id": order_id, "status": "cancellation requested"}

    @router.patch(
        "/orders/{order_id}", status_code=202, summary="Change line quantities, add lines, or priority",
        response_model=ChangeRequested,
    )
    async def patch_order(order_id: str, body: OrderChangeIn) -> Any:
        changes = [LineChange.model_construct(**ln.model_dump()) for ln in body.lines]  # validated above
        try:
            async with runtime.transaction() as conn:
                await modify_order(conn, order_id, changes, body.priority)
        except OrderNotFound:
            raise HTTPException(404, f"no order {order_id}") from None
        except ChangeRefused as exc:
            return problem_response(exc.problems)
        return {"order_id": order_id, "status": "modification requested"}

    @router.post("/orders/{order_id}/hold", response_model=HoldAnswer,
                 summary="Hold any order by hand: nothing more is allocated to it and nothing of it is packed until released")
    async def post_hold(order_id: str, body: HoldRequest, request: Request) -> Any:
        try:
            async with runtime.transaction() as conn:
                await rules.hold_order(conn, order_id, body.reason, _staff(request))
        except OrderNotFound:
            raise HTTPException(404, f"no order {order_id}") from None
        except rules.Refused as exc:
            return problem_response(exc.problems, status=exc.status)
        return HoldAnswer(order_id=order_id, status="held")

    @router.post("/orders/{order_id}/release-hold", response_model=ReleaseAnswer,
                 summary="Release a held order: announced to allocation with the changes made meanwhile, or (held"
                         " after it was announced) OrderHoldReleased")
    async def post_release_hold(order_id: str, request: Request) -> Any:
        try:
            async with runtime.transaction() as conn:
                announced = await rules.release_hold(conn, order_id, _staff(request))
        except OrderNotFound:
            raise HTTPException(404, f"no order {order_id}") from None
        except rules.Refused as exc:
            return problem_response(exc.problems, status=exc.status)
        return ReleaseAnswer(order_id=order_id, announced_events=announced)


def _rule_routes(router: APIRouter, runtime: Runtime, configured_channels: frozenset[str],
                 known_locations: KnownLocations) -> None:
    """Channel rules (``configured_channels``: the channels a rule may name; ``known_locations``:
    where the location ids a rule names are checked)."""
    engine = runtime.engine

    @router.get("/rules", response_model=list[RuleOut], summary="Channel rules in evaluation order")
    async def get_rules() -> Any:
        async with engine.connect() as conn:
            return await rules.list_rules(conn)

    @router.get("/rules/{rule_id}", response_model=RuleOut, summary="One channel rule")
    async def get_rule(rule_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await rules.get_rule(conn, rule_id)
            except rules.RuleNotFound:
                raise HTTPException(404, f"no rule {rule_id}") from None

    rule_problems: dict[int | str, dict[str, Any]] = {
        422: {"description": "unknown operator, channel, country or location, or a rule that does nothing; nothing stored",
              "model": ProblemAnswer},
        503: {"description": "the rule names locations and inventory cannot be asked; nothing stored",
              "model": ProblemAnswer},
    }

    @router.post("/rules", status_code=201, response_model=RuleOut, responses=rule_problems,
                 summary="Add a channel rule (applies to the next order placed, no restart)")
    async def post_rule(body: RuleIn) -> Any:
        return await _save(None, body)

    @router.put("/rules/{rule_id}", response_model=RuleOut, responses=rule_problems, summary="Replace a channel rule")
    async def put_rule(rule_id: str, body: RuleIn) -> Any:
        return await _save(rule_id, body)

    @router.delete("/rules/{rule_id}", status_code=204, summary="Delete a channel rule")
    async def delete_rule(rule_id: str) -> Response:
        try:
            async with runtime.transaction() as conn:
                await rules.delete_rule(conn, rule_id)
        except rules.RuleNotFound:
            raise HTTPException(404, f"no rule {rule_id}") from None
        return Response(status_code=204)

    async def _save(rule_id: str | None, body: RuleIn) -> Any:
        try:
            async with runtime.transaction() as conn:
                saved = await rules.save_rule(conn, rule_id, body, configured_channels, known_locations)
        except rules.RuleNotFound:
            raise HTTPException(404, f"no rule {rule_id}") from None
        except LocationsUnavailable as exc:
            return peer_unavailable("inventory", f"the rule names locations and inventory cannot be asked: {exc}")
        except rules.Refused as exc:
            return problem_response(exc.problems, status=exc.status)
        return JSONResponse(jsonable_encoder(saved), status_code=201 if rule_id is None else 200)


def _customer_routes(router: APIRouter, runtime: Runtime) -> None:
    """Customers: their record, search and erasure."""
    engine = runtime.engine
    merge = MergePolicy.parse(CustomerSettings().merge_by_email)

    @router.get("/customers/{customer_id}", response_model=CustomerRecord,
                summary="A customer: identities, orders, open backorders, returns, lifetime value per currency")
    async def get_customer(customer_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await customers.customer_record(conn, customer_id, merge)
            except customers.CustomerNotFound:
                return problem_response([Problem(field="customer_id", problem=f"no customer {customer_id}")], status=404)

    @router.get("/customers", response_model=list[CustomerFound],
                summary="Find customers by e-mail (exact, any case), name (part) and channel")
    async def find_customers(
        email: Annotated[Text | None, Query(max_length=320)] = None,
        name: Annotated[Text | None, Query(min_length=2, max_length=200)] = None,
        channel: Annotated[Text | None, Query(max_length=200)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
    ) -> Any:
        if email is None and name is None:
            return problem_response([Problem(field="email", problem="give an email or a name to search by")])
        async with engine.connect() as conn:
            return await customers.search_customers(conn, merge, email=email, name=name, channel=channel, limit=limit)

    @router.post("/customers/{customer_id}/erase", response_model=ErasureAnswer,
                 summary="Erase a customer's personal data from their orders; totals stay; the erasure is recorded")
    async def post_erase(customer_id: str, request: Request, body: ErasureRequest | None = None) -> Any:
        try:
            async with runtime.transaction() as conn:
                erased = await customers.erase_customer(conn, customer_id, merge, _staff(request),
                                                        (body or ErasureRequest()).reason)
        except customers.CustomerNotFound:
            return problem_response([Problem(field="customer_id", problem=f"no customer {customer_id}")], status=404)
        return ErasureAnswer(customer_id=customer_id, orders_erased=erased)


def _staff(request: Request) -> str:
    role = getattr(request.state, "staff_role", None)
    return f"staff ({role.label})" if role is not None else "staff"


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
    ("GET", "/v1/reports/sales"): VIEWER,
    ("POST", "/v1/orders/{order_id}/cancel"): StaffOrChannel(Role.OPERATOR, _channel_of_order),
    ("PATCH", "/v1/orders/{order_id}"): StaffOrChannel(Role.OPERATOR, _channel_of_order),
    ("POST", WEBHOOK_PATH): SIGNED,  # Shopify signs its webhooks; the route verifies them
    ("POST", "/v1/orders/{order_id}/hold"): OPERATOR,
    ("POST", "/v1/orders/{order_id}/release-hold"): OPERATOR,
    ("GET", "/v1/rules"): VIEWER,
    ("GET", "/v1/rules/{rule_id}"): VIEWER,
    ("POST", "/v1/rules"): ADMIN,  # rules decide what is allocated when: like the allocation policy
    ("PUT", "/v1/rules/{rule_id}"): ADMIN,
    ("DELETE", "/v1/rules/{rule_id}"): ADMIN,
    ("GET", "/v1/customers/{customer_id}"): VIEWER,
    ("GET", "/v1/customers"): VIEWER,
    ("POST", "/v1/customers/{customer_id}/erase"): ADMIN,  # irreversible, personal data
}
