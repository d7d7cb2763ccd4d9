"""Allocation: the service definition the host runs (HTTP port 8003, schema ``allocation``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from libs.service_host import Runtime, ServiceDefinition
from services.allocation.adapters.tables import SCHEMA
from services.allocation.entrypoints import http, subscribers
from services.allocation.service_layer.availability import run_publisher

GROUP_ID = "oms-allocation"


def wire(runtime: Runtime) -> list[Any]:
    subscribers.register(runtime, GROUP_ID + runtime.kafka.group_suffix)
    return [http.build_router(runtime)]


def background(runtime: Runtime) -> list[Callable[[], Any]]:
    return [lambda: run_publisher(runtime.engine, runtime.relay.notify)]


SERVICE = ServiceDefinition(
    name="allocation",
    schema=SCHEMA,
    default_port=8003,
    versions_dir=Path(__file__).parent / "adapters" / "migrations" / "versions",
    wire=wire,
    background=background,
)
