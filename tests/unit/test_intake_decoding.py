"""Order intake reads allocation results validated as far as it uses them (its order view has
no bins, lots or locations): the same envelope and line quantities as the full decoder, and
anything it cannot read still goes through the full decoder, which names the problem."""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord

from libs.contracts import Topic, decode_event, encode_event
from libs.contracts.envelope import new_envelope
from libs.contracts.events import (
    AllocationLine,
    AllocationResult,
    LineState,
    OrderBackordered,
    OrderCancelled,
)
from libs.messaging.consumer import PermanentMessageError
from services.order_intake.entrypoints.subscribers import _decode


def _record(value: bytes, topic: str = Topic.ALLOCATIONS) -> ConsumerRecord:  # type: ignore[type-arg]
    return ConsumerRecord(topic=topic, partition=0, offset=1, timestamp=0, timestamp_type=0, key=b"ord_1",
                          value=value, checksum=None, serialized_key_size=5, serialized_value_size=len(value),
                          headers=[])


RESULT = OrderBackordered(
    order_id="ord_1", version=3, change="OrderBackordered", detail="no stock",
    lines=[LineState(line_id="1", sku="A", qty=3, allocated=1, backordered=2, backorder_reason="no stock"),
           LineState(line_id="2", sku="B", qty=1, packed=1, on_hold=True)],
    allocations=[AllocationLine(allocation_id=7, line_id="1", sku="A", location_id="L1", bin="B1", lot="", qty=1,
                                status="allocated")],
)


def test_an_allocation_result_reads_as_the_full_decoder_reads_it() -> None:
    raw = encode_event(new_envelope(RESULT, source="allocation", correlation_id="c1"))
    light, full = _decode(_record(raw)), decode_event(raw)
    assert light.envelope == full.envelope
    assert isinstance(light.event, AllocationResult)
    assert light.event.model_dump(exclude={"allocations"}) == full.event.model_dump(exclude={"allocations"})


def test_what_intake_cannot_read_is_refused_with_the_full_decoders_words() -> None:
    broken = encode_event(new_envelope(RESULT, source="allocation", correlation_id="c1")).replace(
        b'"version":3', b'"version":"three"')
    with pytest.raises(PermanentMessageError, match="data.version"):
        _decode(_record(broken))
    with pytest.raises(PermanentMessageError, match="not JSON"):
        _decode(_record(b"{nope"))
    not_objects = encode_event(new_envelope(RESULT, source="allocation", correlation_id="c1")).replace(
        b'"allocations":[{', b'"allocations":[7,{')
    with pytest.raises(PermanentMessageError, match=r"data\.allocations\.0: Input should be an object"):
        _decode(_record(not_objects))


def test_other_events_on_the_topic_decode_as_before() -> None:
    raw = encode_event(new_envelope(OrderCancelled(order_id="ord_1"), source="x", correlation_id="c"))
    assert _decode(_record(raw)).event == OrderCancelled(order_id="ord_1")
