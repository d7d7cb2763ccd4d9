"""The Shopify connector's entrypoints in order intake: the order webhook route and the
subscriber turning the availability feed into Shopify inventory levels.

Configuration (environment, read once at start-up):

* ``OMS_SHOPIFY_WEBHOOK_SECRETS``: ``shop-domain:secret,...``, each shop's webhook signing
  secret (a secret: never logged). A shop without one is refused (401).
* ``OMS_SHOPIFY_CONFIG``: path of a JSON file ``{"shops": {"acme.myshopify.com": {"channel":
  "shopify-acme", "locations": {"WH-1": 655441491}, "inventory_items": {"SKU-1": 808950810}}}}``:
  the OMS channel of the shop's orders (default ``shopify-<shop>``) and the id mappings the
  inventory levels need (OMS location_id -> Shopify location_id, SKU -> inventory_item_id).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse
from faststream import AckPolicy
from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.contracts import Topic
from libs.contracts.orders import Problem
from libs.contracts.problems import ProblemAnswer
from libs.messaging.consumer import Delivery, EventMessage
from libs.messaging.subscriber import subscribe_batches
from libs.service_host import Runtime
from libs.service_host.auth import SignedBody
from libs.service_host.errors import problem_response
from services.order_intake.domain import shopify
from services.order_intake.service_layer.placing import parse_json
from services.order_intake.service_layer.shopify import (
    ShopConfig,
    WebhookRefused,
    apply_order_webhook,
    publish_inventory_levels,
)

WEBHOOK_ROUTE = "/connectors/shopify/webhooks"  # under order intake's /v1 router
WEBHOOK_PATH = "/v1" + WEBHOOK_ROUTE
SIGNED = SignedBody("X-Shopify-Hmac-Sha256", "base64 HMAC-SHA256 of the raw body with the shop's webhook secret"
                    " (OMS_SHOPIFY_WEBHOOK_SECRETS), shop from X-Shopify-Shop-Domain")


class ShopifySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_SHOPIFY_", extra="ignore")

    webhook_secrets: SecretStr = SecretStr("")
    config: str = ""


class _ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    shops: dict[str, shopify.ShopMapping] = Field(default_factory=dict)


class ShopifyConnector:
    """The shops this process serves: secrets and mappings."""

    def __init__(self, secrets: str, shops: dict[str, shopify.ShopMapping]) -> None:
        self._secrets: dict[str, str] = {}
        for position, item in enumerate(filter(None, (p.strip() for p in secrets.split(","))), start=1):
            shop, sep, secret = item.partition(":")
            if not sep or not shop or not secret:
                raise ValueError(f"OMS_SHOPIFY_WEBHOOK_SECRETS entry {position} is not of the form shop-domain:secret")
            self._secrets[shop.strip().lower()] = secret
        self.shops = [
            ShopConfig(shop.lower(), mapping.channel or shopify.default_channel(shop.lower()), mapping)
            for shop, mapping in shops.items()
        ]

    @classmethod
    def from_settings(cls, settings: ShopifySettings | None = None) -> ShopifyConnector:
        settings = settings or ShopifySettings()
        shops = {}
        if settings.config:
            shops = _ConfigFile.model_validate(json.loads(Path(settings.config).read_text())).shops
        return cls(settings.webhook_secrets.get_secret_value(), shops)

    def channel_of(self, shop: str) -> str:
        for config in self.shops:
            if config.shop == shop:
                return config.channel
        return shopify.default_channel(shop)

    def verified(self, shop: str | None, body: bytes, signature: str | None) -> bool:
        secret = self._secrets.get((shop or "").strip().lower())
        # An unknown shop is still compared against a throw-away secret: no timing hint.
        return shopify.signature_ok(secret or "\x00unknown", body, signature) and secret is not None


class WebhookAnswer(BaseModel):
    order_id: str | None = Field(description="the OMS order of the Shopify order")
    did: list[str] = Field(description="what this delivery changed: placed, modified, cancelled; empty: nothing"
                                       " (a repeat, an older state, or a change the OMS does not track)")


def _unauthorized(field: str, problem: str) -> JSONResponse:
    return JSONResponse({"detail": [{"field": field, "problem": problem}]}, status_code=401)


def add_routes(router: APIRouter, runtime: Runtime, connector: ShopifyConnector) -> None:
    """Add the webhook route to order intake's ``/v1`` router."""

    @router.post(
        WEBHOOK_ROUTE,
        tags=["connectors"],
        response_model=WebhookAnswer,
        summary="Shopify order webhooks: orders/create, orders/updated, orders/cancelled",
        openapi_extra={"requestBody": {"required": True, "content": {"application/json": {"schema": {
            "type": "object", "description": "Shopify's Order, as its webhooks send it"}}}}},
        responses={401: {"description": "bad or missing signature, or a shop without a secret; nothing stored",
                         "model": ProblemAnswer},
                   422: {"description": "a payload Shopify would never send, or an unsupported topic;"
                                        " every problem naming Shopify's field", "model": ProblemAnswer}},
    )
    async def post_shopify_webhook(
        request: Request,
        x_shopify_hmac_sha256: Annotated[str | None, Header()] = None,
        x_shopify_shop_domain: Annotated[str | None, Header()] = None,
        x_shopify_topic: Annotated[str | None, Header()] = None,
    ) -> Any:
        body = await request.body()
        if not x_shopify_shop_domain:
            return _unauthorized("X-Shopify-Shop-Domain", "missing: the shop whose secret signs this webhook")
        if not connector.verified(x_shopify_shop_domain, body, x_shopify_hmac_sha256):
            return _unauthorized("X-Shopify-Hmac-Sha256",
                                 "missing, or not the HMAC-SHA256 of this body with the shop's webhook secret")
        if x_shopify_topic not in shopify.ORDER_TOPICS:
            return problem_response([Problem(field="X-Shopify-Topic",
                                             problem=f"must be one of {', '.join(shopify.ORDER_TOPICS)}")])
        payload, parse_problem = parse_json(body)
        if parse_problem:
            return problem_response([parse_problem])
        channel = connector.channel_of(x_shopify_shop_domain.strip().lower())
        try:
            async with runtime.transaction() as conn:
                outcome = await apply_order_webhook(conn, channel, x_shopify_topic, payload)
        except WebhookRefused as exc:
            return problem_response(exc.problems)
        return WebhookAnswer(order_id=outcome.order_id, did=outcome.did)


def register(runtime: Runtime, group_id: str, connector: ShopifyConnector) -> None:
    """The availability feed -> ``oms.shopify.inventory-levels.v1`` (every shop with mappings).
    Subscribed only when some shop has mappings: availability is the busiest topic, and without
    mappings there is nothing to tell Shopify. Its own consumer group (``<group>.shopify``): the
    connector's lag is not the order path's."""
    shops = [s for s in connector.shops if s.mapping.inventory_items and s.mapping.locations]
    if not shops:
        return

    async def handle(deliveries: Sequence[Delivery[EventMessage]]) -> None:
        async with runtime.transaction() as conn:
            await publish_inventory_levels(conn, shops, [d.message for d in deliveries])

    subscribe_batches(
        runtime,
        group_id=f"{group_id}.shopify",
        inputs={Topic.AVAILABILITY: "Availability of mapped SKUs at mapped locations, written as Shopify inventory "
                                    "levels to oms.shopify.inventory-levels.v1 (the Shopify connector)."},
        process=handle,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
    )
