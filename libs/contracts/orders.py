"""The order as a channel sends it (topic ``oms.channel-orders.v1`` and ``POST /v1/orders``).

Validation here is the contract with connector authors: every problem is reported with the
field path, so one round trip tells them everything that is wrong.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import pycountry
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from libs.contracts.problems import Problem, problems_of
from libs.contracts.storable import StorableDatetime, Text

# Looked up once: pycountry's own lookup costs ~5 us per call on the order path.
COUNTRIES = frozenset(c.alpha_2 for c in pycountry.countries)
CURRENCIES = frozenset(c.alpha_3 for c in pycountry.currencies)

NonEmpty = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
MAX_LINE_QTY = 1_000_000
MAX_LINES = 500
MIN_PRIORITY, MAX_PRIORITY = -1000, 1000
MAX_TAGS = 50
Tag = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Customer(BaseModel):
    """The customer as events carry it (consumers ignore fields they do not know)."""

    model_config = ConfigDict(extra="ignore")

    customer_id: NonEmpty | None = None
    name: Text | None = Field(default=None, max_length=200)
    email: Text | None = Field(default=None, max_length=320)
    # The channel's tags of the customer (e.g. "wholesale", "vip"): channel rules match on them.
    tags: list[Tag] | None = Field(default=None, max_length=MAX_TAGS)


class Address(BaseModel):
    """The ship-to address as events carry it (consumers ignore fields they do not know)."""

    model_config = ConfigDict(extra="ignore")

    country: Annotated[Text, StringConstraints(min_length=2, max_length=2, to_upper=True)]
    postal_code: Text | None = Field(default=None, max_length=20)
    city: Text | None = Field(default=None, max_length=200)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value not in COUNTRIES:
            raise ValueError(f"unknown ISO 3166 country code {value!r}")
        return value


class CustomerIn(Customer):
    """The customer as a channel sends it: unknown fields are refused, as on the whole order."""

    model_config = ConfigDict(extra="forbid")


class AddressIn(Address):
    """The ship-to address as a channel sends it: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


L = TypeVar("L", bound="OrderLineIn")


def unique_line_ids(lines: list[L]) -> list[L]:
    """``lines`` unchanged, or ValueError naming the first line_id given twice (new orders and
    changes follow the same rule)."""
    seen: set[str] = set()
    for line in lines:
        if line.line_id in seen:
            raise ValueError(f"duplicate line_id {line.line_id!r}")
        seen.add(line.line_id)
    return lines


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: NonEmpty
    sku: NonEmpty
    qty: int = Field(gt=0, le=MAX_LINE_QTY, strict=True)
    unit_price: Decimal = Field(ge=0, max_digits=14, decimal_places=4)


class ChannelOrder(BaseModel):
    """An order exactly as a channel sends it; ``order_id`` is assigned by the OMS."""

    model_config = ConfigDict(extra="forbid")

    channel: NonEmpty
    external_id: NonEmpty
    placed_at: StorableDatetime
    currency: Annotated[Text, StringConstraints(min_length=3, max_length=3, to_upper=True)]
    customer: CustomerIn = Field(default_factory=CustomerIn)
    ship_to: AddressIn
    priority: int = Field(default=0, ge=MIN_PRIORITY, le=MAX_PRIORITY, strict=True)
    ship_complete: bool = False
    pickup_location_id: NonEmpty | None = None
    lines: list[OrderLineIn] = Field(min_length=1, max_length=MAX_LINES)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value not in CURRENCIES:
            raise ValueError(f"unknown ISO 4217 currency code {value!r}")
        return value

    @field_validator("placed_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("placed_at must carry a time zone offset (e.g. 2026-11-22T10:00:00Z)")
        return value

    @field_validator("lines")
    @classmethod
    def _unique_line_ids(cls, lines: list[OrderLineIn]) -> list[OrderLineIn]:
        return unique_line_ids(lines)

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.external_id}"


class OrderLineChangeIn(OrderLineIn):
    """A line of a change request: the rules of a new order's line, but 0 cancels what is open."""

    qty: int = Field(ge=0, le=MAX_LINE_QTY, strict=True)


class OrderChangeIn(BaseModel):
    """A change to a placed order (``PATCH /v1/orders/{order_id}``), held to the rules of a new
    order: what could not be placed cannot be reached by a change either."""

    model_config = ConfigDict(extra="forbid")

    lines: list[OrderLineChangeIn] = Field(
        default_factory=list, max_length=MAX_LINES, description="new quantities; a new line_id adds a line")
    priority: int | None = Field(default=None, ge=MIN_PRIORITY, le=MAX_PRIORITY, strict=True)

    @field_validator("lines")
    @classmethod
    def _unique_line_ids(cls, lines: list[OrderLineChangeIn]) -> list[OrderLineChangeIn]:
        return unique_line_ids(lines)


def validate_channel_order(data: Any) -> tuple[ChannelOrder | None, list[Problem]]:
    """Validate a decoded JSON document; return the order or the full list of problems."""
    if not isinstance(data, dict):
        return None, [Problem(field="(body)", problem="must be a JSON object")]
    try:
        return ChannelOrder.model_validate(data), []
    except ValidationError as exc:
        return None, problems_of(exc)
