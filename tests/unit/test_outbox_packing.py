"""The packed outbox row: what goes in comes out unchanged and in order, and after a partly failed
pass only what the broker did not acknowledge stays (libs/messaging/outbox.py)."""

from __future__ import annotations

from types import SimpleNamespace

from libs.contracts import decode_event, encode_event, new_envelope
from libs.contracts.events import OrderCancelled
from libs.messaging.outbox import OutboxMessage, _Pending, pack, settle, unpack


def _message(n: int, key: str = "order-1") -> OutboxMessage:
    return OutboxMessage("oms.orders.v1", key, new_envelope(
        OrderCancelled(order_id=key, reason=f'"quoted" \\ reason {n} ünïcode'), source="test", correlation_id=f"c{n}"))


def test_a_packed_row_gives_back_every_message_as_written_in_order() -> None:
    messages = [_message(n, key=f"order-{n % 3}") for n in range(5)]
    unpacked = unpack(pack(messages))
    assert [(t, k) for t, k, _, _ in unpacked] == [(m.topic, m.key) for m in messages]
    assert [v for _, _, _, v in unpacked] == [encode_event(m.envelope) for m in messages]  # the bytes Kafka gets
    assert [h["event_type"] for _, _, h, _ in unpacked] == ["OrderCancelled"] * 5
    assert [h["correlation_id"] for _, _, h, _ in unpacked] == [f"c{n}" for n in range(5)]
    assert decode_event(unpacked[4][3]).event.reason == '"quoted" \\ reason 4 ünïcode'  # type: ignore[attr-defined]


def _pending(rows: list[SimpleNamespace]) -> list[_Pending]:
    out = []
    for row in rows:
        for place in range(row.count):
            out.append(_Pending(row.id, place, "t", f"k{row.id}.{place}", {}, b"{}"))
    return out


def test_after_a_pass_rows_the_broker_took_whole_leave_and_a_partly_taken_row_keeps_only_the_rest() -> None:
    rows = [SimpleNamespace(id=1, packed=None, count=1), SimpleNamespace(id=2, packed=b"x", count=3),
            SimpleNamespace(id=3, packed=b"x", count=2), SimpleNamespace(id=4, packed=None, count=1),
            SimpleNamespace(id=5, packed=b"x", count=2)]
    messages = _pending(rows)  # positions: row 1: 0; row 2: 1-3; row 3: 4-5; row 4: 6; row 5: 7-8
    legacy, packed, rewrite = settle(rows, messages, confirmed=[0, 1, 3, 4, 5])
    assert legacy == [1]  # row 4 was not acknowledged: it stays
    assert packed == [3]  # row 5: nothing acknowledged, it stays as it is
    assert list(rewrite) == [2] and [m.key for m in rewrite[2]] == ["k2.1"]  # 2.0 and 2.2 are on Kafka
    assert settle(rows, messages, confirmed=list(range(9))) == ([1, 4], [2, 3, 5], {})
    assert settle(rows, messages, confirmed=[]) == ([], [], {})
