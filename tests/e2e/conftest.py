"""The whole system as four OS processes on the session's real broker and PostgreSQL."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from infra import Infra, free_port
from staff_client import StaffClient

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


@pytest.fixture(autouse=True)
def _whole_system(request: pytest.FixtureRequest) -> None:
    """Each test that uses the session's system starts with every service's first instance up and
    ready: one test that leaves a service down (a failed restart in a fault scenario) fails alone
    instead of failing every test after it. A service found down is restarted and said so."""
    if "system" not in request.fixturenames:
        return
    system: System = request.getfixturevalue("system")
    for name in SERVICES:
        instances = system.instances(name)
        first = instances[0] if instances else None
        if first is not None and first.process.poll() is None:
            try:
                system.wait_ready(30, [first])
                continue
            except (TimeoutError, RuntimeError):  # not ready in time, or it exited meanwhile
                pass
        if first is not None:
            system.kill(first)
        print(f"{name} was not ready before {request.node.name}: restarting it")
        system.wait_ready(180, [system.start_service(name)])



@pytest.fixture()
def staff(system: System) -> Iterator[StaffClient]:
    """The running system's HTTP APIs as staff (tests/e2e/staff_client.py)."""
    client = StaffClient(system)
    try:
        yield client
    finally:
        client.close()
