"""SPEC section 8, through the public HTTP interfaces of the four running services."""

from __future__ import annotations

import pytest

from services.cli.demo import Walkthrough
from services.cli.launcher import SERVICES, System

pytestmark = pytest.mark.e2e


def test_walkthrough_of_spec_section_8_gives_the_stated_quantities(system: System) -> None:
    said: list[str] = []
    result = Walkthrough({n: system.url(n) for n in SERVICES}, say=said.append, timeout=60).run()

    brass, tap = result["skus"]["brass"], result["skus"]["tap"]
    order_1 = {ln["sku"]: ln for ln in result["order_1"]["lines"]}
    order_2 = {ln["sku"]: ln for ln in result["order_2"]["lines"]}
    assert (order_1[brass]["qty"], order_1[brass]["packed"], order_1[brass]["backordered"]) == (25, 25, 0)
    assert (order_1[tap]["qty"], order_1[tap]["packed"], order_1[tap]["backordered"]) == (25, 25, 0)
    assert result["order_1"]["status"] == "packed"
    assert order_2[brass]["qty"] == 10
    assert order_2[brass]["cancelled"] == 10
    assert order_2[brass]["allocated"] == order_2[brass]["backordered"] == 0
    assert result["brass_available"] == 5
    timeline = [e["event_type"] for e in result["order_1"]["timeline"]]
    assert timeline[0] == "OrderPlaced"
    assert "AllocationPacked" in timeline and "OrderPacked" in timeline
