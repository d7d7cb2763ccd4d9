"""The order as a channel sends it (topic ``oms.channel-orders.v1`` and ``POST /v1/orders``).

Validation here is the contract with connector authors: every problem is reported with the
field path, so one round trip tells them everything that is wrong.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

import pycountry
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    customer_id: NonEmpty | None = None
    name: str | None = Field(default=None, max_length=200)
    email: str | None = Field(default=None, max_length=320)


class Address(BaseModel):
    model_config = ConfigDict(extra="ignore")

    country: Annotated[str, StringConstraints(min_length=2, max_length=2, to_upper=True)]
    postal_code: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=200)
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if pycountry.countries.get(alpha_2=value) is None:
            raise ValueError(f"unknown ISO 3166 country code {value!r}")
        return value


class OrderLineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    line_id: NonEmpty
    sku: NonEmpty
    qty: int = Field(gt=0, le=1_000_000, strict=True)
    unit_price: Decimal = Field(ge=0, max_digits=14, decimal_places=4)


class ChannelOrder(BaseModel):
    """An order exactly as a channel sends it; ``order_id`` is assigned by the OMS."""

    model_config = ConfigDict(extra="forbid")

    channel: NonEmpty
    external_id: NonEmpty
    placed_at: datetime
    currency: Annotated[str, StringConstraints(min_length=3, max_length=3, to_upper=True)]
    customer: Customer = Field(default_factory=Customer)
    ship_to: Address
    priority: int = Field(default=0, ge=-1000, le=1000, strict=True)
    ship_complete: bool = False
    pickup_location_id: NonEmpty | None = None
    lines: list[OrderLineIn] = Field(min_length=1, max_length=500)

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if pycountry.currencies.get(alpha_3=value) is None:
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
        seen: set[str] = set()
        for line in lines:
            if line.line_id in seen:
                raise ValueError(f"duplicate line_id {line.line_id!r}")
            seen.add(line.line_id)
        return lines

    @property
    def key(self) -> str:
        return f"{self.channel}:{self.external_id}"


class Problem(BaseModel):
    """One thing wrong with an input: where (dotted path) and what."""

    field: str
    problem: str


def problems_of(exc: ValidationError) -> list[Problem]:
    """Every problem pydantic found, with the field path spelled as a connector author reads it."""
    out = []
    for err in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(body)"
        out.append(Problem(field=loc, problem=err["msg"]))
    return out


def validate_channel_order(data: Any) -> tuple[ChannelOrder | None, list[Problem]]:
    """Validate a decoded JSON document; return the order or the full list of problems."""
    if not isinstance(data, dict):
        return None, [Problem(field="(body)", problem="must be a JSON object")]
    try:
        return ChannelOrder.model_validate(data), []
    except ValidationError as exc:
        return None, problems_of(exc)
