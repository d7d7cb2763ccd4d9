"""`oms bench --smoke` for every scenario on the running system: correctness only (no timed
assertions; the numbers of a smoke run mean nothing), and that the report files are written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bench.run import run_scenario
from bench.scenarios import SCENARIOS
from services.cli.launcher import System

pytestmark = pytest.mark.e2e
# The chart needs the `bench` extra (matplotlib); without it the run notes that and writes the rest.
KINDS = ("json", "md", "png") if importlib.util.find_spec("matplotlib") else ("json", "md")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_bench_smoke_scenario_is_correct_and_writes_its_report(system: System, tmp_path: Path,
                                                               scenario: str) -> None:
    result = run_scenario(scenario, smoke=True, system=system, out=tmp_path, workdir=tmp_path, say=lambda _: None)

    assert result["problems"] == []
    assert result["correct"] is True
    for kind in KINDS:
        assert Path(result["files"][kind]).is_file()
    saved = json.loads(Path(result["files"]["json"]).read_text())
    assert saved["scenario"] == scenario and saved["correct"] is True
    assert saved["phases"], "at least one measured phase"
    history = (tmp_path / "HISTORY.md").read_text()
    assert f"| {scenario} (smoke) | yes |" in history


def test_bench_smoke_flash_sale_allocates_exactly_the_stock(system: System, tmp_path: Path) -> None:
    result = run_scenario("flash-sale", smoke=True, system=system, out=tmp_path, workdir=tmp_path,
                          say=lambda _: None)

    flash = result["extra"]["flash-sale"]
    assert (flash["allocated"], flash["backordered"], flash["reserved_in_report"]) == (100, 200, 100)
