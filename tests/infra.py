"""Where tests find a real broker and a real PostgreSQL: environment variables first
(``OMS_TEST_KAFKA_BOOTSTRAP`` / ``OMS_TEST_DATABASE_URL``, or the ``OMS_*`` ones), then
testcontainers when a Docker engine answers, then the embedded ones from PyPI wheels."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    database_url: str  # postgresql+asyncpg://...
    kind: str  # "env" | "testcontainers" | "embedded" | "attached" (`oms faults`)
    kafka_idempotence: bool
    # the embedded PostgreSQL (an EmbeddedPostgres) when we started it: the fault suite stops it
    embedded_pg: Any = field(default=None, compare=False, repr=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no engine, no client, no permission: all mean "no"
        return False


@contextlib.contextmanager
def provide_infra() -> Iterator[Infra]:
    if attach := os.environ.get("OMS_FAULTS_ATTACH"):  # `oms faults`: the infrastructure of `oms up`
        from services.cli.control import AttachedSystem

        attached = AttachedSystem.attach(Path(attach))
        yield Infra(attached.kafka_bootstrap, attached.database_url, "attached", attached.kafka_idempotence,
                    embedded_pg=attached.postgres())
        return
    kafka = os.environ.get("OMS_TEST_KAFKA_BOOTSTRAP")
    db = os.environ.get("OMS_TEST_DATABASE_URL")
    if kafka and db:
        yield Infra(kafka, db, "env", os.environ.get("OMS_TEST_KAFKA_IDEMPOTENCE", "true") == "true")
        return
    if _docker_available():
        from testcontainers.kafka import KafkaContainer
        from testcontainers.postgres import PostgresContainer

        with KafkaContainer().with_kraft() as k, PostgresContainer("postgres:16", driver="asyncpg") as pg:
            yield Infra(k.get_bootstrap_server(), pg.get_connection_url(), "testcontainers", True)
        return
    from libs.embedded import EmbeddedKafka, EmbeddedPostgres

    work = Path(tempfile.mkdtemp(prefix="oms-test-"))
    broker = EmbeddedKafka(port=free_port(), log_path=work / "tansu.log").start()
    pg = EmbeddedPostgres(work / "pgdata", port=free_port(), log_path=work / "postgres.log").start()
    try:
        yield Infra(broker.bootstrap, pg.url, "embedded", False, embedded_pg=pg)
    finally:
        broker.stop()
        pg.stop()
        shutil.rmtree(work / "pgdata", ignore_errors=True)  # the logs stay; the data was the session's
