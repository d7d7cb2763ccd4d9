"""Who may cancel or change an order, on a real PostgreSQL: a staff operator, or the API key of
the channel that placed it (connectors cancel their own orders); never another channel's key."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from http_support import runtime as http_runtime
from staff_auth import OPERATOR, VIEWER, guarded_app

from libs.database import create_engine, upgrade_schema
from libs.service_host.auth import ChannelKeys
from services.order_intake.adapters.tables import SCHEMA
from services.order_intake.entrypoints.http import ACCESS, build_router

pytestmark = pytest.mark.integration

VERSIONS = Path(__file__).parents[2] / "services" / "order_intake" / "adapters" / "migrations" / "versions"
RUN = uuid.uuid4().hex[:8]
WEB, POS = f"web-{RUN}", f"pos-{RUN}"  # channels of this run only
KEYS = f"{WEB}:web-key-{RUN}-0123456789,{POS}:pos-key-{RUN}-0123456789"
WEB_KEY = {"X-API-Key": f"web-key-{RUN}-0123456789"}
POS_KEY = {"X-API-Key": f"pos-key-{RUN}-0123456789"}


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    engine = create_engine(database_url, schema=SCHEMA)
    await upgrade_schema(engine, schema=SCHEMA, versions_dir=VERSIONS)
    runtime = http_runtime(engine)
    app = guarded_app("order_intake", ACCESS, [build_router(runtime, ChannelKeys(KEYS))],  # type: ignore[arg-type]
                      runtime=runtime, channel_keys=KEYS)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake") as client:
        yield client
    await engine.dispose()


def order(channel: str) -> dict:
    return {"channel": channel, "external_id": uuid.uuid4().hex, "placed_at": "2026-11-22T10:00:00Z",
            "currency": "EUR", "ship_to": {"country": "DE"},
            "lines": [{"line_id": "1", "sku": f"SKU-{RUN}", "qty": 2, "unit_price": "1.50"}]}


async def place(api: httpx.AsyncClient, channel: str, key: dict[str, str]) -> str:
    resp = await api.post("/v1/orders", json=order(channel), headers=key)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["order_id"])


CHANGE = {"lines": [{"line_id": "1", "sku": f"SKU-{RUN}", "qty": 1, "unit_price": "1.50"}]}


async def test_a_channel_key_cancels_and_changes_only_its_own_channels_orders(api: httpx.AsyncClient) -> None:
    web_order = await place(api, WEB, WEB_KEY)

    for method, path, body in [("POST", f"/v1/orders/{web_order}/cancel", {}),
                               ("PATCH", f"/v1/orders/{web_order}", CHANGE)]:
        other = await api.request(method, path, json=body, headers=POS_KEY)
        assert other.status_code == 403, other.text
        assert other.json()["detail"][0]["field"] == "X-API-Key"
        unknown = await api.request(method, path, json=body, headers={"X-API-Key": "no-such-key"})
        assert unknown.status_code == 401 and unknown.headers["www-authenticate"].startswith("Bearer")
        assert (await api.request(method, path, json=body)).status_code == 401

    assert (await api.patch(f"/v1/orders/{web_order}", json=CHANGE, headers=WEB_KEY)).status_code == 202
    assert (await api.post(f"/v1/orders/{web_order}/cancel", json={}, headers=WEB_KEY)).status_code == 202


async def test_a_staff_operator_cancels_any_channels_order_and_a_viewer_cannot(api: httpx.AsyncClient) -> None:
    pos_order = await place(api, POS, POS_KEY)

    refused = await api.post(f"/v1/orders/{pos_order}/cancel", json={}, headers=VIEWER)
    assert refused.status_code == 403 and "needs role operator" in refused.text
    assert (await api.patch(f"/v1/orders/{pos_order}", json={"priority": 3}, headers=OPERATOR)).status_code == 202
    assert (await api.post(f"/v1/orders/{pos_order}/cancel", json={}, headers=OPERATOR)).status_code == 202
    assert (await api.get(f"/v1/orders/{pos_order}", headers=VIEWER)).json()["channel"] == POS


async def test_placing_needs_the_key_of_the_orders_own_channel(api: httpx.AsyncClient) -> None:
    for headers in (POS_KEY, OPERATOR):
        r = await api.post("/v1/orders", json=order(WEB), headers=headers)
        assert r.status_code == 401 and "WWW-Authenticate" in r.headers
        assert r.json()["detail"] == [{"field": "X-API-Key", "problem": "missing, or not the key of this order's channel"}]


async def test_a_known_key_on_an_unknown_order_is_404(api: httpx.AsyncClient) -> None:
    assert (await api.post("/v1/orders/no-such-order/cancel", json={}, headers=WEB_KEY)).status_code == 404

