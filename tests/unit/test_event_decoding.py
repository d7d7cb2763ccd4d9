"""A consumed record is decoded once into typed objects (envelope and payload in one pass), and a
record that is not a valid event is refused with the field it concerns, whoever sent it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from libs.contracts import EventDecodeError, decode_event, encode_event, new_envelope
from libs.contracts.events import (
    AllocationLine,
    LineState,
    LocationChoice,
    OrderAllocated,
    OrderCancelled,
    OrderLine,
    OrderPlaced,
)
from libs.contracts.orders import Address, Customer

PLACED = OrderPlaced(
    order_id="ord_1", channel="web", external_id="1001", placed_at=datetime(2026, 12, 7, 10, 0, tzinfo=UTC),
    currency="EUR", customer=Customer(customer_id="c1", tags=["vip"]), ship_to=Address(country="DE", city="Berlin"),
    lines=[OrderLine(line_id="1", sku="A", qty=2, unit_price=Decimal("12.50")),
           OrderLine(line_id="2", sku="B", qty=1, unit_price=Decimal("0.10"))],
    locations=LocationChoice(prefer=["L2"], preferred_by="r1"),
)


def _wire(event: Any, source: str = "order-intake") -> dict[str, Any]:
    return orjson.loads(encode_event(new_envelope(event, source=source, correlation_id="corr-1")))  # type: ignore[no-any-return]


def test_a_record_decodes_into_the_typed_event_and_its_envelope() -> None:
    envelope = new_envelope(PLACED, source="order-intake", correlation_id="corr-1", causation_id=uuid.uuid4())
    decoded = decode_event(encode_event(envelope))
    assert decoded.event == PLACED
    assert type(decoded.event) is OrderPlaced
    assert all(type(ln) is OrderLine for ln in decoded.event.lines)  # typed all the way down, no dicts
    assert type(decoded.event.ship_to) is Address and type(decoded.event.locations) is LocationChoice
    assert decoded.envelope.model_dump(exclude={"data"}) == envelope.model_dump(exclude={"data"})
    assert decoded.envelope.data == {}  # the payload is the typed event


def test_each_event_type_decodes_as_its_own_model() -> None:
    result = OrderAllocated(order_id="ord_1", version=2, change="placed",
                            lines=[LineState(line_id="1", sku="A", qty=2, allocated=2)],
                            allocations=[AllocationLine(allocation_id=7, line_id="1", sku="A", location_id="L1",
                                                        bin="B1", lot="", qty=2, status="allocated")])
    for event in (result, OrderCancelled(order_id="ord_1", line_ids=["1"]), PLACED):
        decoded = decode_event(orjson.dumps(_wire(event, source="allocation")))
        assert type(decoded.event) is type(event) and decoded.event == event


def _placed_with(**changes: Any) -> bytes:
    record = _wire(PLACED)
    record.update({k: v for k, v in changes.items() if k != "data"})
    record["data"].update(changes.get("data", {}))
    return orjson.dumps(record)


@pytest.mark.parametrize(("raw", "problem"), [
    (_placed_with(data={"lines": [{"line_id": "1", "sku": "A", "qty": 0, "unit_price": "1"}]}),
     "data.lines.0.qty: Input should be greater than 0"),
    (_placed_with(data={"ship_to": {"country": "ZZ"}}), "data.ship_to.country: Value error, unknown ISO 3166"),
    (_placed_with(data={"order_id": None}), "data.order_id: Input should be a valid string"),
    (_placed_with(event_id="not-a-uuid"), "envelope.event_id: Input should be a valid UUID"),
    (_placed_with(event_type="OrderTeleported"), "event_type: unknown event type 'OrderTeleported'"),
    (orjson.dumps({k: v for k, v in _wire(PLACED).items() if k != "event_type"}), "envelope.event_type: Field required"),
    (b"[1, 2]", "envelope: Input should be an object"),
    (b"{nope", "value is not JSON"),
])
def test_a_bad_record_is_refused_naming_the_field(raw: bytes, problem: str) -> None:
    with pytest.raises(EventDecodeError) as refused:
        decode_event(raw)
    assert problem in str(refused.value)


def test_our_own_services_records_are_checked_too() -> None:
    """No trusted shortcut for our own sources: a broken record from allocation is refused as well."""
    record = _wire(OrderCancelled(order_id="ord_1"), source="allocation")
    record["data"]["line_ids"] = "1"
    with pytest.raises(EventDecodeError, match=r"data\.line_ids: Input should be a valid array"):
        decode_event(orjson.dumps(record))


class CancelledOrderOnly(OrderCancelled):
    """A consumer's narrower reading: line ids kept as sent."""

    line_ids: Any = None


def test_a_consumer_reads_an_event_type_with_its_own_model() -> None:
    raw = encode_event(new_envelope(OrderCancelled(order_id="ord_1", line_ids=["1"]), source="x", correlation_id="c"))
    mine = {"OrderCancelled": CancelledOrderOnly}
    assert type(decode_event(raw, mine).event) is CancelledOrderOnly
    assert type(decode_event(raw).event) is OrderCancelled  # the default reading is unchanged
    with pytest.raises(EventDecodeError, match="unknown event type 'OrderPlaced'"):
        decode_event(encode_event(new_envelope(PLACED, source="x", correlation_id="c")), mine)
