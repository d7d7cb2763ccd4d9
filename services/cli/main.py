"""``oms``: run the system, one service, the demo, or the benchmark.

    oms up                 embedded broker + PostgreSQL (unless OMS_KAFKA_BOOTSTRAP /
                           OMS_DATABASE_URL are set), the four services and the console on
                           :8000; Ctrl-C stops all. --scale allocation=3: three instances
    oms run SERVICE        one service (or the console) in the foreground (what a container runs)
    oms demo               the SPEC section 8 walkthrough; starts the system if none answers
    oms bench SCENARIO     the benchmark in bench/ (python -m bench; see docs/benchmark.md)
    oms faults             the fault suite against the system `oms up` runs (docs/reliability.md)
    oms asyncapi           regenerate docs/asyncapi and docs/openapi
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from pathlib import Path

from services.cli.control import Supervisor
from services.cli.faults import cmd_faults
from services.cli.launcher import CONSOLE_PORT, SERVICES, System, _ready


def _workdir() -> Path:
    return Path.cwd() / ".oms"


def _scale_arguments(values: list[str]) -> dict[str, int]:
    """``--scale allocation=3`` (repeatable) -> {"allocation": 3}."""
    scale: dict[str, int] = {}
    for value in values:
        name, sep, count = value.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in SERVICES or not count.strip().isdigit() or int(count) < 1:
            raise SystemExit(f"--scale {value!r}: SERVICE=COUNT with SERVICE one of {', '.join(SERVICES)} and COUNT >= 1")
        scale[name] = int(count)
    return scale


def cmd_up(args: argparse.Namespace) -> int:
    scale = _scale_arguments(args.scale)
    system = System(workdir=_workdir())
    stop = {"now": False}

    def on_signal(*_: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        system.start_infra(fresh=not args.keep_data)
        system.start_all()
        for name, count in scale.items():
            if count != 1:
                system.scale(name, count)
                print(f"{name}: {count} instances on ports "
                      + ", ".join(str(sp.port) for sp in system.instances(name)), flush=True)
        console = system.start_console()
        print("\nOMS is up:", ", ".join(f"{n} {system.url(n)}" for n in SERVICES))
        print(f"operations console: http://127.0.0.1:{console.port} (sign in with a staff token)")
        print(f"broker {system.kafka_bootstrap}; logs in {system.workdir}; Ctrl-C to stop\n", flush=True)
        # restarts a service that exits; `oms faults` drives it (services/cli/control.py)
        Supervisor(system).run(lambda: stop["now"])
    finally:
        print("\nstopping...", flush=True)
        system.stop()
        print("stopped.", flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    name = args.service.replace("-", "_")
    if name == "console":
        from services.console.app import run as run_console

        run_console()
        return 0
    if name not in SERVICES:
        print(f"unknown service {args.service!r}; one of: {', '.join(SERVICES)}", file=sys.stderr)
        return 2
    from libs.service_host import run_service

    run_service(importlib.import_module(f"services.{name}.service").SERVICE)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from services.cli.demo import Walkthrough, WalkthroughMismatch

    system = None
    if not all(_ready(port) for port in SERVICES.values()):
        print("No running OMS answers on ports 8001-8004: starting one (embedded defaults)...", flush=True)
        system = System(workdir=_workdir(), log_to=None)
        system.start_infra(fresh=True)
        system.start_all()
        print(f"started; service logs in {system.workdir}\n", flush=True)
    try:
        urls = {n: f"http://127.0.0.1:{p}" for n, p in SERVICES.items()}
        Walkthrough(urls, unique_names=system is None).run()
        if _ready(CONSOLE_PORT):
            print(f"\nSee it in the operations console: http://127.0.0.1:{CONSOLE_PORT}/orders")
        else:
            print(f"\nThe operations console runs with `oms up`: http://127.0.0.1:{CONSOLE_PORT} (sign in with a staff token)")
        return 0
    except WalkthroughMismatch as exc:
        print(f"\nMISMATCH: {exc}", file=sys.stderr)
        return 1
    finally:
        if system:
            system.stop()


def cmd_bench(argv: list[str]) -> int:
    """Delegate to the benchmark in bench/ (beside the product in a source checkout; not shipped
    in the wheel, so an installed ``oms`` says where to find it)."""
    source_root = Path(__file__).resolve().parents[2]
    if (source_root / "bench" / "cli.py").is_file() and str(source_root) not in sys.path:
        sys.path.insert(0, str(source_root))
    try:
        from bench.cli import main as bench_main
    except ImportError as exc:
        print(f"the benchmark runs from a source checkout of the OMS (bench/ is not installed): {exc}",
              file=sys.stderr)
        return 2
    return bench_main(argv, prog="oms bench")


def cmd_asyncapi(args: argparse.Namespace) -> int:
    from services.cli.asyncapi import generate

    generate(Path(args.out))
    return 0


def _exit_on_sigterm() -> None:
    """SIGTERM ends the command through the normal path, so ``finally`` stops what it started
    (service processes run in their own sessions and would otherwise outlive us)."""

    def raise_exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, raise_exit)


def main(argv: list[str] | None = None) -> int:
    _exit_on_sigterm()
    parser = argparse.ArgumentParser(prog="oms", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the whole system")
    up.add_argument("--keep-data", action="store_true", help="keep embedded PostgreSQL data from the last run")
    up.add_argument("--scale", action="append", default=[], metavar="SERVICE=COUNT",
                    help="run COUNT instances of SERVICE (repeatable), e.g. --scale allocation=3; the first on "
                         "the service's port, the others on free ports; they share its consumer groups")
    up.set_defaults(fn=cmd_up)
    run = sub.add_parser("run", help="run one service in the foreground")
    run.add_argument("service", help=", ".join([*SERVICES, "console"]))
    run.set_defaults(fn=cmd_run)
    demo = sub.add_parser("demo", help="play the SPEC section 8 walkthrough")
    demo.set_defaults(fn=cmd_demo)
    # its arguments are the benchmark's own (bench/cli.py): `oms bench --help` lists them
    sub.add_parser("bench", help="run a benchmark scenario (python -m bench)", add_help=False)
    faults = sub.add_parser("faults", help="run the fault suite against the system `oms up` runs")
    faults.add_argument("--orders", type=int, default=240, help="orders streamed per scenario (at least 40)")
    faults.add_argument("-k", default="", help="only the scenarios whose test id matches (pytest -k), "
                                              "e.g. 'SIGKILL and inventory'")
    faults.add_argument("--workdir", default=str(_workdir()), help="the working directory of `oms up`")
    faults.set_defaults(fn=cmd_faults)
    spec = sub.add_parser("asyncapi", help="write the AsyncAPI and OpenAPI documents of every service")
    spec.add_argument("--out", default="docs/asyncapi")
    spec.set_defaults(fn=cmd_asyncapi)
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["bench"]:
        return cmd_bench(arguments[1:])
    args = parser.parse_args(arguments)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
