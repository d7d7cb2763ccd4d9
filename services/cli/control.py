"""How ``oms faults`` drives the system that ``oms up`` runs (docs/reliability.md).

``oms up`` supervises its service processes (:class:`Supervisor`): it restarts one that exits,
and it keeps ``<workdir>/system.json`` current (broker, database, ports, and the pid of every
service process). Through files in ``<workdir>/control/`` another process, the fault suite run by
``oms faults``, may ask it to

* hold a service: ``hold-<label>`` (written before the suite kills or stops the process): when
  that process exits it is not restarted; its exit status goes to ``exit-<pid>``;
* start a service: ``start-<label>.json`` ``{"name", "port", "instance", "env"}``; a process
  started with an ``env`` (a fault hook, a fresh consumer group) is the suite's: it is held when
  it exits, and the suite starts the normal one again;
* stop or start the embedded PostgreSQL: ``postgres-stop`` / ``postgres-start`` (removed when
  done).

:class:`AttachedSystem` is the suite's side: a :class:`~services.cli.launcher.System` whose
kill, terminate and start go through those files, so the fault tests run unchanged against the
running system. Plain files rather than an HTTP control API: only a process on the same machine
with access to the working directory can drive the faults, and nothing listens on a port."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from services.cli.launcher import SERVICES, ServiceProcess, System

STATE = "system.json"
CONTROL = "control"


def read_state(workdir: Path) -> dict[str, Any]:
    path = workdir / STATE
    if not path.is_file():
        raise FileNotFoundError(f"no running system found: {path} is missing (start one with `oms up`)")
    return dict(json.loads(path.read_text()))


class Supervisor:
    """The restart loop of ``oms up``, with the control files above."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.control = system.workdir / CONTROL
        self.control.mkdir(parents=True, exist_ok=True)
        for stale in self.control.iterdir():
            stale.unlink()
        self._owned: set[int] = set()  # pids started with an env of the suite's: held on exit
        self.write_state()

    def write_state(self) -> None:
        s = self.system
        state = {
            "supervisor_pid": os.getpid(),
            "kafka_bootstrap": s.kafka_bootstrap,
            "database_url": s.database_url,
            "kafka_idempotence": s.kafka_idempotence,
            "embedded_postgres": s.embedded_pg is not None,
            "ports": s.ports,
            "services": [{"name": sp.name, "label": sp.label, "instance": sp.instance, "port": sp.port,
                          "pid": sp.process.pid} for sp in list(s.processes)],
        }
        tmp = s.workdir / (STATE + ".tmp")
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(s.workdir / STATE)

    def tick(self) -> None:
        """One pass: restart (or hold) exited services, carry out requests."""
        s, changed = self.system, False
        for sp in list(s.processes):
            code = sp.process.poll()
            if code is None:
                continue
            (self.control / f"exit-{sp.process.pid}").write_text(str(code))
            s.processes.remove(sp)
            changed = True
            if (self.control / f"hold-{sp.label}").exists() or sp.process.pid in self._owned:
                print(f"{sp.label} exited with {code}; held (oms faults)", flush=True)
            else:
                print(f"{sp.label} exited with {code}; restarting", flush=True)
                s.start_service(sp.name, port=sp.port, instance=sp.instance)
        for request in sorted(self.control.glob("start-*.json")):
            body = json.loads(request.read_text())
            started = s.start_service(body["name"], port=body["port"], instance=body["instance"],
                                      env=body.get("env") or None)
            if body.get("env"):
                self._owned.add(started.process.pid)
            (self.control / f"hold-{started.label}").unlink(missing_ok=True)
            request.unlink()
            changed = True
        for op in ("stop", "start"):
            request = self.control / f"postgres-{op}"
            if request.exists():
                if s.embedded_pg is not None:
                    s.embedded_pg.stop() if op == "stop" else s.embedded_pg.start()
                request.unlink()
        if changed:
            self.write_state()

    def run(self, stop: Callable[[], bool], interval: float = 0.2) -> None:
        while not stop():
            self.tick()
            time.sleep(interval)


class RemoteProcess:
    """A service process of the supervisor, as much of ``subprocess.Popen`` as the suite uses."""

    def __init__(self, pid: int, control: Path) -> None:
        self.pid = pid
        self._exit = control / f"exit-{pid}"

    @property
    def returncode(self) -> int | None:
        return self.poll()

    def poll(self) -> int | None:
        return int(self._exit.read_text()) if self._exit.is_file() else None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            time.sleep(0.1)
        return code

    def send_signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:  # already gone: its exit is (about to be) recorded
            pass

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class AttachedSystem(System):
    """The system ``oms up`` runs, driven through its supervisor's control files."""

    @classmethod
    def attach(cls, workdir: Path) -> AttachedSystem:
        state = read_state(workdir)
        system = cls(workdir=workdir, kafka_bootstrap=state["kafka_bootstrap"], database_url=state["database_url"],
                     kafka_idempotence=state["kafka_idempotence"], ports=dict(state["ports"]), log_to=None)
        control = workdir / CONTROL
        system.processes = [ServiceProcess(s["name"], s["port"], RemoteProcess(s["pid"], control),  # type: ignore[arg-type]
                                           s["instance"]) for s in state["services"] if s["name"] in SERVICES]
        # (the console, when `oms up` runs one, is no part of the suite: it has no readiness to lose)
        return system

    @property
    def control(self) -> Path:
        return self.workdir / CONTROL

    def kill(self, sp: ServiceProcess) -> None:
        (self.control / f"hold-{sp.label}").touch()
        sp.process.kill()
        sp.process.wait(30)
        with self._lock:
            if sp in self.processes:
                self.processes.remove(sp)

    def terminate(self, sp: ServiceProcess, timeout: float = 60) -> int:
        self.settle(sp.name)  # see System.settle: the embedded broker's lost groups
        (self.control / f"hold-{sp.label}").touch()
        sp.process.send_signal(signal.SIGTERM)
        code = sp.process.wait(timeout)
        with self._lock:
            self.processes.remove(sp)
        return code

    def start_service(
        self, name: str, *, port: int | None = None, instance: int = 0, env: dict[str, str] | None = None
    ) -> ServiceProcess:
        port = port or self.ports[name]
        label = name if instance == 0 else f"{name}#{instance}"
        known = {s["pid"] for s in read_state(self.workdir)["services"]}
        request = self.control / f"start-{label}.json"
        tmp = request.with_suffix(".tmp")
        tmp.write_text(json.dumps({"name": name, "port": port, "instance": instance, "env": env or {}}))
        tmp.replace(request)
        deadline = time.monotonic() + 60
        while True:
            fresh = [s for s in read_state(self.workdir)["services"] if s["label"] == label and s["pid"] not in known]
            if fresh and not request.exists():
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"the supervisor (oms up) did not start {label}: is it still running?")
            time.sleep(0.1)
        sp = ServiceProcess(name, port, RemoteProcess(fresh[0]["pid"], self.control), instance)  # type: ignore[arg-type]
        with self._lock:
            self.processes.append(sp)
        return sp

    def scale(self, name: str, count: int, *, timeout: float = 180) -> list[ServiceProcess]:
        raise NotImplementedError("scale the attached system with `oms up --scale`")

    def stop_services(self, timeout: float = 20) -> None:
        """Nothing: the services belong to ``oms up``."""

    def postgres(self) -> AttachedPostgres | None:
        return AttachedPostgres(self.control) if read_state(self.workdir)["embedded_postgres"] else None


class AttachedPostgres:
    """The embedded PostgreSQL of ``oms up``: stop and start, as the outage scenario does."""

    def __init__(self, control: Path) -> None:
        self.control = control

    def _ask(self, op: str) -> None:
        request = self.control / f"postgres-{op}"
        request.touch()
        deadline = time.monotonic() + 120
        while request.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the supervisor (oms up) did not {op} PostgreSQL")
            time.sleep(0.1)

    def stop(self) -> None:
        self._ask("stop")

    def start(self) -> None:
        self._ask("start")
