"""The Shopify connector's pure rules: the model other connector authors copy.

Three jobs, none doing I/O:

* ``signature_ok``: Shopify signs every webhook with HMAC-SHA256 of the raw body, keyed on the
  shop's webhook secret, base64 in ``X-Shopify-Hmac-Sha256``; compared in constant time.
* ``channel_order`` / ``line_changes``: a Shopify order (the payload of ``orders/create``,
  ``orders/updated`` and ``orders/cancelled``: each carries the whole order) becomes the OMS
  ``ChannelOrder`` document, or the line changes against what the OMS holds.
* ``inventory_levels``: an ``AvailabilityChanged`` becomes Shopify inventory-level updates (the
  body of Shopify's ``inventory_levels/set``) for the SKUs and locations the seller mapped.

Shapes follow Shopify's published webhook samples (REST Admin API ``Order``): ids are integers,
money is a decimal string, times carry an offset, ``line_items[].current_quantity`` is the
quantity after order edits (``quantity`` is the original), a line that needs no shipping
(``requires_shipping: false``: gift cards, fees) is not the OMS's to fulfil.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from libs.contracts.events import AvailabilityChanged, LineChange
from libs.contracts.orders import Problem, problems_of
from libs.contracts.storable import Int64, StorableDatetime, Text

ORDER_TOPICS = ("orders/create", "orders/updated", "orders/cancelled")


def signature_ok(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the base64 HMAC-SHA256 of ``body`` under ``secret`` (constant time)."""
    if not header or not secret:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, header.strip().encode("ascii", errors="replace"))


def sign(secret: str, body: bytes) -> str:
    """The ``X-Shopify-Hmac-Sha256`` value Shopify would send for ``body`` (tests, tools)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


# --- the parts of Shopify's Order we read (everything else is ignored) ------------------------


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ShopifyAddress(_Lenient):
    country_code: Text | None = None
    zip: Text | None = None
    city: Text | None = None
    latitude: float | None = None
    longitude: float | None = None


class ShopifyCustomer(_Lenient):
    id: Int64 | None = None
    email: Text | None = None
    first_name: Text | None = None
    last_name: Text | None = None
    tags: Text | None = None  # comma-separated, as Shopify writes tags


class ShopifyLineItem(_Lenient):
    id: Int64
    sku: Text | None = None
    quantity: int = Field(ge=0)
    current_quantity: int | None = Field(default=None, ge=0)
    price: Decimal = Field(ge=0)
    requires_shipping: bool = True

    @property
    def open_quantity(self) -> int:
        """The quantity after order edits (older API versions send only ``quantity``)."""
        return self.quantity if self.current_quantity is None else self.current_quantity


class ShopifyOrder(_Lenient):
    id: Int64 = Field(gt=0)
    created_at: StorableDatetime
    updated_at: StorableDatetime | None = None
    cancelled_at: StorableDatetime | None = None
    cancel_reason: Text | None = None
    currency: Text
    email: Text | None = None
    tags: Text | None = None
    customer: ShopifyCustomer | None = None
    shipping_address: ShopifyAddress | None = None
    billing_address: ShopifyAddress | None = None
    line_items: list[ShopifyLineItem]


def parse_order(payload: Any) -> tuple[ShopifyOrder | None, list[Problem]]:
    """The order, or every problem with the field named as in Shopify's payload."""
    if not isinstance(payload, dict):
        return None, [Problem(field="(body)", problem="must be a JSON object (a Shopify order)")]
    try:
        return ShopifyOrder.model_validate(payload), []
    except ValidationError as exc:
        return None, problems_of(exc)


# --- Shopify order -> OMS channel order --------------------------------------------------------


@dataclass
class Mapped:
    """The ChannelOrder document and, per OMS line, the index of its Shopify line item."""

    document: dict[str, Any]
    line_index: dict[str, int] = field(default_factory=dict)


def _tags(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def channel_order(order: ShopifyOrder, channel: str) -> tuple[Mapped | None, list[Problem]]:
    """The OMS ``ChannelOrder`` document for a Shopify order (validated later by the contract's
    own rules); problems name Shopify's fields. Lines that need no shipping, or whose quantity
    was edited down to 0, are not the OMS's to fulfil and are left out."""
    problems: list[Problem] = []
    address = order.shipping_address or order.billing_address
    if address is None or not address.country_code:
        problems.append(Problem(field="shipping_address.country_code",
                                problem="the OMS ships to a country: no shipping (or billing) address country"))
    lines, index = [], {}
    for i, item in enumerate(order.line_items):
        if not item.requires_shipping or item.open_quantity == 0:
            continue
        if not item.sku:
            problems.append(Problem(field=f"line_items.{i}.sku",
                                    problem="a line that needs shipping must carry the SKU the OMS stocks"))
            continue
        index[str(item.id)] = i
        lines.append({"line_id": str(item.id), "sku": item.sku, "qty": item.open_quantity,
                      "unit_price": str(item.price)})
    if not lines and not problems:
        problems.append(Problem(field="line_items", problem="no line that needs shipping: nothing for the OMS to fulfil"))
    if problems:
        return None, problems
    assert address is not None
    customer = order.customer or ShopifyCustomer()
    name = " ".join(filter(None, [customer.first_name, customer.last_name])) or None
    document: dict[str, Any] = {
        "channel": channel,
        "external_id": str(order.id),
        "placed_at": order.created_at.isoformat(),
        "currency": order.currency,
        "customer": {
            "customer_id": str(customer.id) if customer.id is not None else None,
            "name": name,
            "email": order.email or customer.email,
        },
        "ship_to": {
            "country": address.country_code,
            "postal_code": address.zip,
            "city": address.city,
            "lat": address.latitude,
            "lon": address.longitude,
        },
        "lines": lines,
    }
    tags = _tags(customer.tags) + [t for t in _tags(order.tags) if t not in _tags(customer.tags)]
    if tags:
        document["customer"]["tags"] = tags
    return Mapped(document, index), []


# ChannelOrder fields -> the Shopify field they came from, so a refusal names what Shopify sent.
_FIELD_ORIGIN = {
    "external_id": "id",
    "placed_at": "created_at",
    "currency": "currency",
    "customer.customer_id": "customer.id",
    "customer.name": "customer.first_name",
    "customer.email": "email",
    "ship_to.country": "shipping_address.country_code",
    "ship_to.postal_code": "shipping_address.zip",
    "ship_to.city": "shipping_address.city",
    "ship_to.lat": "shipping_address.latitude",
    "ship_to.lon": "shipping_address.longitude",
}
_LINE_ORIGIN = {"line_id": "id", "sku": "sku", "qty": "current_quantity", "unit_price": "price"}


def shopify_field(mapped: Mapped, oms_field: str) -> str:
    """The Shopify field an OMS validation problem is about (``lines.0.qty`` ->
    ``line_items.3.current_quantity``)."""
    if oms_field in _FIELD_ORIGIN:
        return _FIELD_ORIGIN[oms_field]
    parts = oms_field.split(".")
    if parts[0] == "lines" and len(parts) >= 2 and parts[1].isdigit():
        lines = mapped.document["lines"]
        position = int(parts[1])
        if position < len(lines):
            shopify_index = mapped.line_index[lines[position]["line_id"]]
            tail = _LINE_ORIGIN.get(parts[2], parts[2]) if len(parts) > 2 else None
            return ".".join(filter(None, ["line_items", str(shopify_index), tail]))
        return "line_items"
    return oms_field


@dataclass(frozen=True)
class StoredLine:
    """A line as the OMS holds it."""

    line_id: str
    sku: str
    qty: int
    unit_price: Decimal


def line_changes(stored: dict[str, StoredLine], order: ShopifyOrder) -> list[LineChange]:
    """What an ``orders/updated`` changes on the OMS order: a new quantity (0 when a line was
    edited away), or a new line. Lines Shopify no longer lists and lines that need no shipping
    are left as they are; a changed price alone is not a fulfilment change."""
    changes = []
    for item in order.line_items:
        if not item.requires_shipping or not item.sku:
            continue
        line_id = str(item.id)
        current = stored.get(line_id)
        if current is None:
            if item.open_quantity > 0:
                changes.append(LineChange(line_id=line_id, sku=item.sku, qty=item.open_quantity, unit_price=item.price))
        elif current.qty != item.open_quantity:
            changes.append(LineChange(line_id=line_id, sku=current.sku, qty=item.open_quantity,
                                      unit_price=current.unit_price))
    return changes


def is_newer(updated_at: datetime | None, last_applied: datetime | None) -> bool:
    """Shopify does not deliver webhooks in order (and retries them): a payload not newer than
    the one applied last changes nothing. A payload without ``updated_at`` is always applied
    (the line diff and the cancel flag keep it harmless)."""
    return updated_at is None or last_applied is None or updated_at > last_applied


# --- availability -> Shopify inventory levels --------------------------------------------------


class ShopMapping(BaseModel):
    """How one shop's ids map to the OMS's (from configuration)."""

    model_config = ConfigDict(extra="forbid")

    channel: str | None = Field(default=None, description="the OMS channel of the shop's orders")
    locations: dict[str, int] = Field(default_factory=dict, description="OMS location_id -> Shopify location_id")
    inventory_items: dict[str, int] = Field(default_factory=dict, description="SKU -> Shopify inventory_item_id")


def default_channel(shop: str) -> str:
    """``acme.myshopify.com`` -> ``shopify-acme``."""
    return "shopify-" + shop.removesuffix(".myshopify.com")


@dataclass(frozen=True)
class InventoryLevel:
    """One Shopify ``inventory_levels/set`` call: ``{location_id, inventory_item_id, available}``."""

    shop: str
    sku: str
    inventory_item_id: int
    location_id: int
    oms_location_id: str
    available: int


def inventory_levels(shop: str, mapping: ShopMapping, channel: str, event: AvailabilityChanged) -> list[InventoryLevel]:
    """Shopify levels for every mapped location of the SKU (a full snapshot: a mapped location
    the event does not list has 0). The shop's channel is never promised more than the OMS
    promises the channel after its safety buffer (``channels``): the excess is taken off the
    mapped locations, the last-listed first."""
    item = mapping.inventory_items.get(event.sku)
    if item is None or not mapping.locations:
        return []
    free = {la.location_id: la.available for la in event.locations}
    levels = {loc: max(0, free.get(loc, 0)) for loc in sorted(mapping.locations)}
    promised = event.channels.get(channel, event.channels.get("*"))
    if promised is not None:
        excess = sum(levels.values()) - max(0, promised)
        for loc in reversed(list(levels)):
            if excess <= 0:
                break
            cut = min(excess, levels[loc])
            levels[loc] -= cut
            excess -= cut
    return [InventoryLevel(shop, event.sku, item, mapping.locations[loc], loc, n) for loc, n in levels.items()]
