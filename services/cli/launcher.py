"""Start the whole system: embedded broker and PostgreSQL (unless configured), then the four
services as separate OS processes with prefixed logs. Used by ``oms up``, ``oms demo``,
``oms bench`` and the end-to-end tests."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

from libs.embedded import EmbeddedKafka, EmbeddedPostgres
from libs.messaging.kafka import group_states

T = TypeVar("T")

SERVICES: dict[str, int] = {"order_intake": 8001, "inventory": 8002, "allocation": 8003, "fulfillment": 8004}
# What the tools (demo, bench) send to staff routes: OMS_ADMIN_TOKEN, else the development admin
# token (the embedded default of OMS_STAFF_TOKENS).
STAFF_HEADERS = {"Authorization": "Bearer " + os.environ.get("OMS_ADMIN_TOKEN", "dev-admin-token")}
CONSOLE_PORT = 8000  # the operations console: a fifth process, talking to the four over HTTP only
_COLORS = {"order_intake": 36, "inventory": 33, "allocation": 35, "fulfillment": 32, "console": 31, "infra": 34}


@dataclass
class ServiceProcess:
    name: str
    port: int
    process: subprocess.Popen[bytes]
    instance: int = 0

    @property
    def label(self) -> str:
        return self.name if self.instance == 0 else f"{self.name}#{self.instance}"


@dataclass
class System:
    """A running OMS: infrastructure plus service processes."""

    workdir: Path
    kafka_bootstrap: str = ""
    database_url: str = ""
    kafka_idempotence: bool = True
    ports: dict[str, int] = field(default_factory=lambda: dict(SERVICES))
    extra_env: dict[str, str] = field(default_factory=dict)
    pg_settings: dict[str, str] = field(default_factory=dict)  # the embedded server's extra settings
    log_to: TextIO | None = sys.stdout
    embedded_kafka: EmbeddedKafka | None = None
    embedded_pg: EmbeddedPostgres | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # --- infrastructure -------------------------------------------------------------------
    def start_infra(self, *, kafka_port: int = 19092, pg_port: int = 15432, fresh: bool = True) -> None:
        """Use OMS_KAFKA_BOOTSTRAP / OMS_DATABASE_URL when set, else start the embedded ones."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.kafka_bootstrap = os.environ.get("OMS_KAFKA_BOOTSTRAP", "")
        self.database_url = os.environ.get("OMS_DATABASE_URL", "")
        if not self.kafka_bootstrap:
            self._say("infra", f"starting embedded Kafka-protocol broker (Tansu) on 127.0.0.1:{kafka_port}")
            self.embedded_kafka = EmbeddedKafka(port=kafka_port, log_path=self.workdir / "tansu.log").start()
            self.kafka_bootstrap = self.embedded_kafka.bootstrap
            self.kafka_idempotence = False  # Tansu cannot start an idempotent producer
        else:
            self.kafka_idempotence = os.environ.get("OMS_KAFKA_IDEMPOTENCE", "true").lower() == "true"
        if not self.database_url:
            self._say("infra", f"starting embedded PostgreSQL on 127.0.0.1:{pg_port}"
                      + (" (fresh data: the embedded broker keeps nothing across restarts either)" if fresh else ""))
            self.embedded_pg = EmbeddedPostgres(
                self.workdir / "pgdata", port=pg_port, log_path=self.workdir / "postgres.log", settings=self.pg_settings
            ).start(fresh=fresh)
            self.database_url = self.embedded_pg.url

    def stop_infra(self) -> None:
        if self.embedded_kafka:
            self._say("infra", "stopping embedded broker")
            self.embedded_kafka.stop()
            self.embedded_kafka = None
        if self.embedded_pg:
            self._say("infra", "stopping embedded PostgreSQL")
            self.embedded_pg.stop()
            self.embedded_pg = None

    # --- services -----------------------------------------------------------------------------
    def env_for(self, name: str, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            OMS_KAFKA_BOOTSTRAP=self.kafka_bootstrap,
            OMS_DATABASE_URL=self.database_url,
            OMS_KAFKA_IDEMPOTENCE="true" if self.kafka_idempotence else "false",
            PYTHONUNBUFFERED="1",
        )
        env[f"OMS_{name.upper()}_PORT"] = str(port)
        # inventory's stock takes ask allocation for reserved quantities over its public API
        env.setdefault("OMS_ALLOCATION_URL", f"http://127.0.0.1:{self.ports['allocation']}")
        # fulfillment's returns ask order intake for the prices the lines were sold at
        env.setdefault("OMS_ORDER_INTAKE_URL", f"http://127.0.0.1:{self.ports['order_intake']}")
        # order intake's channel rules that name locations ask inventory which exist
        env.setdefault("OMS_INVENTORY_URL", f"http://127.0.0.1:{self.ports['inventory']}")
        if name == "console":  # where it finds the four services
            env.update({f"OMS_{svc.upper()}_URL": self.url(svc) for svc in SERVICES})
        env.update(self.extra_env)
        return env

    def start_service(
        self, name: str, *, port: int | None = None, instance: int = 0, env: dict[str, str] | None = None
    ) -> ServiceProcess:
        """One process of ``name``; ``env`` adds to (or overrides) its environment."""
        port = port or self.ports.get(name) or (CONSOLE_PORT if name == "console" else 0)
        label = name if instance == 0 else f"{name}#{instance}"
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env={**self.env_for(name, port), "OMS_INSTANCE": label, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C in the terminal reaches us; we stop children in order
        )
        sp = ServiceProcess(name, port, proc, instance)
        with self._lock:
            self.processes.append(sp)
        threading.Thread(target=self._pump, args=(sp,), daemon=True).start()
        return sp

    def start_all(self, timeout: float = 120) -> None:
        for name in SERVICES:
            self.start_service(name)
        self.wait_ready(timeout)

    def start_console(self, port: int = CONSOLE_PORT, timeout: float = 60) -> ServiceProcess:
        """The operations console beside the services (``oms up``, browser tests)."""
        sp = self.start_service("console", port=port)
        self.wait_ready(timeout, [sp])
        return sp

    def wait_ready(self, timeout: float = 120, processes: list[ServiceProcess] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = list(processes or self.processes)
        while pending:
            for sp in list(pending):
                if sp.process.poll() is not None:
                    raise RuntimeError(f"{sp.label} exited with code {sp.process.returncode} during start-up")
                if _ready(sp.port):
                    pending.remove(sp)
                    self._say(sp.name, f"ready on :{sp.port}")
            if pending and time.monotonic() > deadline:
                raise TimeoutError("not ready in time: " + ", ".join(sp.label for sp in pending))
            time.sleep(0.2)

    def kill(self, sp: ServiceProcess) -> None:
        """SIGKILL: the process gets no chance to clean up (crash test)."""
        sp.process.kill()
        sp.process.wait(10)
        with self._lock:
            self.processes.remove(sp)

    def settle(self, name: str, timeout: float = 60) -> None:
        """Wait until no consumer group of ``name`` is rebalancing, before one of its members leaves.

        The embedded broker (Tansu) loses a group for good when its last member leaves while the
        group rebalances: no later member ever gets partitions, so a restarted service never becomes
        ready (reproduced: a member joins, leaves, and the last one stops a second later). Apache
        Kafka completes such a rebalance; waiting costs it nothing but the rebalance itself."""
        suffix = self.extra_env.get("OMS_KAFKA_GROUP_SUFFIX", os.environ.get("OMS_KAFKA_GROUP_SUFFIX", ""))
        # The default layout's group (the per-topic layout, OMS_KAFKA_CONSUMER_PER_TOPIC, is not
        # waited for: describing several groups in one request breaks Tansu's answer).
        groups = [f"oms-{name}{suffix}"]
        deadline = time.monotonic() + timeout
        while True:
            try:
                states = _run_async(group_states(self.kafka_bootstrap, groups))
            except Exception as exc:  # noqa: BLE001 - a broker that cannot say: do not wait
                self._say("infra", f"{name}: consumer group state unknown ({exc!r}); not waiting")
                return
            moving = {g: s for g, s in states.items() if s not in ("Stable", "Empty", "Dead")}
            if not moving:
                return
            if time.monotonic() > deadline:
                self._say("infra", f"{name}: consumer groups still rebalancing after {timeout:.0f}s: {moving}")
                return
            time.sleep(0.5)

    def terminate(self, sp: ServiceProcess, timeout: float = 60) -> int:
        """SIGTERM one service and wait for it to drain and exit; its exit code (fault suite)."""
        self.settle(sp.name)
        sp.process.send_signal(signal.SIGTERM)
        code = sp.process.wait(timeout)
        with self._lock:
            self.processes.remove(sp)
        return code

    def instances(self, name: str) -> list[ServiceProcess]:
        with self._lock:
            return sorted((sp for sp in self.processes if sp.name == name), key=lambda sp: sp.instance)

    def scale(self, name: str, count: int, *, timeout: float = 180) -> list[ServiceProcess]:
        """Run ``count`` instances of ``name``: start the missing ones (instance 0 on the service's
        port, the others on free ports) and wait until they are ready, or SIGTERM the highest
        numbered ones and wait until they have drained and exited. Returns the instances now running."""
        if count < 1:
            raise ValueError(f"{name}: at least one instance (got {count})")
        running = self.instances(name)
        if len(running) < count:
            used = {sp.instance for sp in running}
            free = (i for i in range(count * 2) if i not in used)
            started = []
            for _ in range(count - len(running)):
                i = next(free)
                started.append(self.start_service(name, port=self.ports[name] if i == 0 else free_port(), instance=i))
            self.wait_ready(timeout, started)
        elif len(running) > count:
            # One at a time, each once the group is stable: the embedded broker loses a group
            # whose members leave during a rebalance (see settle), and two leaving at once is one
            # leaving during the rebalance the other caused.
            for sp in reversed(running[count:]):
                self.settle(name)
                sp.process.send_signal(signal.SIGTERM)
                sp.process.wait(timeout)
                with self._lock:
                    self.processes.remove(sp)
        return self.instances(name)

    def stop_services(self, timeout: float = 20) -> None:
        with self._lock:
            procs = list(self.processes)
        for sp in procs:
            if sp.process.poll() is None:
                sp.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for sp in procs:
            try:
                sp.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                sp.process.kill()
                sp.process.wait(5)
        with self._lock:
            self.processes.clear()

    def stop(self) -> None:
        self.stop_services()
        self.stop_infra()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    # --- logs ---------------------------------------------------------------------------------
    def _pump(self, sp: ServiceProcess) -> None:
        assert sp.process.stdout is not None
        log_file = open(self.workdir / f"{sp.label}.log", "ab")  # noqa: SIM115
        with log_file:
            for raw in iter(sp.process.stdout.readline, b""):
                log_file.write(raw)
                log_file.flush()
                self._say(sp.name, raw.decode(errors="replace").rstrip(), label=sp.label)

    def _say(self, name: str, line: str, label: str | None = None) -> None:
        if self.log_to is None:
            return
        color = _COLORS.get(name, 37)
        prefix = f"{label or name:<14}"
        if getattr(self.log_to, "isatty", lambda: False)():
            prefix = f"\033[{color}m{prefix}\033[0m"
        with self._lock:
            self.log_to.write(f"{prefix}| {line}\n")
            self.log_to.flush()


def _run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a loop of its own (callers may be inside a running loop: the tests)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def free_port() -> int:
    """A TCP port nothing listens on right now (for the second and further instances)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as resp:
            return resp.status == 200
    except Exception:  # noqa: BLE001 - not up yet
        return False
