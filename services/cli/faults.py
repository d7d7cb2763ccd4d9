"""``oms faults``: the fault suite (tests/e2e/test_faults.py) against the system ``oms up`` runs,
then the results table of docs/reliability.md.

The suite kills, stops and restarts that system's services and (embedded only) its PostgreSQL
through the supervisor of ``oms up`` (services/cli/control.py), streams orders of channels and
SKUs of its own into it, and checks the invariants through the public views. The suite is the
test module itself, so it runs from a source checkout with the test extras (like ``oms bench``).
Run it against a system you can disturb: the faults are real."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from services.cli.control import read_state

HEADER = ("| Scenario | Orders | Lost | Doubled | Oversold | Seconds to ready | Seconds to settle |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")


def table(lines: list[str]) -> str:
    """The ``FAULT-RESULT | ...`` lines of a run as the markdown table of docs/reliability.md."""
    rows = [line.split("FAULT-RESULT", 1)[1].strip() for line in lines if "FAULT-RESULT |" in line]
    return "\n".join([HEADER, *(r + " |" for r in rows)])


def cmd_faults(args: argparse.Namespace) -> int:
    if args.orders < 40 or args.orders % 8:
        print("--orders: a multiple of 8, at least 40 (the scenarios receive stock for half of them)", file=sys.stderr)
        return 2
    workdir = Path(args.workdir).resolve()
    try:
        state = read_state(workdir)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    labels = [s["label"] for s in state["services"]]
    if any("#" in label for label in labels):
        print("the fault suite needs one instance per service (started without --scale)", file=sys.stderr)
        return 2
    module = Path(__file__).resolve().parents[2] / "tests" / "e2e" / "test_faults.py"
    if not module.is_file():
        print("the fault suite runs from a source checkout of the OMS (tests/ is not installed)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    # the tests' fixtures attach to it (tests/infra.py, tests/e2e/conftest.py)
    env.update(OMS_FAULTS_ATTACH=str(workdir), OMS_FAULTS_ORDERS=str(args.orders))
    command = [sys.executable, "-m", "pytest", str(module), "-m", "faults", "-s", "-q", "-p", "no:cacheprovider",
               "--rootdir", str(module.parents[2])]
    if args.k:
        command += ["-k", args.k]
    log = workdir / "faults.log"
    print(f"running the fault suite against the system in {workdir} ({args.orders} orders per scenario); "
          f"pytest output in {log}", flush=True)
    results: list[str] = []
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=module.parents[2]) as proc, open(log, "w") as out:
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if "FAULT-RESULT |" in line:
                results.append(line.strip())
                print(line.strip(), flush=True)
            elif line.startswith(("FAILED", "ERROR")) or " passed" in line or " failed" in line:
                print(line.rstrip(), flush=True)
    print("\n" + table(results), flush=True)
    return proc.returncode
