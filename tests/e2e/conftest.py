"""The whole system as four OS processes on the session's real broker and PostgreSQL."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra import Infra, free_port

from libs.service_host.auth import DEV_STAFF_TOKENS
from services.cli.control import AttachedSystem
from services.cli.launcher import SERVICES, System


@pytest.fixture(scope="session")
def system(infra: Infra) -> Iterator[System]:
    if attach := os.environ.get("OMS_FAULTS_ATTACH"):  # `oms faults`: the system `oms up` runs
        yield AttachedSystem.attach(Path(attach))
        return
    workdir = Path(tempfile.mkdtemp(prefix="oms-e2e-"))
    sys_ = System(
        workdir=workdir,
        kafka_bootstrap=infra.kafka_bootstrap,
        database_url=infra.database_url,
        kafka_idempotence=infra.kafka_idempotence,
        ports={name: free_port() for name in SERVICES},
        log_to=None,  # each service's log is in workdir/<service>.log
        # the tests send the development staff tokens, wherever the broker and database are
        extra_env={"OMS_ENV": "development", "OMS_STAFF_TOKENS": DEV_STAFF_TOKENS},
    )
    try:
        sys_.start_all(timeout=180)
        yield sys_
    finally:
        sys_.stop_services()
        print(f"service logs: {workdir}")
