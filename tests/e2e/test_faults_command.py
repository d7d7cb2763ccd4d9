"""``oms faults`` (services/cli/faults.py), bounded: a system supervised as ``oms up`` supervises
it (its own embedded broker and PostgreSQL, services on free ports), and the command runs three
scenarios of the fault suite against it with 40 orders each: a SIGKILL, the relay killed between
publishing and deleting (a restart with a fault hook, held by the supervisor when it dies), and
the PostgreSQL outage (the supervisor stops and starts its PostgreSQL). The command must pass and
print the results table."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra import free_port

from libs.service_host.auth import DEV_STAFF_TOKENS
from services.cli.control import Supervisor
from services.cli.faults import HEADER
from services.cli.launcher import SERVICES, System

pytestmark = [pytest.mark.e2e, pytest.mark.faults]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def supervised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[System]:
    """What `oms up` runs, on free ports and its own embedded infrastructure."""
    monkeypatch.delenv("OMS_KAFKA_BOOTSTRAP", raising=False)  # never the session's broker and database
    monkeypatch.delenv("OMS_DATABASE_URL", raising=False)
    system = System(workdir=tmp_path / "oms", ports={name: free_port() for name in SERVICES}, log_to=None,
                    extra_env={"OMS_ENV": "development", "OMS_STAFF_TOKENS": DEV_STAFF_TOKENS})
    stop = threading.Event()
    try:
        system.start_infra(kafka_port=free_port(), pg_port=free_port())
        system.start_all(timeout=180)
        supervisor = Supervisor(system)
        thread = threading.Thread(target=supervisor.run, args=(stop.is_set,), daemon=True)
        thread.start()
        yield system
        stop.set()
        thread.join(30)
    finally:
        stop.set()
        system.stop()


def test_oms_faults_runs_the_suite_against_the_running_system_and_prints_the_table(supervised: System) -> None:
    scenarios = "(SIGKILL and inventory) or (relay_killed and inventory) or postgres_outage"
    done = subprocess.run(
        [sys.executable, "-m", "services.cli.main", "faults", "--workdir", str(supervised.workdir),
         "--orders", "40", "-k", scenarios],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    out = done.stdout
    assert done.returncode == 0, out[-4000:] + done.stderr[-2000:] + (supervised.workdir / "faults.log").read_text()[-6000:]
    table = out[out.index(HEADER):]
    for scenario in ("SIGKILL inventory", "relay killed after publish inventory", "PostgreSQL down 10 s"):
        assert f"| {scenario} | 40 | 0 | 0 | 0 |" in table, table
    assert "3 passed" in out, out[-2000:]
