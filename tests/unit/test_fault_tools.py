"""The fault suite's tools: the relay's crash hook (inert unless set) and the table ``oms faults``
prints (docs/reliability.md)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from services.cli.faults import HEADER, table

PROBE = "from libs.messaging import fault_hooks; fault_hooks.relay_published(3); fault_hooks.relay_published(2); print('alive')"


def _probe(value: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "OMS_FAULT_RELAY_CRASH_AFTER_PUBLISH"}
    if value is not None:
        env["OMS_FAULT_RELAY_CRASH_AFTER_PUBLISH"] = value
    return subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=60)


def test_the_crash_hook_does_nothing_unless_set() -> None:
    for value in (None, "", "0", "6"):  # 6: never reached by 3 + 2 published rows
        done = _probe(value)
        assert (done.returncode, done.stdout.strip()) == (0, "alive"), (value, done.stderr)


def test_the_crash_hook_kills_the_process_once_the_rows_published_reach_n() -> None:
    done = _probe("5")
    assert done.returncode == -signal.SIGKILL and "alive" not in done.stdout


def test_the_table_of_oms_faults_has_one_row_per_result_line() -> None:
    lines = ["noise", "FAULT-RESULT | SIGKILL inventory | 40 | 0 | 0 | 0 | 12.0 | 14.5",
             "\nFAULT-RESULT | poison records on every consumed topic | 20 | 0 | 0 | 0 | - | 5.5"]
    assert table(lines) == HEADER + ("\n| SIGKILL inventory | 40 | 0 | 0 | 0 | 12.0 | 14.5 |"
                                     "\n| poison records on every consumed topic | 20 | 0 | 0 | 0 | - | 5.5 |")
