"""Pure rules of order intake: identity, idempotency, status, what a change may do."""

from __future__ import annotations

import hashlib

import orjson

from libs.contracts.envelope import new_event_ids
from libs.contracts.events import LineState
from libs.contracts.orders import ChannelOrder
from libs.contracts.problems import Problem


def new_order_ids(n: int) -> list[str]:
    """``n`` of the OMS's own ids for orders (channels keep theirs in ``external_id``): ``ord_``
    and a random UUID's hex, the UUIDs from one system call (``new_event_ids``)."""
    return [f"ord_{u.hex}" for u in new_event_ids(n)]


HASH_VERSION = "v2:"


def content_hash(order: ChannelOrder) -> str:
    """Fingerprint of what the channel sent (after validation, so cosmetic differences such as a
    lower-case country do not count), to tell a resend from a conflicting reuse of its key.

    v2 hashes pydantic's own JSON of the model (fields in declared order): half the CPU of the
    v1 fingerprint, which dumped to Python, sorted keys and serialised again.

    Fields added to the contract since v2 are left out while they hold their default, so an
    order stored before they existed has the same fingerprint when it is sent again."""
    exclude = {"customer": {"tags"}} if order.customer.tags is None else None
    return HASH_VERSION + hashlib.sha256(order.model_dump_json(exclude=exclude).encode()).hexdigest()


def same_content(stored_hash: str, order: ChannelOrder, digest: str) -> bool:
    """Whether ``order`` (fingerprint ``digest``) is what was stored as ``stored_hash``; orders
    stored before v2 carry the v1 fingerprint and are compared with that."""
    if stored_hash.startswith(HASH_VERSION):
        return stored_hash == digest
    return stored_hash == legacy_content_hash(order)


def legacy_content_hash(order: ChannelOrder) -> str:
    """The v1 fingerprint (no prefix), kept to recognise resends of orders stored before v2."""
    exclude = {"customer": {"tags"}} if order.customer.tags is None else None
    return hashlib.sha256(orjson.dumps(order.model_dump(mode="json", exclude=exclude),
                                       option=orjson.OPT_SORT_KEYS)).hexdigest()


def order_status(lines: list[LineState], *, known: bool) -> str:
    """One word for the order as operations talk about it, derived from its line quantities."""
    if not known:
        return "pending"
    qty = sum(line.qty for line in lines)
    cancelled = sum(line.cancelled for line in lines)
    shipped = sum(line.shipped for line in lines)
    packed = sum(line.packed for line in lines)
    backordered = sum(line.backordered for line in lines)
    allocated = sum(line.allocated for line in lines)
    if qty == cancelled:
        return "cancelled"
    if shipped + cancelled == qty:
        return "shipped"
    if any(line.on_hold for line in lines):
        return "on_hold"
    if packed + shipped + cancelled == qty:
        return "packed"
    if backordered and (allocated or packed or shipped):
        return "partially_allocated"
    if backordered:
        return "backordered"
    return "allocated"


def check_cancel(line_ids: list[str] | None, existing: dict[str, int]) -> list[Problem]:
    """Lines named in a cancellation must exist on the order."""
    if line_ids is None:
        return []
    problems = [Problem(field=f"line_ids.{i}", problem=f"unknown line {lid!r}") for i, lid in enumerate(line_ids)
                if lid not in existing]
    if not line_ids:
        problems.append(Problem(field="line_ids", problem="must name at least one line, or be omitted to cancel the order"))
    return problems
