"""Order intake: the service definition the host runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from libs.service_host import Runtime, ServiceDefinition
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints import http, subscribers

GROUP_ID = "oms-order-intake"


def wire(runtime: Runtime) -> list[Any]:
    subscribers.register(runtime, GROUP_ID + runtime.kafka.group_suffix)
    keys = http.ApiKeys(os.environ.get("OMS_CHANNEL_API_KEYS", "*:dev-key"))
    return [http.build_router(runtime, keys)]


SERVICE = ServiceDefinition(
    name="order_intake",
    schema=SCHEMA,
    default_port=8001,
    versions_dir=Path(__file__).parent / "adapters" / "migrations" / "versions",
    wire=wire,
)
