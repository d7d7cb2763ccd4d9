"""The availability feed's payload, worked out once per window (``FeedRules``), is exactly the
straightforward per-SKU definition: each channel sums ``available_to_promise`` over the locations
it may use (``_may_use``), suppliers only where its policy may dropship the SKU; per location and
the total under the default policy without a buffer; the default entry last when no policy has it.
The reference below is that definition as the publisher computed it before the rules were hoisted
out of the per-SKU loop."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from services.allocation.domain.availability import available_by_location, available_to_promise
from services.allocation.domain.policy import DEFAULT_CHANNEL, Policy, SafetyStock
from services.allocation.service_layer.availability import BUILTIN_POLICY, FeedRules, availability_of

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
SKUS = ["A", "B", "C"]
LOCATIONS = ["WH", "WH2", "SHOP", "SUP", "GONE"]  # GONE: positions at a location allocation does not know
CHANNELS = ["*", "web", "pos", "b2b"]


def _may_use(serves: Mapping[str, tuple[str, ...] | None], location_id: str, channel: str) -> bool:
    channels = serves.get(location_id)
    return channels is None or (channel != DEFAULT_CHANNEL and channel in channels)


def reference(sku: str, free_at: dict[str, int], policies: dict[str, Policy], now: datetime,
              suppliers: frozenset[str], serves: Mapping[str, tuple[str, ...] | None]) -> dict[str, Any]:
    default = policies.get(DEFAULT_CHANNEL) or BUILTIN_POLICY
    per_location = available_by_location(sku, free_at, default)
    channels = {}
    named = {ch for chs in serves.values() if chs for ch in chs}
    if named - policies.keys():
        policies = {**policies, **{ch: default for ch in sorted(named - policies.keys())}}
    for ch, pol in policies.items():
        channels[ch] = sum(available_to_promise(free, pol, sku, loc) for loc, free in free_at.items()
                           if (loc not in suppliers or pol.dropship_applies(sku)) and _may_use(serves, loc, ch))
    if DEFAULT_CHANNEL not in channels:
        channels[DEFAULT_CHANNEL] = sum(n for loc, n in per_location.items() if _may_use(serves, loc, DEFAULT_CHANNEL))
    return {
        "sku": sku, "total": sum(per_location.values()),
        "locations": [{"location_id": loc, "available": n} for loc, n in sorted(per_location.items())],
        "channels": channels, "positions": [], "as_of": now.isoformat(),
    }


safety = st.builds(SafetyStock, st.sampled_from(["*", *SKUS]), st.sampled_from(["*", *LOCATIONS]), st.integers(0, 6))
def policy(channel: str) -> st.SearchStrategy[Policy]:
    return st.builds(
        Policy,
        channel=st.just(channel),
        safety_stock=st.lists(safety, max_size=4).map(tuple),
        buffer=st.integers(0, 4),
        dropship_mode=st.sampled_from(["fallback", "always", "never"]),
        dropship_skus=st.none() | st.lists(st.sampled_from(SKUS), max_size=2).map(tuple),
    )


policies = st.fixed_dictionaries({}, optional={ch: policy(ch) for ch in CHANNELS})
serves = st.fixed_dictionaries({}, optional={
    loc: st.none() | st.lists(st.sampled_from(CHANNELS[1:] + ["kiosk"]), max_size=2).map(tuple)
    for loc in LOCATIONS[:4]})
free = st.dictionaries(st.sampled_from(LOCATIONS), st.integers(0, 12), max_size=5)


@settings(max_examples=400, deadline=None)
@given(policies, serves, st.sampled_from([frozenset(), frozenset({"SUP"})]),
       st.lists(st.tuples(st.sampled_from(SKUS), free), min_size=1, max_size=4))
def test_the_rules_worked_out_once_give_every_sku_the_payload_of_the_per_sku_definition(
        pols: dict[str, Policy], kept: dict[str, tuple[str, ...] | None], suppliers: frozenset[str],
        window: list[tuple[str, dict[str, int]]]) -> None:
    rules = FeedRules(pols, suppliers, kept)  # one window: the same rules for several SKUs, in any order
    for sku, free_at in window:
        expected = reference(sku, free_at, pols, T0, suppliers, kept)
        got = rules.of(sku, free_at, T0.isoformat())
        assert got == expected
        assert list(got["channels"]) == list(expected["channels"])  # the same keys in the same order
        assert availability_of(sku, free_at, pols, T0, suppliers, kept) == expected


def test_the_publishers_envelope_is_the_validated_envelope_of_the_same_values_with_random_version_4_ids() -> None:
    from libs.contracts import encode_event
    from libs.contracts.envelope import Envelope, new_event_ids
    from services.allocation.service_layer.availability import _envelope

    ids = new_event_ids(3)
    assert len(set(ids)) == 3 and all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)
    data = {"sku": "A", "total": 1}
    built = _envelope(ids[0], T0, "sku:A", data)
    validated = Envelope(event_id=ids[0], event_type="AvailabilityChanged", schema_version=1, occurred_at=T0,
                         source="allocation", correlation_id="sku:A", causation_id=None, data=data)
    assert built == validated
    assert built.model_fields_set == validated.model_fields_set
    assert encode_event(built) == encode_event(validated)
    assert Envelope.model_validate_json(encode_event(built)) == validated
