"""Benchmark output: JSON with every number, a Markdown summary, a PNG chart, and one line per run
appended to ``HISTORY.md`` in the output folder."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import orjson
import psutil

# SPEC section 7. (measure key, label, comparison, target)
TARGETS: dict[str, tuple[str, str, float, str]] = {
    "sustained_orders_per_s": ("sustained orders/s (full speed)", ">=", 2000, "orders/s"),
    "p99_ms_at_1000": ("p99 latency at 1,000 orders/s offered", "<=", 250, "ms"),
    # SPEC 7 names 1,000/s; issue 7 asks for 500/s beside it, with the same bound as a reference
    "p99_ms_at_500": ("p99 latency at 500 orders/s offered (reference)", "<=", 250, "ms"),
    "flash_sale_orders_per_s": ("flash sale orders/s", ">=", 1500, "orders/s"),
    "refill_lines_per_s": ("backorder refill lines/s", ">=", 5000, "lines/s"),
    "max_service_rss_mb": ("peak resident memory per service", "<=", 200, "MB"),
}


def machine_facts() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def judge(measures: dict[str, float]) -> list[dict[str, Any]]:
    """Each SPEC target that this run measured, with its value and pass/fail."""
    rows = []
    for key, (label, op, target, unit) in TARGETS.items():
        if key not in measures or measures[key] is None:
            continue
        value = measures[key]
        ok = value >= target if op == ">=" else value <= target
        rows.append({"measure": key, "label": label, "value": value, "target": f"{op} {target:g} {unit}",
                     "pass": ok})
    return rows


def write_all(result: dict[str, Any], out: Path, *, chart: bool = True) -> dict[str, str]:
    """Write <stamp>-<scenario>.{json,md,png} and append to HISTORY.md; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    base = out / f"{result['started_at_compact']}-{result['scenario']}"
    files = {"json": str(base.with_suffix(".json")), "md": str(base.with_suffix(".md"))}
    if chart:
        png = base.with_suffix(".png")
        try:
            draw_chart(result, png)
            files["png"] = str(png)
        except ImportError:
            result.setdefault("notes", []).append("no chart: pip install -e '.[bench]' (matplotlib)")
    Path(files["json"]).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))
    Path(files["md"]).write_text(markdown(result, Path(files.get("png", "")).name or None))
    append_history(out / "HISTORY.md", result)
    return files


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and abs(v) < 10:
        return f"{v:.2f}"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def markdown(result: dict[str, Any], png_name: str | None) -> str:
    lines = [f"# Benchmark `{result['scenario']}` {result['started_at']}", ""]
    verdict = "PASS (correct)" if result["correct"] else "FAILURE (incorrect results)"
    lines += [f"**Correctness: {verdict}**" + (" — smoke run, timings not meaningful" if result["smoke"] else ""),
              ""]
    for note in result.get("notes", []):
        lines.append(f"Note: {note}")
    for problem in result.get("problems", [])[:30]:
        lines.append(f"- {problem}")
    if result.get("problems"):
        lines.append("")
    if result.get("targets"):
        lines += ["## Targets (SPEC 7)", "", "| measure | value | target | |", "| --- | ---: | --- | --- |"]
        for row in result["targets"]:
            lines.append(f"| {row['label']} | {_fmt(row['value'])} | {row['target']} | "
                         f"{'pass' if row['pass'] else 'FAIL'} |")
        lines.append("")
    lines += ["## Phases", "",
              "| phase | orders | lines | offered/s | orders/s | lines/s | p50 ms | p95 ms | p99 ms "
              "| relay orders/s | relay p99 ms | ratio orders/s | ratio p99 |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, ph in result["phases"].items():
        st, relay = ph.get("services", {}), ph.get("relay", {}) or {}
        lat, rlat = st.get("latency_ms", {}), relay.get("latency_ms", {})
        ratio = ph.get("ratio", {})
        lines.append(
            f"| {name} | {_fmt(st.get('orders', 0))} | {_fmt(st.get('lines', 0))} | {_fmt(ph.get('offered', 'max'))} "
            f"| {_fmt(st.get('orders_per_s', '-'))} | {_fmt(st.get('lines_per_s', '-'))} | {_fmt(lat.get('p50', '-'))} "
            f"| {_fmt(lat.get('p95', '-'))} | {_fmt(lat.get('p99', '-'))} | {_fmt(relay.get('orders_per_s', '-'))} "
            f"| {_fmt(rlat.get('p99', '-'))} | {_fmt(ratio.get('orders_per_s', '-'))} | {_fmt(ratio.get('p99', '-'))} |"
        )
    lines.append("")
    for name, extra in result.get("extra", {}).items():
        lines.append(f"- **{name}**: " + ", ".join(f"{k} {_fmt(v)}" for k, v in extra.items()))
    if result.get("extra"):
        lines.append("")
    if result.get("resources"):
        lines += ["## Processes (load phases) against the CPU budget", "",
                  "| process | CPU s | CPU cores | CPU ms per order | budget ms | over budget | peak RSS MB |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for row in budget_rows(result):
            lines.append(
                f"| {row['process']} | {_fmt(row['cpu_s'])} | {_fmt(row['cpu_cores'])} | {_fmt(row['ms_per_order'])} "
                f"| {_fmt(row['budget_ms'])} | {_fmt(row['over'])} | {_fmt(row['peak_rss_mb'])} |"
            )
        lines += ["", "CPU ms per order: CPU seconds over the load phases ÷ orders placed in them (refill and "
                  "shrink work included where the scenario has it). The budget (docs/benchmark.md) is what "
                  "2,000 orders/s on 2 cores allows: 1.0 ms per order for everything. PostgreSQL is the sum "
                  "over its processes (shared buffers counted in each).", ""]
    cores = {name: ph["cpu_cores"] for name, ph in result["phases"].items() if ph.get("cpu_cores")}
    if cores:
        names = list(next(iter(cores.values())))
        lines += ["## CPU cores per phase", "", "| phase | " + " | ".join(names) + " | together |",
                  "| --- |" + " ---: |" * (len(names) + 1)]
        for phase, per in cores.items():
            lines.append(f"| {phase} | " + " | ".join(_fmt(per.get(n, 0.0)) for n in names)
                         + f" | {_fmt(round(sum(per.values()), 2))} |")
        lines += ["", "From the first publish of a phase to its last result. Near the machine's cores: the phase "
                  "was CPU-bound; well below: something waited (a lock, a round trip, one busy process). The "
                  "load generator and the benchmark's own process are not counted.", ""]
    m = result["machine"]
    lines += [f"Machine: {m['cores']} cores, {m['memory_gb']} GB, Python {m['python']}; load average "
              f"{m.get('load_average_at_start')} at the start, {m['load_average']} at the end (1, 5, 15 min). "
              f"Broker: {result.get('broker', '?')}.", ""]
    start_load = (m.get("load_average_at_start") or [0])[0]
    if start_load > 1.0:
        lines += [f"Note: the machine was already busy at the start (load {start_load}): other work competed "
                  "for the cores, so the numbers are lower than on an idle machine.", ""]
    if png_name:
        lines += [f"![latency and throughput]({png_name})", ""]
    return "\n".join(lines)


# CPU budget per order (ms) at the target of SPEC 7: 2,000 orders/s on 2 cores = 1.0 ms of CPU per
# order for everything on the machine. docs/benchmark.md explains each share; "rest" is what the
# meter does not see per process: the load generator, the measuring consumer and the kernel.
BUDGET_MS_PER_ORDER: dict[str, float] = {
    "order_intake": 0.15,
    "allocation": 0.25,
    "fulfillment": 0.10,
    "inventory": 0.02,
    "postgresql": 0.18,
    "broker": 0.20,
    "rest": 0.10,
}
assert abs(sum(BUDGET_MS_PER_ORDER.values()) - 1.0) < 1e-9


def budget_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Measured CPU ms per order of every process beside its budget (instances of one service
    are added up), and the total; ``over`` is measured minus budget (negative: under)."""
    orders = sum((ph.get("services") or {}).get("orders", 0) for name, ph in result["phases"].items()
                 if name not in ("refill", "shrink"))
    grouped: dict[str, dict[str, float]] = {}
    for name, r in (result.get("resources") or {}).items():
        g = grouped.setdefault(name.split("#")[0], {"cpu_s": 0.0, "cpu_cores": 0.0, "peak_rss_mb": 0.0})
        g["cpu_s"] += r["cpu_s"]
        g["cpu_cores"] += r.get("cpu_cores") or 0.0
        g["peak_rss_mb"] = max(g["peak_rss_mb"], r.get("peak_rss_mb") or 0.0)
    rows: list[dict[str, Any]] = []
    for name, g in grouped.items():
        per = round(1000 * g["cpu_s"] / orders, 3) if orders else None
        budget = BUDGET_MS_PER_ORDER.get(name)
        rows.append({"process": name, "cpu_s": round(g["cpu_s"], 2), "cpu_cores": round(g["cpu_cores"], 2),
                     "ms_per_order": per, "budget_ms": budget,
                     "over": round(per - budget, 3) if per is not None and budget is not None else None,
                     "peak_rss_mb": round(g["peak_rss_mb"], 1)})
    if orders and rows:
        total = sum(r["cpu_s"] for r in rows)
        per_all = round(1000 * total / orders, 3)
        budget_all = sum(v for k, v in BUDGET_MS_PER_ORDER.items() if k != "rest")
        rows.append({"process": "**all measured**", "cpu_s": round(total, 2), "cpu_cores": None,
                     "ms_per_order": per_all, "budget_ms": round(budget_all, 2),
                     "over": round(per_all - budget_all, 3), "peak_rss_mb": None})
    return rows


def append_history(path: Path, result: dict[str, Any]) -> None:
    if not path.exists():
        path.write_text(
            "# Benchmark history\n\nOne line per run of `oms bench` (newest last). Numbers: orders/s or "
            "lines/s of the main phase, p99 ms, ratio to the bare relay; see the run's .md for details.\n\n"
            "| date (UTC) | scenario | correct | headline | targets |\n| --- | --- | --- | --- | --- |\n"
        )
    targets = ", ".join(f"{t['measure']} {_fmt(t['value'])} {'pass' if t['pass'] else 'FAIL'}"
                        for t in result.get("targets", []))
    note = f"**{result['note']}**: " if result.get("note") else ""
    row = (f"| {result['started_at']} | {result['scenario']}{' (smoke)' if result['smoke'] else ''} | "
           f"{'yes' if result['correct'] else 'NO'} | {note}{result.get('headline', '')} | {targets or '-'} |\n")
    with path.open("a") as fh:
        fh.write(row)


def draw_chart(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_lat, ax_tp) = plt.subplots(1, 2, figsize=(13, 4.8))
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for i, (name, ph) in enumerate(result["phases"].items()):
        c = colors[i % len(colors)]
        for source, style, alpha in (("services", "-", 0.55), ("relay", "--", 0.35)):
            st = ph.get(source) or {}
            hist = st.get("latency_histogram")
            if hist and hist["counts"]:
                w = hist["bucket_ms"]
                edges = [i * w for i in range(len(hist["counts"]) + 1)]
                ax_lat.stairs(hist["counts"], edges, fill=source == "services", alpha=alpha, color=c,
                              linestyle=style, label=f"{name} {source} (p99 {st['latency_ms']['p99']:.0f} ms)")
            series = st.get("per_second") or []
            if series:
                ax_tp.plot([s[0] for s in series], [s[1] for s in series], style, color=c,
                           marker="o" if len(series) < 8 else None,
                           label=f"{name} {source} ({st['orders_per_s']:.0f}/s)")
    ax_lat.set_title("latency: publish to first allocation result")
    ax_lat.set_xlabel("ms (up to p99.5)")
    ax_lat.set_ylabel("orders")
    ax_lat.legend(fontsize=7)
    ax_tp.set_title("results per second")
    ax_tp.set_xlabel("seconds since the phase's first publish")
    ax_tp.set_ylabel("orders/s")
    ax_tp.legend(fontsize=7)
    verdict = "correct" if result["correct"] else "INCORRECT"
    fig.suptitle(f"oms bench {result['scenario']} — {result['started_at']} — {verdict}")
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
