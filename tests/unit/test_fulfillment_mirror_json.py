"""Fulfillment stores a result's lines and allocations as the models' own JSON less the run of
keys at their default: what a reader validating with the model gets back is the event's."""

from __future__ import annotations

from datetime import date

import orjson
from pydantic import TypeAdapter

from libs.contracts.events import AllocationLine, LineState
from services.fulfillment.service_layer.mirroring import _ALLOCATION_DEFAULTS, _LINE_DEFAULTS, stored_json

LINES = [LineState(line_id="1", sku="A", qty=2, allocated=2),
         LineState(line_id="2", sku='B "quoted"', qty=3, allocated=1, backordered=2, backorder_reason="no stock",
                   presold=2, promised_date=date(2027, 1, 5))]
ALLOCATIONS = [AllocationLine(allocation_id=7, line_id="1", sku="A", location_id="L1", bin="B1", lot="", qty=2,
                              status="allocated"),
               AllocationLine(allocation_id=8, line_id="2", sku='B "quoted"', location_id="L9", bin="", lot="x",
                              qty=1, status="packed", shipment_id="s1", dropship=True)]


def test_the_stored_json_is_the_models_dump_less_the_defaults() -> None:
    for items, model, defaults in ((LINES, LineState, _LINE_DEFAULTS), (ALLOCATIONS, AllocationLine, _ALLOCATION_DEFAULTS)):
        stored = stored_json(items, defaults)  # type: ignore[arg-type]
        assert stored == TypeAdapter(list[model]).dump_json(items).replace(defaults, b"").decode()  # type: ignore[valid-type]
        assert TypeAdapter(list[model]).validate_json(stored) == items  # type: ignore[valid-type]
        assert defaults.decode() not in stored  # the common line and allocation are stored short
    assert orjson.loads(stored_json(LINES, _LINE_DEFAULTS))[0] == {"line_id": "1", "sku": "A", "qty": 2, "allocated": 2,
                                                                   "backordered": 0}
