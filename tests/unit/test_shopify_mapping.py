"""The Shopify connector's pure rules on Shopify's own payload shapes (recorded samples in
tests/fixtures/shopify): signatures, order mapping, edits, inventory levels."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from libs.contracts.events import AvailabilityChanged, LocationAvailability
from libs.contracts.orders import validate_channel_order
from services.order_intake.domain import shopify

SAMPLES = Path(__file__).parents[1] / "fixtures" / "shopify"


def sample(name: str) -> dict[str, Any]:
    return json.loads((SAMPLES / f"{name}.json").read_text())


def parsed(payload: dict[str, Any]) -> shopify.ShopifyOrder:
    order, problems = shopify.parse_order(payload)
    assert order is not None, problems
    return order


def test_signature_is_base64_hmac_sha256_of_the_raw_body() -> None:
    body = (SAMPLES / "orders_create.json").read_bytes()
    good = shopify.sign("shh", body)
    assert shopify.signature_ok("shh", body, good)
    assert not shopify.signature_ok("other", body, good)
    assert not shopify.signature_ok("shh", body + b" ", good)  # re-serialised JSON fails: raw body only
    assert not shopify.signature_ok("shh", body, None)
    assert not shopify.signature_ok("shh", body, "not base64 ✓")


def test_an_order_maps_to_a_valid_channel_order_without_the_lines_that_need_no_shipping() -> None:
    mapped, problems = shopify.channel_order(parsed(sample("orders_create")), "shopify-jsmith")
    assert mapped is not None, problems
    order, problems = validate_channel_order(mapped.document)
    assert order is not None, problems
    assert order.channel == "shopify-jsmith" and order.external_id == "820982911946154508"
    assert order.placed_at == datetime(2022, 1, 1, 0, 0, tzinfo=UTC)
    assert order.currency == "USD" and order.ship_to.country == "US" and order.ship_to.postal_code == "40003"
    assert order.customer.customer_id == "115310627314723954" and order.customer.name == "John Smith"
    assert order.customer.email == "jon@example.com" and order.customer.tags == ["tag1", "tag2"]
    assert [(ln.line_id, ln.sku, ln.qty, ln.unit_price) for ln in order.lines] == [
        ("866550311766439020", "IPOD2008PINK", 1, Decimal("199.00")),
        ("141249953214522974", "IPOD2008BLACK", 1, Decimal("199.00")),
    ]  # the gift card (requires_shipping false) is not the OMS's to fulfil


def test_a_shipped_line_without_sku_or_an_order_without_country_is_refused_naming_shopifys_field() -> None:
    payload = sample("orders_create")
    payload["line_items"][1]["sku"] = ""
    payload["shipping_address"] = None
    payload["billing_address"]["country_code"] = None
    mapped, problems = shopify.channel_order(parsed(payload), "shopify-x")
    assert mapped is None
    assert {p.field for p in problems} == {"line_items.1.sku", "shipping_address.country_code"}


def test_a_payload_shopify_would_never_send_is_refused_naming_the_field() -> None:
    payload = sample("orders_create")
    payload["line_items"][0]["quantity"] = -1
    del payload["currency"]
    order, problems = shopify.parse_order(payload)
    assert order is None
    assert {p.field for p in problems} == {"line_items.0.quantity", "currency"}
    assert shopify.parse_order([1, 2])[1][0].field == "(body)"


def test_contract_problems_are_reported_with_shopifys_field_names() -> None:
    payload = sample("orders_create")
    payload["currency"] = "XYZ"
    payload["line_items"][1]["price"] = "1.123456"
    mapped, _ = shopify.channel_order(parsed(payload), "shopify-x")
    assert mapped is not None
    _, problems = validate_channel_order(mapped.document)
    assert {shopify.shopify_field(mapped, p.field) for p in problems} == {"currency", "line_items.1.price"}


def test_an_order_edit_becomes_line_changes_and_a_payment_update_none() -> None:
    stored = {
        "866550311766439020": shopify.StoredLine("866550311766439020", "IPOD2008PINK", 1, Decimal("199.00")),
        "141249953214522974": shopify.StoredLine("141249953214522974", "IPOD2008BLACK", 1, Decimal("199.00")),
    }
    changes = shopify.line_changes(stored, parsed(sample("orders_updated_edit")))
    assert [(c.line_id, c.sku, c.qty) for c in changes] == [
        ("866550311766439020", "IPOD2008PINK", 3),
        ("141249953214522974", "IPOD2008BLACK", 0),
        ("998877665544332211", "IPOD2008GREEN", 2),
    ]
    after = {c.line_id: shopify.StoredLine(c.line_id, c.sku, c.qty, c.unit_price) for c in changes}
    assert shopify.line_changes(after, parsed(sample("orders_updated_payment"))) == []


def test_only_newer_states_are_applied() -> None:
    t1, t2 = datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 1, 2, tzinfo=UTC)
    assert shopify.is_newer(t2, t1) and not shopify.is_newer(t1, t2) and not shopify.is_newer(t1, t1)
    assert shopify.is_newer(None, t1) and shopify.is_newer(t1, None)


def availability(locations: dict[str, int], channels: dict[str, int]) -> AvailabilityChanged:
    return AvailabilityChanged(
        sku="IPOD2008PINK", total=sum(locations.values()),
        locations=[LocationAvailability(location_id=k, available=v) for k, v in locations.items()],
        channels=channels, as_of=datetime(2026, 11, 23, tzinfo=UTC))


MAPPING = shopify.ShopMapping(locations={"WH-1": 655441491, "WH-2": 655441492},
                              inventory_items={"IPOD2008PINK": 808950810})


def levels(event: AvailabilityChanged, channel: str = "shopify-jsmith") -> list[tuple[int, int]]:
    return [(lv.location_id, lv.available)
            for lv in shopify.inventory_levels("jsmith.myshopify.com", MAPPING, channel, event)]


def test_inventory_levels_per_mapped_location_with_zero_for_a_location_without_stock() -> None:
    event = availability({"WH-1": 7, "STORE-9": 4}, {"*": 11})
    assert levels(event) == [(655441491, 7), (655441492, 0)]  # STORE-9 is not mapped


def test_inventory_levels_never_promise_more_than_the_channel_after_its_buffer() -> None:
    event = availability({"WH-1": 7, "WH-2": 5}, {"*": 12, "shopify-jsmith": 9})
    assert levels(event) == [(655441491, 7), (655441492, 2)]
    assert levels(availability({"WH-1": 7, "WH-2": 5}, {"shopify-jsmith": 0})) == [(655441491, 0), (655441492, 0)]


def test_an_unmapped_sku_gives_no_levels() -> None:
    event = copy.copy(availability({"WH-1": 7}, {}))
    assert shopify.inventory_levels("s", shopify.ShopMapping(locations={"WH-1": 1}), "c", event) == []
