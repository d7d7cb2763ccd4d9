"""Customer records, derived from the orders order intake stores: the person's data lives once,
on their orders (``orders.customer``); a customer is the orders with the same customer id
(``domain/customers.py``). Nothing is added to the placement path.

Erasure replaces the person's fields on every order of the customer by a marker keeping only
the customer id (so totals, backorders and returns still add up), drops the address except the
country, and records that it happened in ``customer_erasures``. Events already published
(OrderPlaced carries the customer) live on in Kafka until the topic's retention removes them.

The search by e-mail or name uses indexes on the orders' customer fields (migration 0006). A
record (``GET /v1/customers/{id}``) still reads the orders whose computed customer id matches
(an expression the database evaluates per order): indexing it needs a stored key column on
``orders``, left for when a seller's order count asks for it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from services.order_intake.domain.customers import MergePolicy


def _hash(identity_sql: str) -> str:
    return f"'cus_' || left(encode(sha256(convert_to({identity_sql}, 'UTF8')), 'hex'), 24)"


_BY_EMAIL = _hash("'e' || chr(31) || lower(o.customer->>'email')")
_BY_CHANNEL_ID = _hash("'c' || chr(31) || o.channel || chr(31) || (o.customer->>'customer_id')")
_BY_CHANNEL_EMAIL = _hash("'c' || chr(31) || o.channel || chr(31) || 'email:' || lower(o.customer->>'email')")
# The SQL twin of domain.customers.customer_id_of (pinned by tests/integration/test_customers.py).
CUSTOMER_ID_SQL = (
    "(CASE WHEN o.customer ? 'erased_customer' THEN o.customer->>'erased_customer'"
    " WHEN o.customer->>'email' IS NOT NULL"
    " AND (CAST(:merge_all AS boolean) OR o.channel = ANY(CAST(:merge AS text[])))"
    f" THEN {_BY_EMAIL}"
    f" WHEN o.customer->>'customer_id' IS NOT NULL THEN {_BY_CHANNEL_ID}"
    f" WHEN o.customer->>'email' IS NOT NULL THEN {_BY_CHANNEL_EMAIL}"
    " END)"
)


def _params(policy: MergePolicy) -> dict[str, Any]:
    return {"merge_all": "*" in policy.channels, "merge": sorted(policy.channels - {"*"})}


def _money(value: Decimal) -> str:
    """``25.5000`` -> ``25.50``: at least two decimals, no trailing zeros beyond them."""
    cents = value.quantize(Decimal("0.01"))
    return str(cents) if cents == value else str(value.normalize())


class CustomerNotFound(LookupError):
    pass


async def customer_record(conn: AsyncConnection, customer_id: str, policy: MergePolicy) -> dict[str, Any]:
    """The customer's identities, contact, orders, open backorders, returns and lifetime value
    per currency; CustomerNotFound when no order has this customer."""
    orders = (await conn.execute(
        text(f"SELECT o.order_id, o.channel, o.external_id, s.status, o.placed_at, o.currency, o.customer"
             f" FROM orders o JOIN order_status s USING (order_id) WHERE {CUSTOMER_ID_SQL} = :id"
             " ORDER BY o.placed_at, o.order_id"),
        {"id": customer_id, **_params(policy)},
    )).all()
    erasure = (await conn.execute(text("SELECT erased_at, erased_by, reason, orders FROM customer_erasures"
                                       " WHERE customer_id = :id"), {"id": customer_id})).mappings().first()
    if not orders and erasure is None:
        raise CustomerNotFound(customer_id)
    lines = (await conn.execute(
        text("SELECT order_id, qty, unit_price, backordered, cancelled, returned FROM order_lines"
             " WHERE order_id = ANY(:o)"), {"o": [o.order_id for o in orders]})).all()
    currency = {o.order_id: o.currency for o in orders}
    totals: dict[str, Decimal] = {}
    lifetime: dict[str, Decimal] = {}
    backorder_lines = backorder_units = returned_units = 0
    returned_value: dict[str, Decimal] = {}
    for ln in lines:
        cur, price = currency[ln.order_id], Decimal(ln.unit_price)
        totals[ln.order_id] = totals.get(ln.order_id, Decimal(0)) + price * ln.qty
        lifetime[cur] = lifetime.get(cur, Decimal(0)) + price * (ln.qty - ln.cancelled - ln.returned)
        if ln.backordered:
            backorder_lines += 1
            backorder_units += ln.backordered
        if ln.returned:
            returned_units += ln.returned
            returned_value[cur] = returned_value.get(cur, Decimal(0)) + price * ln.returned
    latest: dict[str, Any] = next((o.customer for o in reversed(orders) if "erased_customer" not in o.customer), {})
    identities = sorted({(o.channel, o.customer.get("customer_id")) for o in orders if "erased_customer" not in o.customer},
                        key=lambda i: (i[0], i[1] or ""))
    return {
        "customer_id": customer_id,
        "name": latest.get("name"),
        "email": latest.get("email"),
        "tags": latest.get("tags") or [],
        "identities": [{"channel": ch, "customer_id": cid} for ch, cid in identities],
        "erased": dict(erasure) if erasure else None,
        "orders": [{"order_id": o.order_id, "channel": o.channel, "external_id": o.external_id, "status": o.status,
                    "placed_at": o.placed_at, "currency": o.currency, "total": _money(totals.get(o.order_id, Decimal(0)))}
                   for o in orders],
        "open_backorders": {"lines": backorder_lines, "units": backorder_units},
        "returns": {"units": returned_units, "value": {c: _money(v) for c, v in sorted(returned_value.items())}},
        "lifetime_value": {c: _money(v) for c, v in sorted(lifetime.items())},
    }


def search_sql(*, email: bool, name: bool) -> str:
    """The search's SQL, with only the conditions asked for: a condition written as "(:x IS NULL
    OR ...)" hides from the planner which index applies, so each is added only when given
    (e-mail: ``orders_customer_email_idx``; name: ``orders_customer_name_trgm_idx``)."""
    where = ["NOT o.customer ? 'erased_customer'", "(CAST(:channel AS text) IS NULL OR o.channel = :channel)"]
    if email:
        where.append("lower(o.customer->>'email') = lower(CAST(:email AS text))")
    if name:
        where.append("o.customer->>'name' ILIKE '%' || CAST(:name AS text) || '%'")
    return (f"SELECT {CUSTOMER_ID_SQL} AS customer_id, count(*) AS orders, max(o.placed_at) AS last_order_at,"
            " (array_agg(o.customer->>'name' ORDER BY o.placed_at DESC))[1] AS name,"
            " (array_agg(o.customer->>'email' ORDER BY o.placed_at DESC))[1] AS email,"
            " array_agg(DISTINCT o.channel) AS channels FROM orders o"
            f" WHERE {' AND '.join(where)}"
            " GROUP BY 1 ORDER BY max(o.placed_at) DESC LIMIT :n")


async def search_customers(conn: AsyncConnection, policy: MergePolicy, *, email: str | None, name: str | None,
                           channel: str | None, limit: int) -> list[dict[str, Any]]:
    """Customers whose e-mail is ``email`` (any case) and/or whose name contains ``name``."""
    rows = await conn.execute(text(search_sql(email=email is not None, name=name is not None)),
                              {"email": email, "name": name, "channel": channel, "n": limit, **_params(policy)})
    return [dict(r) for r in rows.mappings() if r["customer_id"] is not None]


async def erase_customer(conn: AsyncConnection, customer_id: str, policy: MergePolicy, by: str, reason: str) -> int:
    """Remove the person's fields from every order of the customer; keep totals; record it.
    Returns how many orders were changed; CustomerNotFound for an unknown id."""
    changed = (await conn.execute(
        text(f"UPDATE orders o SET customer = jsonb_build_object('erased_customer', CAST(:id AS text)),"
             " ship_to = jsonb_build_object('country', o.ship_to->'country'), updated_at = now()"
             f" WHERE {CUSTOMER_ID_SQL} = :id AND NOT o.customer ? 'erased_customer' RETURNING o.order_id"),
        {"id": customer_id, **_params(policy)},
    )).all()
    # A held order's OrderPlaced waits in held_messages with the customer in it: erase it there too.
    await conn.execute(
        text("UPDATE held_messages SET value = convert_to(CAST(jsonb_set(jsonb_set(CAST(convert_from(value, 'UTF8')"
             " AS jsonb), '{data,customer}', jsonb_build_object('erased_customer', CAST(:id AS text))),"
             " '{data,ship_to}', jsonb_build_object('country', CAST(convert_from(value, 'UTF8') AS jsonb)"
             " #> '{data,ship_to,country}')) AS text), 'UTF8')"
             " WHERE order_id = ANY(:o) AND CAST(convert_from(value, 'UTF8') AS jsonb) #> '{data,customer}' IS NOT NULL"),
        {"id": customer_id, "o": [r.order_id for r in changed]},
    )
    known = (await conn.execute(text("SELECT 1 FROM customer_erasures WHERE customer_id = :id"),
                                {"id": customer_id})).first()
    if not changed and known is None:
        raise CustomerNotFound(customer_id)
    await conn.execute(
        text("INSERT INTO customer_erasures (customer_id, erased_by, reason, orders) VALUES (:id, :by, :r, :n)"
             " ON CONFLICT (customer_id) DO UPDATE SET erased_at = now(), erased_by = EXCLUDED.erased_by,"
             " reason = EXCLUDED.reason, orders = customer_erasures.orders + EXCLUDED.orders"),
        {"id": customer_id, "by": by, "r": reason, "n": len(changed)},
    )
    return len(changed)
