"""Pack requests: what may be packed, ship-complete orders, serial numbers; shipping rules."""

import pytest

from libs.contracts.events import AllocationLine, LineState
from services.fulfillment.domain.packing import (
    OrderedLine,
    PackRefused,
    ShipRefused,
    check_pack,
    check_ship,
    packed_lines,
)

LINES = [OrderedLine("L1", "SCREW", 25), OrderedLine("L2", "PHONE", 2)]


def alloc(aid: int, line_id: str, sku: str, qty: int, *, status: str = "allocated", lot: str = "A",
          shipment_id: str | None = None) -> AllocationLine:
    return AllocationLine(allocation_id=aid, line_id=line_id, sku=sku, location_id="WH1", bin="A-1", lot=lot,
                          qty=qty, status=status, shipment_id=shipment_id)  # type: ignore[arg-type]


def pack(allocations, *, line_ids=None, serials=None, serialized=frozenset(), ship_complete=False, states=()):
    return check_pack(lines=LINES, ship_complete=ship_complete, line_states=list(states),
                      allocations=allocations, line_ids=line_ids, serials=serials or {},
                      serialized_skus=set(serialized))


def test_packs_what_is_allocated_leaving_the_backorder():
    plan = pack([alloc(1, "L1", "SCREW", 15), alloc(2, "L1", "SCREW", 7)],
                states=[LineState(line_id="L1", sku="SCREW", qty=25, allocated=22, backordered=3)])
    assert plan.units == {"L1": 22}


def test_only_named_lines_are_packed():
    plan = pack([alloc(1, "L1", "SCREW", 5), alloc(2, "L2", "PHONE", 2)], line_ids=["L1"])
    assert plan.units == {"L1": 5}


def test_already_packed_allocations_are_not_packed_again():
    with pytest.raises(PackRefused) as exc:
        pack([alloc(1, "L1", "SCREW", 5, status="packed", shipment_id="s1")])
    assert exc.value.kind == "conflict"
    assert "nothing is allocated" in exc.value.problems[0].problem


def test_unknown_line_is_invalid():
    with pytest.raises(PackRefused) as exc:
        pack([alloc(1, "L1", "SCREW", 5)], line_ids=["L1", "NOPE"])
    assert exc.value.kind == "invalid"
    assert exc.value.problems[0].field == "line_ids.1"


def test_ship_complete_order_with_a_backorder_cannot_be_packed():
    with pytest.raises(PackRefused) as exc:
        pack([alloc(1, "L1", "SCREW", 22)], ship_complete=True,
             states=[LineState(line_id="L1", sku="SCREW", qty=25, allocated=22, backordered=3)])
    assert exc.value.kind == "conflict"
    problem = exc.value.problems[0].problem
    assert "ship_complete" in problem and "L1 has 3 backordered" in problem


def test_ship_complete_order_must_be_packed_whole():
    with pytest.raises(PackRefused) as exc:
        pack([alloc(1, "L1", "SCREW", 25), alloc(2, "L2", "PHONE", 2)], ship_complete=True, line_ids=["L1"],
             serials={})
    assert exc.value.kind == "conflict"
    assert "also include L2" in exc.value.problems[0].problem


def test_ship_complete_order_wholly_allocated_packs():
    plan = pack([alloc(1, "L1", "SCREW", 25), alloc(2, "L2", "PHONE", 2)], ship_complete=True,
                states=[LineState(line_id="L1", sku="SCREW", qty=25, allocated=25),
                        LineState(line_id="L2", sku="PHONE", qty=2, allocated=2)])
    assert plan.units == {"L1": 25, "L2": 2}


def test_serialized_sku_needs_one_serial_per_unit():
    allocations = [alloc(2, "L2", "PHONE", 2)]
    with pytest.raises(PackRefused) as exc:
        pack(allocations, serialized={"PHONE"})
    assert exc.value.kind == "invalid" and exc.value.problems[0].field == "serials.L2"
    with pytest.raises(PackRefused) as exc:
        pack(allocations, serialized={"PHONE"}, serials={"L2": ["SN1"]})
    assert "exactly 2" in exc.value.problems[0].problem
    assert pack(allocations, serialized={"PHONE"}, serials={"L2": ["SN1", "SN2"]}).units == {"L2": 2}


def test_repeated_serials_are_refused_naming_the_line():
    with pytest.raises(PackRefused) as exc:
        pack([alloc(2, "L2", "PHONE", 2)], serialized={"PHONE"}, serials={"L2": ["SN1", "SN1"]})
    assert [p.field for p in exc.value.problems] == ["serials.L2"]
    assert "repeated: SN1" in exc.value.problems[0].problem


def test_serials_for_a_line_not_being_packed_are_refused():
    with pytest.raises(PackRefused) as exc:
        pack([alloc(1, "L1", "SCREW", 5)], serials={"L2": ["SN1"]})
    assert exc.value.problems[0].field == "serials.L2"


def test_shipment_lines_are_the_packed_allocations_of_that_shipment_with_serials_dealt_out():
    allocations = [
        alloc(1, "L2", "PHONE", 2, status="packed", shipment_id="s1", lot="A"),
        alloc(3, "L2", "PHONE", 1, status="packed", shipment_id="s1", lot="B"),
        alloc(4, "L1", "SCREW", 5, status="packed", shipment_id="s0"),
        alloc(5, "L1", "SCREW", 5, status="allocated"),
    ]
    lines = packed_lines(allocations, "s1", {"L2": ["a", "b", "c"]})
    assert [(ln.allocation_id, ln.qty, ln.serials) for ln in lines] == [(1, 2, ["a", "b"]), (3, 1, ["c"])]


def test_only_packed_shipments_ship_and_shipping_again_the_same_way_is_a_no_op():
    assert check_ship(status="packed", carrier="UPS", tracking_number="1Z",
                      shipped_carrier=None, shipped_tracking=None) is True
    assert check_ship(status="shipped", carrier="UPS", tracking_number="1Z",
                      shipped_carrier="UPS", shipped_tracking="1Z") is False
    for status in ("pending", "rejected"):
        with pytest.raises(ShipRefused) as exc:
            check_ship(status=status, carrier="UPS", tracking_number="1Z", shipped_carrier=None,
                       shipped_tracking=None)
        assert exc.value.kind == "conflict"
    with pytest.raises(ShipRefused) as exc:
        check_ship(status="shipped", carrier="UPS", tracking_number="OTHER", shipped_carrier="UPS",
                   shipped_tracking="1Z")
    assert exc.value.kind == "conflict"
