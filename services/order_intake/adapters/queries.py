"""SQL that several of order intake's use cases ask, written once (the rest of each use case's
SQL stays beside it, in its service_layer module)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


class Hold(NamedTuple):
    """A row of ``order_holds`` as a rule or staff writes it."""

    order_id: str
    reason: str
    held_by: str


async def delete_holds(conn: AsyncConnection, order_id: str, *, announced_only: bool = False) -> int:
    """End the order's hold (``announced_only``: only a hold of an order allocation knows).
    Returns how many holds ended (0 or 1)."""
    sql = "DELETE FROM order_holds WHERE order_id = :o AND announced" if announced_only else (
        "DELETE FROM order_holds WHERE order_id = :o")
    done = await conn.execute(text(sql), {"o": order_id})
    return int(done.rowcount)  # type: ignore[attr-defined]


async def channels_seen(conn: AsyncConnection) -> set[str]:
    """Every channel that placed an order."""
    return set((await conn.execute(text("SELECT DISTINCT channel FROM orders"))).scalars())
