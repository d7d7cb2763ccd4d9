"""Who a customer is: identified per channel (the channel's customer id, else its e-mail), or
across channels by e-mail where the seller allows merging (``OMS_CUSTOMER_MERGE_BY_EMAIL``).

The public id is ``cus_`` + 24 hex digits of a SHA-256 of the identity, so no personal data is
in a URL or a log line. The database computes the same id in SQL
(``service_layer/customers.py``, ``CUSTOMER_ID_SQL``); a test pins the two together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

SEP = "\x1f"  # unit separator: cannot occur in a channel name or an id a channel sends


@dataclass(frozen=True)
class MergePolicy:
    """Channels whose customers are merged by e-mail (``*``: every channel)."""

    channels: frozenset[str] = frozenset()

    @classmethod
    def parse(cls, spec: str) -> MergePolicy:
        return cls(frozenset(c.strip() for c in spec.split(",") if c.strip()))

    def merges(self, channel: str) -> bool:
        return "*" in self.channels or channel in self.channels


def _key(identity: str) -> str:
    return "cus_" + hashlib.sha256(identity.encode()).hexdigest()[:24]


def customer_id_of(channel: str, customer: dict[str, Any], policy: MergePolicy) -> str | None:
    """The customer id of an order's ``customer`` (None: the order names no customer)."""
    if customer.get("erased_customer"):
        return str(customer["erased_customer"])
    email = customer.get("email")
    if email and policy.merges(channel):
        return _key("e" + SEP + email.lower())
    if customer.get("customer_id"):
        return _key("c" + SEP + channel + SEP + customer["customer_id"])
    if email:
        return _key("c" + SEP + channel + SEP + "email:" + email.lower())
    return None
