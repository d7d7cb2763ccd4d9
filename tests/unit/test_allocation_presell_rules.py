"""Pre-selling against inbound supply (issue 10 part 1), the pure rules with exact figures:
promises in fair-queue order, never beyond a purchase order's quantity or a channel's cap,
lines that may not pre-sell keep their claim on the receipt, late / cancelled / received orders
promise nothing, and the reasons a line shows."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from services.allocation.domain.inbound import (
    InboundSupply,
    Presale,
    PresellCap,
    WaitingLine,
    inbound_for_channel,
    parse_presell_caps,
    plan_presales,
    presold_reason,
    reason_after,
)
from services.allocation.domain.model import Location, queue_key
from services.allocation.domain.policy import Policy, parse_policy, policy_from_json

TODAY = date(2026, 11, 23)
T0 = datetime(2026, 11, 20, 9, tzinfo=UTC)
LOCS = {"WH1": Location("WH1", "main", "DE"), "WH2": Location("WH2", "paris", "FR")}
PO_A = InboundSupply("po-A", "X", "WH1", 10, TODAY + timedelta(days=5))
PO_B = InboundSupply("po-B", "X", "WH1", 5, TODAY + timedelta(days=10))


def line(order_id: str, qty: int, *, channel: str = "web", minutes: int = 0, country: str = "DE",
         priority: int = 0) -> WaitingLine:
    placed = T0 + timedelta(minutes=minutes)
    return WaitingLine(order_id, "1", "X", qty, channel, country, queue_key(priority, placed, order_id, "1"))


def caps(**by_channel: int):  # type: ignore[no-untyped-def]
    return lambda channel: (PresellCap("X", by_channel[channel]),) if channel in by_channel else ()


def figures(plan) -> list[tuple[str, str, int]]:  # type: ignore[no-untyped-def]
    return [(p.order_id, p.purchase_order_id, p.qty) for p in plan.presales]


def test_lines_are_promised_in_queue_order_from_the_earliest_purchase_order_first():
    lines = [line("o4", 5, minutes=4), line("o1", 4, minutes=1), line("o3", 6, minutes=3),
             line("o2", 3, minutes=2, channel="shop")]  # shop may not pre-sell
    plan = plan_presales(lines, [PO_B, PO_A], LOCS, caps(web=12), TODAY)
    # o1 takes 4 of po-A; o2 (no pre-selling) still gets 3 of po-A first when it arrives, so it is
    # not promised to anyone else; o3 gets po-A's last 3 and 3 of po-B; o4 the 2 left (cap 12 reached).
    assert figures(plan) == [("o1", "po-A", 4), ("o3", "po-A", 3), ("o3", "po-B", 3), ("o4", "po-B", 2)]
    assert sum(p.qty for p in plan.presales) == 12
    assert {p.promised_date for p in plan.presales if p.order_id == "o1"} == {TODAY + timedelta(days=5)}


def test_promises_stop_at_the_channel_cap_and_never_exceed_the_inbound_quantity():
    lines = [line("o1", 4, minutes=1), line("o3", 6, minutes=3), line("o4", 5, minutes=4)]
    assert figures(plan_presales(lines, [PO_A, PO_B], LOCS, caps(web=5), TODAY)) == [
        ("o1", "po-A", 4), ("o3", "po-A", 1)]
    big = [line("o1", 40, minutes=1)]
    assert figures(plan_presales(big, [PO_A, PO_B], LOCS, caps(web=1000), TODAY)) == [
        ("o1", "po-A", 10), ("o1", "po-B", 5)]


def test_a_higher_priority_order_comes_first_in_the_promise_as_in_the_queue():
    lines = [line("old", 8, minutes=1), line("vip", 8, minutes=9, priority=5)]
    assert figures(plan_presales(lines, [PO_A], LOCS, caps(web=100), TODAY)) == [("vip", "po-A", 8), ("old", "po-A", 2)]


def test_late_cancelled_and_received_purchase_orders_promise_nothing():
    late = InboundSupply("po-L", "X", "WH1", 10, TODAY - timedelta(days=1))
    cancelled = InboundSupply("po-C", "X", "WH1", 10, TODAY, status="cancelled")
    received = InboundSupply("po-R", "X", "WH1", 10, TODAY, status="received", received_qty=10)
    today = InboundSupply("po-T", "X", "WH1", 2, TODAY)
    plan = plan_presales([line("o1", 5)], [late, cancelled, received, today], LOCS, caps(web=100), TODAY)
    assert figures(plan) == [("o1", "po-T", 2)]


def test_a_purchase_order_at_a_location_the_line_cannot_use_promises_nothing_to_it():
    paris = InboundSupply("po-P", "X", "WH2", 10, TODAY)  # WH2 ships within FR only
    assert figures(plan_presales([line("o1", 5)], [paris], LOCS, caps(web=100), TODAY)) == []
    assert figures(plan_presales([line("o1", 5, country="FR")], [paris], LOCS, caps(web=100), TODAY)) == [
        ("o1", "po-P", 5)]
    closed = {**LOCS, "WH1": Location("WH1", "main", "DE", active=False)}
    assert figures(plan_presales([line("o1", 5)], [PO_A], closed, caps(web=100), TODAY)) == []


def test_reasons_name_the_purchase_order_the_promised_date_and_why_a_promise_ended():
    supplies = {"po-A": PO_A, "po-S": InboundSupply("po-S", "X", "WH1", 10, TODAY, status="received", received_qty=8),
                "po-C": InboundSupply("po-C", "X", "WH1", 10, TODAY, status="cancelled")}
    promised = [Presale("o1", "1", "po-A", "X", 4, PO_A.expected_date)]
    assert presold_reason(promised, supplies) == (
        "pre-sold: 4 against purchase order po-A at WH1, promised 2026-11-28"
        " (waits in the backorder queue; cannot be packed until the receipt is booked)")
    lost = [Presale("o1", "1", "po-S", "X", 3, TODAY), Presale("o1", "1", "po-C", "X", 1, TODAY)]
    assert reason_after(lost, supplies, TODAY) == (
        "no longer pre-sold: purchase order po-C cancelled; purchase order po-S received (short: 8 of 10),"
        " not enough for this line in queue order: waiting in the backorder queue")


def test_the_policy_carries_presell_caps_and_refuses_bad_ones_naming_the_field():
    policy, problems = parse_policy({"channel": "web", "presell": [{"sku": "X", "cap": 12}, {"sku": "*", "cap": 0}]}, [])
    assert problems == [] and policy is not None
    assert policy.presell == (PresellCap("X", 12), PresellCap("*", 0))
    assert policy_from_json(policy.to_json()) == policy
    assert Policy().to_json()["presell"] == []
    _, problems = parse_policy({"presell": [{"sku": "X", "cap": -1}, {"sku": "X", "cap": 1, "when": 2}]}, [])
    assert [p.field for p in problems] == ["presell.0.cap", "presell.1.when"]
    assert parse_presell_caps("many") == ((), [("presell", "must be a list of {sku, cap}")])


def test_what_is_left_of_each_purchase_order_and_what_a_channel_may_still_pre_sell():
    lines = [line("o1", 4, minutes=1), line("o2", 3, minutes=2, channel="shop")]
    late = InboundSupply("po-L", "X", "WH1", 10, TODAY - timedelta(days=1))
    plan = plan_presales(lines, [PO_A, PO_B, late], LOCS, caps(web=6), TODAY)
    assert plan.left == {"po-A": 3, "po-B": 5, "po-L": 0}  # o1 4 and o2 3 of po-A's 10
    left = {"WH1": 8, "WH2": 4}
    web_only = {**LOCS, "WH2": Location("WH2", "paris", "FR", channels=("shop",))}
    assert inbound_for_channel(left, web_only, [PresellCap("X", 6)], "X", "web", promised=4) == 2  # the cap
    assert inbound_for_channel(left, web_only, [PresellCap("*", 50)], "X", "web", promised=4) == 8  # WH1 only
    assert inbound_for_channel(left, web_only, [PresellCap("*", 50)], "X", "shop", promised=0) == 12
    assert inbound_for_channel(left, web_only, [], "X", "shop", promised=0) == 0  # no cap: no pre-selling


@settings(max_examples=300, deadline=None)
@given(
    wants=st.lists(st.tuples(st.integers(1, 9), st.sampled_from(["web", "shop", "app"]), st.sampled_from(["DE", "FR"])),
                   min_size=0, max_size=12),
    pos=st.lists(st.tuples(st.integers(1, 15), st.integers(-2, 6), st.sampled_from(["WH1", "WH2"]),
                           st.sampled_from(["open", "cancelled", "received"])), min_size=0, max_size=4),
    web_cap=st.integers(0, 20), app_cap=st.integers(0, 20),
)
def test_promises_never_exceed_supply_cap_or_backorder_and_follow_the_queue(wants, pos, web_cap, app_cap):  # type: ignore[no-untyped-def]
    lines = [line(f"o{i:02d}", qty, channel=ch, minutes=i, country=c) for i, (qty, ch, c) in enumerate(wants)]
    supplies = [InboundSupply(f"po-{i}", "X", loc, qty, TODAY + timedelta(days=d), status)
                for i, (qty, d, loc, status) in enumerate(pos)]
    plan = plan_presales(lines, supplies, LOCS, caps(web=web_cap, app=app_cap), TODAY)
    by_po: dict[str, int] = {}
    by_channel: dict[str, int] = {}
    by_line: dict[str, int] = {}
    channel_of = {ln.order_id: ln.channel for ln in lines}
    for p in plan.presales:
        assert p.qty > 0
        by_po[p.purchase_order_id] = by_po.get(p.purchase_order_id, 0) + p.qty
        by_channel[channel_of[p.order_id]] = by_channel.get(channel_of[p.order_id], 0) + p.qty
        by_line[p.order_id] = by_line.get(p.order_id, 0) + p.qty
    supply = {s.purchase_order_id: s for s in supplies}
    for po_id, n in by_po.items():
        assert supply[po_id].promisable(TODAY) and n + plan.left[po_id] <= supply[po_id].qty
    assert by_channel.get("web", 0) <= web_cap and by_channel.get("app", 0) <= app_cap
    assert "shop" not in by_channel
    for ln in lines:
        assert by_line.get(ln.order_id, 0) <= ln.backordered
    # Queue order: while any units of a purchase order are left, every line that could use it
    # and may still pre-sell under its channel's cap got all it waits for.
    for s in supplies:
        if plan.left.get(s.purchase_order_id, 0) > 0:
            for ln in lines:
                cap = {"web": web_cap, "app": app_cap}.get(ln.channel, 0)
                usable = LOCS[s.location_id].ships_to_country(ln.country)
                if usable and by_channel.get(ln.channel, 0) < cap:
                    assert by_line.get(ln.order_id, 0) == ln.backordered
