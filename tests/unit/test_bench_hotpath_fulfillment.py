"""The fulfillment hot-path yardstick feeds results allocation could have published: line states
that add up, allocations that match them, later snapshots only of orders seen in an earlier batch."""

from __future__ import annotations

from bench.hotpath_fulfillment import _Orders
from libs.contracts import decode_event
from libs.contracts.events import AllocationResult


def test_results_add_up_and_later_snapshots_follow_their_first() -> None:
    batches = _Orders("r1", [f"r1-S{i:05d}" for i in range(200)]).batches(1000, 100, 0.05)
    seen: set[str] = set()
    later = 0
    for records in batches:
        fresh = set()
        for raw in records:
            event = decode_event(raw).event
            assert isinstance(event, AllocationResult)
            assert 1 <= len(event.lines) <= 5
            for ln in event.lines:
                assert ln.allocated + ln.backordered == ln.qty
                assert sum(a.qty for a in event.allocations if a.line_id == ln.line_id) == ln.allocated
            if event.version == 1:
                fresh.add(event.order_id)
            else:
                assert event.order_id in seen  # mirrored in an earlier batch
                later += 1
        seen |= fresh
    assert len(seen) == 1000
    assert 0.03 < later / sum(len(b) for b in batches) < 0.07
