"""Event payloads (the ``data`` of an envelope). Past tense: each says what happened.

Adding an optional field is a compatible change; anything else needs a new schema_version.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from libs.contracts.orders import Address, Customer
from libs.contracts.problems import Problem


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")
    SCHEMA_VERSION: ClassVar[int] = 1

    @classmethod
    def schema_version(cls) -> int:
        return cls.SCHEMA_VERSION


# --- order intake: oms.channel-orders.rejected.v1 and oms.orders.v1 ---------------------------


class ChannelOrderRejected(Event):
    key: str
    channel: str | None = None
    external_id: str | None = None
    reasons: list[Problem]


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    line_id: str
    sku: str
    qty: int = Field(gt=0)
    unit_price: Decimal


class LocationChoice(BaseModel):
    """Where channel rules let an order's stock come from (``OrderPlaced.locations``); each
    ``*_by`` names the rule(s) that decided it, for allocation's explanation."""

    model_config = ConfigDict(frozen=True)
    restrict_to: list[str] | None = Field(default=None, description="only these locations (None: any eligible)")
    restricted_by: str = ""
    prefer: list[str] = Field(default_factory=list, description="ranked before every other location, in this order")
    preferred_by: str = ""
    priorities: dict[str, int] = Field(
        default_factory=dict, description="location priority for this order, instead of the location's own")
    priorities_by: str = ""


class OrderPlaced(Event):
    order_id: str
    channel: str
    external_id: str
    placed_at: datetime
    currency: str
    customer: Customer
    ship_to: Address
    priority: int = 0
    ship_complete: bool = False
    pickup_location_id: str | None = None
    lines: list[OrderLine]
    # Added with channel location rules; absent (not null) on the wire when no rule set one.
    locations: LocationChoice | None = Field(default=None, exclude_if=lambda v: v is None)


class OrderCancelled(Event):
    order_id: str
    line_ids: list[str] | None = None  # None: the whole order
    reason: str = "customer request"


class OrderHeld(Event):
    """Staff held an order allocation already knows: nothing more is allocated to it, and what is
    allocated stays reserved but cannot be packed, until OrderHoldReleased (or a cancellation)."""

    order_id: str
    reason: str
    held_by: str = ""


class OrderHoldReleased(Event):
    """Staff released an order's hold: its open lines go back in the queue at their place."""

    order_id: str
    released_by: str = ""


class LineChange(BaseModel):
    model_config = ConfigDict(frozen=True)
    line_id: str
    sku: str
    qty: int = Field(ge=0)  # the new ordered quantity; 0 cancels the line's open quantity
    unit_price: Decimal


class OrderModified(Event):
    order_id: str
    lines: list[LineChange] = Field(default_factory=list)
    priority: int | None = None


# --- inventory: oms.inventory.v1 ------------------------------------------------------------


class StockAdjusted(Event):
    """One change to one stock position, with the absolute result and a per-position sequence."""

    sku: str
    location_id: str
    bin: str
    lot: str = ""
    received_at: datetime | None = None
    expires_at: datetime | None = None
    sellable: bool = True
    delta: int
    on_hand: int = Field(ge=0)
    seq: int = Field(ge=1)
    reason: str  # receipt | adjustment | transfer_in | transfer_out | shipment | return | count | quarantine
    reference: str | None = None
    actor: str | None = None
    # For reason == "shipment": the allocation this deduction closes.
    order_id: str | None = None
    allocation_id: int | None = None
    # For reason == "count" in "all bins" mode with release_shortfall: the user accepted releasing.
    release_shortfall: bool = False
    # For reason == "receipt" booked against a purchase order (added in 1.2): allocation ends the
    # order's promises in the transaction that fills the queue with these units.
    purchase_order_id: str | None = None


class LocationChanged(Event):
    """A location was created or changed (key: location_id)."""

    location_id: str
    name: str
    kind: Literal["warehouse", "store", "3pl", "dropship"] = "warehouse"  # dropship: a supplier ships for us
    country: str
    lat: float | None = None
    lon: float | None = None
    active: bool = True
    priority: int = 0
    ships_to: list[str] = Field(default_factory=list)  # ISO countries; empty = its own country
    channels: list[str] | None = None  # None: every channel
    pickup: bool = False  # can serve buy-online-pick-up-in-store


class PurchaseOrderChanged(Event):
    """A purchase order (an expected receipt of one SKU at one location) was created, changed,
    cancelled or received: its whole state after the change (key: sku, so it follows the
    receipt's StockAdjusted of the same SKU). ``version`` +1 per change; keep the highest."""

    purchase_order_id: str
    change: Literal["created", "changed", "cancelled", "received"]
    sku: str
    location_id: str
    qty: int = Field(ge=1)
    expected_date: date
    supplier_reference: str | None = None
    status: Literal["open", "cancelled", "received"]
    received_qty: int = Field(default=0, ge=0)  # units booked by the receipt (short when < qty)
    receipt_reference: str | None = None
    version: int = Field(ge=1)


# --- allocation: oms.allocations.v1 and oms.availability.v1 ------------------------------------


class LineState(BaseModel):
    """Quantities of one order line by state; they always add up to ``qty``."""

    model_config = ConfigDict(frozen=True)
    line_id: str
    sku: str
    qty: int
    allocated: int = 0
    backordered: int = 0
    packed: int = 0
    shipped: int = 0
    cancelled: int = 0
    on_hold: bool = False
    backorder_reason: str | None = None
    # Units of ``backordered`` promised from inbound purchase orders (pre-sold; not packable until
    # the receipt is booked) and the latest promised date among them (added in 1.2; absent: 0 / null).
    presold: int = 0
    promised_date: date | None = None


class AllocationLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    allocation_id: int
    line_id: str
    sku: str
    location_id: str
    bin: str
    lot: str
    qty: int
    status: Literal["allocated", "packed", "shipped", "released"]
    shipment_id: str | None = None
    reason: str | None = None
    # At a location of kind dropship: the supplier ships these units (fulfillment sends it a
    # dropship request instead of putting them on a pick list). Added in 1.2; absent means false.
    dropship: bool = False


class AllocationResult(Event):
    """The order's allocation after a change: a full snapshot, so consumers can replace theirs.

    ``version`` grows by one with every result of the order; a consumer keeps the highest.
    ``event_type`` tells what changed (OrderAllocated, OrderBackordered, AllocationReleased,
    OrderReallocated, AllocationPacked, PackRejected, AllocationShipped, AllocationCancelled).
    """

    order_id: str
    version: int
    change: str
    detail: str | None = None
    shipment_id: str | None = None
    lines: list[LineState]
    allocations: list[AllocationLine]  # live ones: allocated or packed
    # The order's flag (from OrderPlaced), so packing needs no copy of the order (added in 1.1;
    # results published before carry no field and read as false).
    ship_complete: bool = False


class OrderAllocated(AllocationResult):
    pass


class OrderBackordered(AllocationResult):
    pass


class AllocationReleased(AllocationResult):
    pass


class OrderReallocated(AllocationResult):
    pass


class AllocationPacked(AllocationResult):
    pass


class PackRejected(AllocationResult):
    pass


class AllocationShipped(AllocationResult):
    pass


class AllocationCancelled(AllocationResult):
    pass


class LocationAvailability(BaseModel):
    model_config = ConfigDict(frozen=True)
    location_id: str
    available: int


class PositionReservation(BaseModel):
    """What allocation holds at one stock position. No longer sent (``AvailabilityChanged.positions``
    is always empty; ask ``GET /v1/reports/reserved``); kept so schema-v1 readers still parse."""

    model_config = ConfigDict(frozen=True)
    location_id: str
    bin: str
    lot: str
    on_hand: int
    reserved: int


class InboundAvailability(BaseModel):
    model_config = ConfigDict(frozen=True)
    location_id: str
    available: int
    expected_date: date  # the earliest open purchase order's there


class AvailabilityChanged(Event):
    """Available-to-promise of a SKU after a change; coalesced per SKU over a short window."""

    sku: str
    total: int
    locations: list[LocationAvailability]
    channels: dict[str, int] = Field(default_factory=dict)  # per channel after its buffer
    positions: list[PositionReservation] = Field(default_factory=list)
    as_of: datetime
    # Inbound supply, apart from the on-hand figures above (added in 1.2; absent: none): units of
    # open purchase orders the queue does not take yet, per location, and what each channel may
    # still pre-sell of them (its cap less its promises).
    inbound_total: int = 0
    inbound_locations: list[InboundAvailability] = Field(default_factory=list)
    inbound_channels: dict[str, int] = Field(default_factory=dict)


# --- order intake's Shopify connector: oms.shopify.inventory-levels.v1 -----------------------


class ShopifyInventoryLevel(Event):
    """Set one Shopify inventory level: ``{location_id, inventory_item_id, available}`` is the
    body of Shopify's ``inventory_levels/set``; the sender posts it to ``shop``. Absolute, so the
    newest per (shop, inventory_item_id, location_id) wins and a repeat is harmless."""

    shop: str
    sku: str
    inventory_item_id: int
    location_id: int
    oms_location_id: str
    available: int
    as_of: datetime


# --- fulfillment: oms.fulfillment.v1 ----------------------------------------------------------


class PackRequested(Event):
    """Operations asked to pack an order (all allocated lines or the ones named)."""

    order_id: str
    shipment_id: str
    line_ids: list[str] | None = None
    serials: dict[str, list[str]] = Field(default_factory=dict)  # line_id -> serial numbers
    # Set by fulfillment for a dropship request: pack only the lines' allocated units at this
    # dropship location (a pack without it never takes units a supplier ships). Added in 1.2.
    location_id: str | None = None


class ShipmentLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    allocation_id: int
    line_id: str
    sku: str
    location_id: str
    bin: str
    lot: str
    qty: int
    serials: list[str] = Field(default_factory=list)


class OrderPacked(Event):
    order_id: str
    shipment_id: str
    lines: list[ShipmentLine]


class OrderShipped(Event):
    order_id: str
    shipment_id: str
    carrier: str
    tracking_number: str
    lines: list[ShipmentLine]


class ReturnLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    line_id: str
    sku: str
    qty: int = Field(gt=0)
    condition: Literal["sellable", "damaged"]
    location_id: str
    bin: str
    lot: str = ""
    refund: Decimal


class ReturnReceived(Event):
    order_id: str
    return_id: str
    lines: list[ReturnLine]
    refund_total: Decimal


# --- dropship suppliers: oms.dropship.v1 (requests) and oms.fulfillment.v1 (refusals) ----------


class DropshipLine(BaseModel):
    model_config = ConfigDict(frozen=True)
    allocation_id: int
    line_id: str
    sku: str
    qty: int


class DropshipRequested(Event):
    """Fulfillment asks a dropship supplier to ship these lines of an order to the customer
    (key: location_id, the supplier's location). ``request_id`` is the reference the supplier
    answers with (confirm with carrier and tracking, or refuse)."""

    request_id: str
    location_id: str
    order_id: str
    reference: str
    lines: list[DropshipLine]
    ship_to: Address | None = None


class DropshipRefused(Event):
    """A supplier refused a dropship request (key: order_id): inventory lowers the supplier's
    stated stock by the refused units, and allocation releases them to be allocated again."""

    request_id: str
    location_id: str
    order_id: str
    reason: str
    lines: list[ShipmentLine]  # the requested units as allocation locked them (position and allocation)


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        ChannelOrderRejected,
        OrderPlaced,
        OrderCancelled,
        OrderModified,
        OrderHeld,
        OrderHoldReleased,
        StockAdjusted,
        LocationChanged,
        OrderAllocated,
        OrderBackordered,
        AllocationReleased,
        OrderReallocated,
        AllocationPacked,
        PackRejected,
        AllocationShipped,
        AllocationCancelled,
        AvailabilityChanged,
        ShopifyInventoryLevel,
        PackRequested,
        OrderPacked,
        OrderShipped,
        ReturnReceived,
        DropshipRequested,
        DropshipRefused,
        PurchaseOrderChanged,
    )
}
