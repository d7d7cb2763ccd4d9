"""Each service consumes through one consumer (one group, one fetch loop) over all its input
topics, declared with the delivery settings orders need (docs/decisions.md 2 and 3): offsets
committed only after the handler, new groups from the earliest offset, batches."""

from __future__ import annotations

import importlib

import pytest
from faststream import AckPolicy

from services.cli.asyncapi import _build_service

EXPECTED = {
    "order_intake": ("oms-order-intake", {"oms.channel-orders.v1", "oms.allocations.v1", "oms.fulfillment.v1"}),
    "inventory": ("oms-inventory", {"oms.fulfillment.v1"}),
    "allocation": ("oms-allocation", {"oms.orders.v1", "oms.inventory.v1", "oms.fulfillment.v1"}),
    "fulfillment": ("oms-fulfillment", {"oms.allocations.v1"}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_one_consumer_per_service_with_safe_delivery_settings(name: str) -> None:
    built = await _build_service(name)
    assert built is not None
    _, _, (broker, engine, _producer, _kafka) = built
    try:
        [subscriber] = list(broker.subscribers)  # no Shopify mapping configured: the order path only
        group, topics = EXPECTED[name]
        assert subscriber.group_id == group
        assert set(subscriber.topic_names) == topics
        assert set(importlib.import_module(f"services.{name}.entrypoints.subscribers").INPUTS) == topics
        assert subscriber._connection_args["auto_offset_reset"] == "earliest"  # FastStream 0.7 keeps them here
        assert subscriber.ack_policy is AckPolicy.NACK_ON_ERROR
    finally:
        await engine.dispose()


async def test_the_per_topic_layout_gives_each_topic_its_own_consumer_and_group(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMS_KAFKA_CONSUMER_PER_TOPIC", "true")
    built = await _build_service("allocation")
    assert built is not None
    _, _, (broker, engine, _producer, _kafka) = built
    try:
        layout = {s.group_id: set(s.topic_names) for s in broker.subscribers}
        assert layout == {f"oms-allocation.{t}": {t} for t in EXPECTED["allocation"][1]}
        assert all(s.ack_policy is AckPolicy.NACK_ON_ERROR for s in broker.subscribers)
    finally:
        await engine.dispose()
