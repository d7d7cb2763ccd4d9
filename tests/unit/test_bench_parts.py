"""The benchmark's pure parts: deterministic workload, correlation ids, statistics, targets, and the
relay's message shapes (the e2e smoke test runs the whole benchmark)."""

from __future__ import annotations

import orjson

from bench.measure import FirstResult, latency_histogram, percentile, phase_stats
from bench.relay import allocation_hop, intake_hop
from bench.report import judge, markdown
from bench.run import lock_waits
from bench.workload import Workload, correlation_id, parse_correlation_id


def _mix() -> Workload:
    return Workload("mix", "r1", [f"S{i}" for i in range(1000)], zipf_s=0.8)


def test_the_same_seq_gives_the_same_lines_in_any_process() -> None:
    assert [_mix().lines(s) for s in range(50)] == [Workload.from_json(_mix().to_json()).lines(s) for s in range(50)]


def test_mixed_orders_have_one_to_five_distinct_skus_averaging_about_three() -> None:
    orders = [_mix().lines(s) for s in range(3000)]
    assert all(1 <= len(o) <= 5 and len({sku for sku, _ in o}) == len(o) for o in orders)
    assert 2.8 < sum(len(o) for o in orders) / len(orders) < 3.2


def test_popularity_is_skewed_towards_the_first_skus() -> None:
    counts: dict[str, int] = {}
    for s in range(3000):
        for sku, _ in _mix().lines(s):
            counts[sku] = counts.get(sku, 0) + 1
    assert counts.get("S0", 0) > 10 * counts.get("S500", 0)
    assert abs(sum(_mix().popularity()) - 1.0) < 1e-9


def test_channel_orders_are_valid_for_order_intake() -> None:
    from libs.contracts.orders import validate_channel_order

    order, problems = validate_channel_order(_mix().order(7, "2026-11-22T10:00:00+00:00"))
    assert problems == [] and order is not None
    assert order.key == "bench:r1-7"


def test_correlation_id_round_trips_and_other_ids_are_ignored() -> None:
    assert parse_correlation_id(correlation_id(42, 123_456)) == (42, 123_456)
    assert parse_correlation_id("b3c1-uuid") is None
    assert parse_correlation_id("bench:x:y") is None


def test_phase_stats_count_orders_lines_and_percentiles() -> None:
    results = [FirstResult(i, 0, (i + 1) * 1_000_000, f"o{i}", [("S", 1, 1, 0)] * 2, []) for i in range(100)]
    stats = phase_stats(results)
    assert (stats["orders"], stats["lines"]) == (100, 200)
    assert stats["latency_ms"]["p50"] == 50.0 and stats["latency_ms"]["p99"] == 99.0
    assert percentile([], 50) != percentile([], 50)  # NaN for nothing measured
    hist = latency_histogram(sorted(float(x) for x in range(1, 1001)))
    assert sum(hist["counts"]) + hist["above"] == 1000


def test_targets_pass_or_fail_by_their_direction() -> None:
    rows = {r["measure"]: r["pass"] for r in judge({"sustained_orders_per_s": 2500, "p99_ms_at_1000": 300})}
    assert rows == {"sustained_orders_per_s": True, "p99_ms_at_1000": False}


def test_relay_hops_keep_the_correlation_id_and_the_snapshot_shape() -> None:
    doc = _mix().order(3, "2026-11-22T10:00:00+00:00")
    key, placed, _ = intake_hop(orjson.dumps(doc), [("correlation_id", b"bench:3:99")])
    _, result, event_type = allocation_hop(placed, [])
    env = orjson.loads(result)
    assert event_type == "OrderAllocated" and env["correlation_id"] == "bench:3:99"
    assert env["data"]["order_id"] == key.decode()
    assert all(ln["allocated"] == ln["qty"] for ln in env["data"]["lines"])
    # The relay's messages are real contract events, so their sizes match the services' own.
    from libs.contracts.envelope import decode_event

    assert type(decode_event(placed)[1]).__name__ == "OrderPlaced"
    assert type(decode_event(result)[1]).__name__ == "OrderAllocated"


def test_the_benchmark_lives_beside_the_product_and_the_wheel_does_not_ship_it() -> None:
    import tomllib
    from pathlib import Path

    from setuptools import find_packages

    root = Path(__file__).parents[2]
    find = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    shipped = find_packages(where=str(root), include=find["include"])
    assert "services.cli" in shipped and "libs.service_host" in shipped
    assert not [p for p in shipped if p == "bench" or p.startswith("bench.")]
    assert not list((root / "services").rglob("bench*.py")), "benchmark modules inside the product package"


def test_each_scenario_is_one_class_named_as_the_command_line_names_it() -> None:
    from bench.scenarios import SCENARIOS, Scenario

    assert list(SCENARIOS) == ["steady", "flash-sale", "backorder-refill", "stock-shrink"]
    for name, kind in SCENARIOS.items():
        assert issubclass(kind, Scenario) and kind.name == name


def test_lock_waits_are_summed_per_statement_most_waited_first() -> None:
    log = """\
2026-12-07 21:11:11.308 UTC [6658] LOG:  process 6658 still waiting for ShareLock on transaction 2233 after 9.441 ms
2026-12-07 21:11:11.308 UTC [6658] DETAIL:  Process holding the lock: 6651. Wait queue: 6658.
2026-12-07 21:11:11.308 UTC [6658] STATEMENT:  SELECT sku, filling FROM skus
	WHERE sku = ANY($1) ORDER BY sku FOR UPDATE
2026-12-07 21:11:11.309 UTC [6651] LOG:  process 6651 still waiting for AccessExclusiveLock on object 0 of class 1262 of database 0 after 5.190 ms
2026-12-07 21:11:11.309 UTC [6651] STATEMENT:  COMMIT;
2026-12-07 21:11:11.315 UTC [6651] LOG:  process 6651 acquired AccessExclusiveLock on object 0 of class 1262 of database 0 after 20.095 ms
2026-12-07 21:11:11.315 UTC [6651] STATEMENT:  COMMIT;
2026-12-07 21:11:11.427 UTC [6658] LOG:  process 6658 acquired ShareLock on transaction 2233 after 128.342 ms
2026-12-07 21:11:11.427 UTC [6658] STATEMENT:  SELECT sku, filling FROM skus WHERE sku = ANY($1) ORDER BY sku FOR UPDATE
2026-12-07 21:11:12.498 UTC [6658] LOG:  process 6658 still waiting for ShareLock on transaction 2318 after 5.082 ms
2026-12-07 21:11:12.498 UTC [6658] STATEMENT:  SELECT sku, filling FROM skus WHERE sku = ANY($1) ORDER BY sku FOR UPDATE
2026-12-07 21:11:12.510 UTC [6658] ERROR:  deadlock detected
"""
    assert lock_waits(log) == [
        "lock waits:    2 x,      128 ms in all, longest 128 ms  SELECT sku, filling FROM skus WHERE sku = ANY($1) ORDER BY sku FOR UPDATE",
        "lock waits:    1 x,       20 ms in all, longest 20 ms  COMMIT;",
    ]


def test_the_report_shows_each_phases_cpu_cores_and_their_sum() -> None:
    result = {
        "scenario": "steady", "started_at": "now", "correct": True, "smoke": False,
        "phases": {"rate-1000": {"services": {}, "cpu_cores": {"allocation": 0.41, "broker": 0.3, "postgresql": 0.47}},
                   "full-speed": {"services": {}, "cpu_cores": {"allocation": 0.6, "broker": 0.16, "postgresql": 0.5}}},
        "machine": {"cores": 2, "memory_gb": 24, "python": "3.11", "load_average": [0, 0, 0]},
    }
    text = markdown(result, None)
    assert "| phase | allocation | broker | postgresql | together |" in text
    assert "| rate-1000 | 0.41 | 0.30 | 0.47 | 1.18 |" in text
    assert "| full-speed | 0.60 | 0.16 | 0.50 | 1.26 |" in text
