"""Inventory: the service definition the host runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libs.service_host import Runtime, ServiceDefinition
from services.inventory.adapters.tables import SCHEMA
from services.inventory.entrypoints import http, subscribers, supplier_http

GROUP_ID = "oms-inventory"


def wire(runtime: Runtime) -> list[Any]:
    subscribers.register(runtime, GROUP_ID + runtime.kafka.group_suffix)
    return [http.build_router(runtime), supplier_http.build_router(runtime)]


SERVICE = ServiceDefinition(
    name="inventory",
    schema=SCHEMA,
    default_port=8002,
    versions_dir=Path(__file__).parent / "adapters" / "migrations" / "versions",
    wire=wire,
    access={**http.ACCESS, **supplier_http.ACCESS},
)
