"""Order intake: the service definition the host runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from libs.service_host import Runtime, ServiceDefinition
from libs.service_host.auth import AuthSettings, ChannelKeys
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints import http, shopify, subscribers

GROUP_ID = "oms-order-intake"


def wire(runtime: Runtime) -> list[Any]:
    subscribers.register(runtime, GROUP_ID + runtime.kafka.group_suffix)
    connector = shopify.ShopifyConnector.from_settings()
    shopify.register(runtime, GROUP_ID + runtime.kafka.group_suffix, connector)
    keys = ChannelKeys(AuthSettings().channel_api_keys.get_secret_value())
    return [http.build_router(runtime, keys, connector)]


SERVICE = ServiceDefinition(
    name="order_intake",
    schema=SCHEMA,
    default_port=8001,
    versions_dir=Path(__file__).parent / "adapters" / "migrations" / "versions",
    wire=wire,
    access=http.ACCESS,
)
