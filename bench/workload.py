"""The orders a benchmark sends, generated deterministically from (workload, seq).

The load generator (its own process) and the benchmark's checker both call ``Workload.lines``
for the same ``seq`` and get the same lines, so nothing has to be shipped between them to know
what each order asked for.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import asdict, dataclass, field
from typing import Any

CHANNEL = "bench"
COUNTRY = "DE"


@dataclass(frozen=True)
class Workload:
    """``kind`` "mix": 1-5 lines of Zipf-popular SKUs; "single": one line of one SKU."""

    kind: str
    run_id: str
    skus: list[str] = field(default_factory=list)
    zipf_s: float = 0.9
    max_lines: int = 5
    max_qty: int = 2
    qty: int = 1
    seed: int = 7

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Workload:
        return cls(**data)

    def lines(self, seq: int) -> list[tuple[str, int]]:
        """The (sku, qty) lines of order ``seq``: distinct SKUs, same answer in every process."""
        if self.kind == "single":
            return [(self.skus[0], self.qty)]
        rng = random.Random(self.seed * 1_000_003 + seq)
        table = _cumulative(self.zipf_s, len(self.skus))
        count = min(rng.randint(1, self.max_lines), len(self.skus))
        chosen: dict[str, int] = {}
        while len(chosen) < count:
            idx = bisect.bisect_left(table, rng.random() * table[-1])
            sku = self.skus[min(idx, len(self.skus) - 1)]
            if sku not in chosen:
                chosen[sku] = rng.randint(1, self.max_qty)
        return list(chosen.items())

    def popularity(self) -> list[float]:
        """Share of lines each SKU gets (same order as ``skus``)."""
        if self.kind == "single":
            return [1.0]
        table = _cumulative(self.zipf_s, len(self.skus))
        prev, out = 0.0, []
        for c in table:
            out.append((c - prev) / table[-1])
            prev = c
        return out

    def external_id(self, seq: int) -> str:
        return f"{self.run_id}-{seq}"

    def order(self, seq: int, placed_at: str) -> dict[str, Any]:
        """The ChannelOrder document (libs/contracts/orders.py) for ``seq``."""
        return {
            "channel": CHANNEL,
            "external_id": self.external_id(seq),
            "placed_at": placed_at,
            "currency": "EUR",
            "customer": {"customer_id": f"c{seq % 9973}", "name": "Bench customer"},
            "ship_to": {"country": COUNTRY, "postal_code": "10115", "lat": 52.53, "lon": 13.38},
            "lines": [
                {"line_id": str(i + 1), "sku": sku, "qty": qty, "unit_price": "9.90"}
                for i, (sku, qty) in enumerate(self.lines(seq))
            ],
        }


_TABLES: dict[tuple[float, int], list[float]] = {}


def _cumulative(s: float, n: int) -> list[float]:
    """Cumulative Zipf weights 1/k^s, k = 1..n (computed once per process)."""
    key = (s, n)
    table = _TABLES.get(key)
    if table is None:
        total, table = 0.0, []
        for k in range(1, n + 1):
            total += 1.0 / k**s
            table.append(total)
        _TABLES[key] = table
    return table


def correlation_id(seq: int, publish_ns: int) -> str:
    return f"bench:{seq}:{publish_ns}"


def parse_correlation_id(value: str) -> tuple[int, int] | None:
    """(seq, publish time ns) of a benchmark correlation id, None for any other."""
    if not value.startswith("bench:"):
        return None
    parts = value.split(":")
    if len(parts) < 3:
        return None
    try:
        return int(parts[1]), int(parts[2])
    except ValueError:
        return None
