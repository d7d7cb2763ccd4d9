"""Telling a resend of an order from a conflicting reuse of its (channel, external_id)."""

from __future__ import annotations

from libs.contracts.orders import ChannelOrder, validate_channel_order
from services.order_intake.domain.orders import content_hash, legacy_content_hash, same_content

GOOD = {
    "channel": "shopify-eu",
    "external_id": "1001",
    "placed_at": "2026-11-22T10:00:00Z",
    "currency": "EUR",
    "ship_to": {"country": "DE", "postal_code": "10115"},
    "lines": [{"line_id": "1", "sku": "BRASS-SCREW", "qty": 25, "unit_price": "0.10"}],
}


def order(**changes: object) -> ChannelOrder:
    parsed, problems = validate_channel_order({**GOOD, **changes})
    assert parsed is not None, problems
    return parsed


def test_a_resend_differing_only_in_form_has_the_same_fingerprint() -> None:
    again = order(ship_to={"country": "de", "postal_code": "10115"})
    assert content_hash(again) == content_hash(order())


def test_other_content_has_another_fingerprint() -> None:
    assert content_hash(order(lines=[{"line_id": "1", "sku": "BRASS-SCREW", "qty": 26, "unit_price": "0.10"}])) \
        != content_hash(order())


def test_orders_stored_with_the_v1_fingerprint_are_still_recognised() -> None:
    stored_v1 = legacy_content_hash(order())
    assert not stored_v1.startswith("v2:")
    assert same_content(stored_v1, order(), content_hash(order()))
    changed = order(currency="USD")
    assert not same_content(stored_v1, changed, content_hash(changed))
    assert same_content(content_hash(order()), order(), content_hash(order()))


def test_the_customer_tags_field_added_later_leaves_old_fingerprints_alone() -> None:
    # Pinned: the v2 fingerprint of GOOD before customer.tags existed; a resend must not conflict.
    assert content_hash(order()) == "v2:" + __import__("hashlib").sha256(
        b'{"channel":"shopify-eu","external_id":"1001","placed_at":"2026-11-22T10:00:00Z","currency":"EUR",'
        b'"customer":{"customer_id":null,"name":null,"email":null},"ship_to":{"country":"DE","postal_code":"10115",'
        b'"city":null,"lat":null,"lon":null},"priority":0,"ship_complete":false,"pickup_location_id":null,'
        b'"lines":[{"line_id":"1","sku":"BRASS-SCREW","qty":25,"unit_price":"0.10"}]}').hexdigest()
    tagged = order(customer={"tags": ["vip"]})
    assert content_hash(tagged) != content_hash(order())
