"""HTTP routes of locations (inventory), added to inventory's router by ``http.build_router``;
who may call them is in ``http.ACCESS``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import orjson
import pycountry
from fastapi import APIRouter, Body
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from libs.contracts.events import LocationChanged
from libs.contracts.problems import Problem, problems_of
from libs.contracts.storable import Text
from libs.service_host import Runtime
from libs.service_host.bodies import documented_as
from libs.service_host.errors import problem_response
from services.inventory.entrypoints.common import Code, not_found
from services.inventory.service_layer.locations import (
    LocationNotFound,
    get_location,
    list_locations,
    save_location,
)


def _country(value: str) -> str:
    value = value.upper()
    if len(value) != 2 or pycountry.countries.get(alpha_2=value) is None:
        raise ValueError(f"unknown ISO 3166 country code {value!r}")
    return value

class LocationIn(BaseModel):
    """A location as operations describe it; POST replaces it whole."""

    model_config = ConfigDict(extra="forbid")
    location_id: Code
    name: Code
    kind: Literal["warehouse", "store", "3pl", "dropship"] = Field(
        default="warehouse", description="dropship: a supplier that ships for the seller (its stated stock: "
        "PUT /v1/locations/{location_id}/supplier-stock)")
    country: Text
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    active: bool = True
    priority: int = Field(default=0, ge=-1_000_000, le=1_000_000)
    ships_to: list[Text] = Field(default_factory=list, description="ISO countries; empty: its own country")
    channels: list[Code] | None = Field(
        default=None, description="channels it may serve; null: every channel"
    )
    pickup: bool = Field(default=False, description="can serve buy-online-pick-up-in-store")

    _country_ok = field_validator("country")(lambda cls, v: _country(v))

    @field_validator("ships_to")
    @classmethod
    def _ships_to_ok(cls, values: list[str]) -> list[str]:
        return sorted({_country(v) for v in values})


# PATCH /v1/locations/{location_id} takes any fields of LocationIn; the merged location is then
# checked as a whole (so this model documents the body, LocationIn checks it).
LocationChanges = create_model(
    "LocationChanges",
    __config__=ConfigDict(extra="forbid"),
    __doc__="Some fields of a location; the rest stay as they are.",
    **{name: (f.annotation | None, Field(default=None, description=f.description))  # type: ignore[operator, call-overload]
       for name, f in LocationIn.model_fields.items()},
)

class LocationOut(BaseModel):
    location_id: str
    name: str
    kind: Literal["warehouse", "store", "3pl", "dropship"]
    country: str
    lat: float | None
    lon: float | None
    active: bool
    priority: int
    ships_to: list[str]
    channels: list[str] | None = Field(description="channels it may serve; null: every channel")
    pickup: bool
    updated_at: datetime

def _event(loc: LocationIn) -> LocationChanged:
    return LocationChanged(**loc.model_dump())

def add_location_routes(router: APIRouter, runtime: Runtime) -> None:
    """The location routes, on inventory's ``/v1`` router."""
    engine = runtime.engine

    @router.post(
        "/locations", summary="Create or replace a location (publishes LocationChanged)",
        responses={200: {"model": LocationOut, "description": "replaced"},
                   201: {"model": LocationOut, "description": "created"}},
    )
    async def post_location(body: LocationIn) -> Any:
        async with runtime.transaction() as conn:
            created = await save_location(conn, _event(body))
            view = await get_location(conn, body.location_id)
        return JSONResponse(orjson.loads(orjson.dumps(view)), status_code=201 if created else 200)

    @router.patch(
        "/locations/{location_id}",
        summary='Change some fields of a location, e.g. {"active": false} to deactivate it '
        "(publishes LocationChanged)",
        responses={200: {"model": LocationOut}},
    )
    async def patch_location(
        location_id: str, changes: Annotated[Any, Body(), documented_as(LocationChanges)]
    ) -> Any:
        if not isinstance(changes, dict):
            return problem_response([Problem("(body)", "must be a JSON object")])
        if "location_id" in changes and changes["location_id"] != location_id:
            return problem_response([Problem("location_id", "cannot be changed")])
        async with runtime.transaction() as conn:
            try:
                current = await get_location(conn, location_id, lock=True)
            except LocationNotFound:
                return not_found(f"location {location_id}")
            merged = {k: current[k] for k in LocationIn.model_fields} | changes
            try:
                body = LocationIn.model_validate(merged)
            except ValidationError as exc:
                return problem_response(problems_of(exc))
            await save_location(conn, _event(body))
            view = await get_location(conn, location_id)
        return view

    @router.get(
        "/locations", summary="Every location (filter: active=true|false)", responses={200: {"model": list[LocationOut]}}
    )
    async def get_locations(active: bool | None = None) -> Any:
        async with engine.connect() as conn:
            return await list_locations(conn, active)

    @router.get("/locations/{location_id}", summary="One location", responses={200: {"model": LocationOut}})
    async def get_one_location(location_id: str) -> Any:
        async with engine.connect() as conn:
            try:
                return await get_location(conn, location_id)
            except LocationNotFound:
                return not_found(f"location {location_id}")
