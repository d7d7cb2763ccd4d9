"""Fulfillment (the packing service): the service definition the host runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libs.service_host import Runtime, ServiceDefinition
from services.fulfillment.adapters.tables import SCHEMA
from services.fulfillment.entrypoints import dropship_http, http, subscribers

GROUP_ID = "oms-fulfillment"


def wire(runtime: Runtime) -> list[Any]:
    subscribers.register(runtime, GROUP_ID + runtime.kafka.group_suffix)
    return [http.build_router(runtime), dropship_http.build_router(runtime)]


SERVICE = ServiceDefinition(
    name="fulfillment",
    schema=SCHEMA,
    default_port=8004,
    versions_dir=Path(__file__).parent / "adapters" / "migrations" / "versions",
    wire=wire,
    access={**http.ACCESS, **dropship_http.ACCESS},
)
