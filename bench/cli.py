"""The benchmark's command line: ``python -m bench SCENARIO`` (``oms bench SCENARIO`` delegates here).

    python -m bench steady|flash-sale|backorder-refill|stock-shrink|all [--orders N] [--rate R]
                    [--smoke] [--out bench-results] [--note "what this run measures"]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from bench.report import budget_rows
from bench.run import run_scenario
from bench.scenarios import SCENARIOS
from services.cli.launcher import SERVICES


def parser(prog: str) -> argparse.ArgumentParser:
    bench = argparse.ArgumentParser(prog=prog, description="Run a benchmark scenario (docs/benchmark.md).")
    bench.add_argument("scenario", nargs="?", default="steady", help=", ".join([*SCENARIOS, "all"]))
    bench.add_argument("--orders", type=int, default=None)
    bench.add_argument("--rate", type=float, default=None, help="offered orders/s (default: full speed)")
    bench.add_argument("--smoke", action="store_true", help="tiny run, correctness only")
    bench.add_argument("--out", default="bench-results")
    bench.add_argument("--note", default="", help="what this run measures (e.g. 'after: <change>'), kept in HISTORY.md")
    return bench


def main(argv: list[str] | None = None, prog: str = "python -m bench") -> int:
    """Run the scenario(s) named in ``argv``; print each run's report; 1 if one was incorrect."""
    args = parser(prog).parse_args(argv)
    scenarios = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    if any(s not in SCENARIOS for s in scenarios):
        print(f"unknown scenario {args.scenario!r}; one of: {', '.join(SCENARIOS)}, all", file=sys.stderr)
        return 2
    # Ports: the services' own variables (OMS_<SERVICE>_PORT) and OMS_BENCH_KAFKA_PORT /
    # OMS_BENCH_PG_PORT for the embedded infrastructure, so a benchmark can run beside `oms up`.
    env = os.environ
    ports = {name: int(env.get(f"OMS_{name.upper()}_PORT", port)) for name, port in SERVICES.items()}
    infra_ports = {"kafka_port": int(env.get("OMS_BENCH_KAFKA_PORT", 19092)),
                   "pg_port": int(env.get("OMS_BENCH_PG_PORT", 15432))}
    failed = False
    for scenario in scenarios:
        result = run_scenario(scenario, smoke=args.smoke, orders=args.orders, rate=args.rate, out=Path(args.out),
                              ports=ports, note=getattr(args, "note", ""), **infra_ports)
        print(f"\n{scenario}: {'correct' if result['correct'] else 'FAILURE'} — {result['headline']}")
        for problem in result["problems"]:
            print(f"  problem: {problem}")
        for row in result["targets"]:
            print(f"  {row['label']}: {row['value']:,} (target {row['target']}) {'pass' if row['pass'] else 'FAIL'}")
        rows = budget_rows(result)
        if rows:
            print("  CPU ms per order, measured against budget:")
            for b in rows:
                measured = "-" if b["ms_per_order"] is None else f"{b['ms_per_order']:.3f}"
                budget = "-" if b["budget_ms"] is None else f"{b['budget_ms']:.2f}"
                over = "" if b["over"] is None else (f"  over by {b['over']:.3f}" if b["over"] > 0 else "  within")
                print(f"    {b['process']:<18} {measured:>7} / {budget:>5}{over}")
        print("  written: " + ", ".join(result["files"].values()))
        failed |= not result["correct"]
    return 1 if failed else 0
