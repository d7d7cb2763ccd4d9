"""What inventory's route groups share: field types, the ledger entry a request caused
(``ChangeOut``, the shape of ``service_layer.stock.entry_view``), the time-zone check, the 404 and the
503 answers (``http.build_router`` puts the groups on one ``/v1`` router)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StringConstraints

from libs.contracts.storable import Text
from libs.service_host.errors import peer_unavailable
from services.inventory.service_layer.reservations import ReservationsUnavailable

Code = Annotated[Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Lot = Annotated[Text, StringConstraints(strip_whitespace=True, max_length=200)]
Reference = Annotated[Text, StringConstraints(max_length=200)]


class ChangeOut(BaseModel):
    """One ledger entry a request caused."""

    sku: str
    location_id: str
    bin: str
    lot: str
    delta: int
    on_hand: int = Field(description="the position's units after the change")
    seq: int = Field(description="the position's change number (StockAdjusted.seq)")
    reason: str


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("must carry a time zone offset (e.g. 2026-11-22T10:00:00Z)")
    return value


def not_found(what: str) -> JSONResponse:
    return JSONResponse({"detail": f"no {what}"}, status_code=404)


def reservations_unavailable(exc: ReservationsUnavailable) -> JSONResponse:
    """Reserved quantities are allocation's: without them a stock take cannot protect them."""
    return peer_unavailable("allocation", f"reserved quantities unavailable: {exc}")
