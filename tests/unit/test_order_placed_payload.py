"""Order intake writes OrderPlaced's payload from the validated channel order's own dump (no
OrderPlaced model is built on the hot path): it must be exactly what the model would write."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from libs.contracts import decode_event, encode_event
from libs.contracts.events import LocationChoice, OrderLine, OrderPlaced
from libs.contracts.orders import ChannelOrder, validate_channel_order
from services.order_intake.service_layer.placing import _placed_envelope, placed_data

PLAIN = {
    "channel": "shopify-eu",
    "external_id": "1001",
    "placed_at": "2026-11-22T10:00:00.123456Z",
    "currency": "eur",
    "ship_to": {"country": "de", "postal_code": "10115"},
    "lines": [{"line_id": "1", "sku": "BRASS-SCREW", "qty": 25, "unit_price": "0.10"}],
}
FULL = {
    **PLAIN,
    "placed_at": "2026-11-22T10:00:00+05:30",
    "customer": {"customer_id": "c1", "name": "Ada", "email": "ada@example.com", "tags": ["vip", "wholesale"]},
    "ship_to": {"country": "DE", "postal_code": "10115", "city": "Berlin", "lat": 52.5, "lon": 13.4},
    "priority": 7,
    "ship_complete": True,
    "pickup_location_id": "berlin-store",
    "lines": [{"line_id": str(i), "sku": f"SKU-{i}", "qty": i, "unit_price": p}
              for i, p in enumerate(["0", "1.5", "12.3400", "99999999.9999", "1E+2"], 1)],
}


def _model(order_id: str, order: ChannelOrder, locations: LocationChoice | None) -> dict[str, Any]:
    """What order intake wrote before: the OrderPlaced model's own dump."""
    return OrderPlaced(
        order_id=order_id, channel=order.channel, external_id=order.external_id, placed_at=order.placed_at,
        currency=order.currency, customer=order.customer, ship_to=order.ship_to, priority=order.priority,
        ship_complete=order.ship_complete, pickup_location_id=order.pickup_location_id,
        lines=[OrderLine(line_id=ln.line_id, sku=ln.sku, qty=ln.qty, unit_price=ln.unit_price) for ln in order.lines],
        locations=locations,
    ).model_dump(mode="json")


@pytest.mark.parametrize("document", [PLAIN, FULL], ids=["plain", "full"])
@pytest.mark.parametrize("locations", [None, LocationChoice(restrict_to=["a", "b"], restricted_by="r1", prefer=["b"],
                                                           preferred_by="r2", priorities={"a": 3}, priorities_by="r3")],
                         ids=["no-rule", "location-rule"])
def test_the_payload_is_the_models_own_dump_key_for_key(document: dict[str, Any], locations: LocationChoice | None) -> None:
    order, problems = validate_channel_order(document)
    assert order is not None, problems
    data = placed_data("ord_1", order, locations)
    assert data == _model("ord_1", order, locations)
    assert list(data) == list(_model("ord_1", order, locations))  # same key order on the wire too
    envelope = _placed_envelope(data, "corr-1", uuid.uuid4())
    decoded = decode_event(encode_event(envelope))  # what allocation reads back
    assert decoded.envelope.event_type == "OrderPlaced" and decoded.envelope.correlation_id == "corr-1"
    assert decoded.event == OrderPlaced.model_validate(_model("ord_1", order, locations))
