"""Admin pages: a channel's allocation policy (a refusal beside its field, then a change that
takes effect) and a location deactivated and activated again."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.e2e


def test_policy_edit_shows_the_refusal_beside_the_field_then_saves_a_new_version(page: Any) -> None:
    from playwright.sync_api import expect

    channel = f"b2b-{uuid.uuid4().hex[:6]}"  # its own channel: the other tests' policy stays as it is
    pg = page
    pg.goto(f"/policy?channel={channel}")
    expect(pg.locator("main")).to_contain_text(f"In force for {channel}")
    expect(pg.locator("main")).to_contain_text("(inherited from the default)")
    form = pg.locator("#policy-form")
    form.get_by_label("Rank locations by").fill("bogus, distance")
    form.get_by_role("button", name="Save policy").click()
    expect(pg.locator("#policy-form [data-error-for='rank_by']")).to_contain_text("rank_by.0: unknown ranking 'bogus'")

    form = pg.locator("#policy-form")
    form.get_by_label("Rank locations by").fill("distance, priority")
    form.get_by_label("Channel buffer").fill("2")
    form.get_by_role("button", name="Save policy").click()
    expect(pg.locator("#policy-form .ok")).to_contain_text(f"Policy of channel {channel} saved (version 1)")
    expect(pg.locator("main")).to_contain_text("Rank by: distance, priority")
    expect(pg.locator("main")).to_contain_text("buffer 2")


def test_a_location_is_deactivated_and_activated_again_from_the_locations_page(page: Any) -> None:
    from playwright.sync_api import expect

    loc = f"STORE-{uuid.uuid4().hex[:6]}"
    pg = page
    pg.goto("/locations")
    form = pg.locator("#location-form")
    form.get_by_label("Location id").fill(loc)
    form.get_by_label("Name").fill("Corner store")
    form.get_by_label("Kind").select_option("store")
    form.get_by_label("Country (ISO code)").fill("XX")  # refused: not a country
    form.get_by_role("button", name="Save location").click()
    expect(pg.locator("#location-form [data-error-for='country']")).to_contain_text("country:")
    pg.locator("#location-form").get_by_label("Country (ISO code)").fill("DE")
    pg.locator("#location-form").get_by_role("button", name="Save location").click()
    row = pg.locator(f"#locations tr[data-location='{loc}']")
    expect(row.locator("td[data-q='active']")).to_have_text("active")

    row.get_by_role("button", name="Deactivate").click()
    row = pg.locator(f"#locations tr[data-location='{loc}']")
    expect(row.locator("td[data-q='active']")).to_have_text("inactive")
    row.get_by_role("button", name="Activate").click()
    expect(pg.locator(f"#locations tr[data-location='{loc}'] td[data-q='active']")).to_have_text("active")
    pg.locator(f"#locations tr[data-location='{loc}']").get_by_label("Priority").fill("7")
    pg.locator(f"#locations tr[data-location='{loc}']").get_by_role("button", name="Set").click()
    expect(pg.locator(f"#locations tr[data-location='{loc}'] td[data-q='priority']")).to_have_text("7")


def test_a_channel_rule_is_refused_beside_its_field_then_added_and_deleted_on_the_rules_page(page: Any) -> None:
    from playwright.sync_api import expect

    sku = f"RULED-{uuid.uuid4().hex[:6]}"  # its own SKU: no other test's order matches the rule
    pg = page
    pg.goto("/rules")
    form = pg.locator("#rule-form")
    form.get_by_label("Name").fill(f"review {sku}")
    form.get_by_label("Any of these SKUs").fill(sku)
    form.get_by_label("Ship-to countries").fill("DE, XX")
    form.get_by_label("Hold for review").check()
    form.get_by_role("button", name="Add rule").click()
    expect(pg.locator("#rule-form [data-error-for='countries']")).to_contain_text("unknown ISO 3166 country code 'XX'")

    form = pg.locator("#rule-form")
    form.get_by_label("Ship-to countries").fill("DE")
    form.get_by_label("Hold for review").check()
    form.get_by_label("Priority").fill("9")
    form.get_by_role("button", name="Add rule").click()
    expect(pg.locator("#rule-form .ok")).to_contain_text(f"Rule 'review {sku}' added")
    row = pg.locator("#rules tr", has_text=f"review {sku}")
    expect(row).to_contain_text(f"skus: {sku}")
    expect(row).to_contain_text("hold for review · priority 9")
    row.get_by_role("button", name="Delete").click()
    expect(pg.locator("#rule-form .ok")).to_contain_text("deleted")
    expect(pg.locator("#rules tr", has_text=f"review {sku}")).to_have_count(0)
