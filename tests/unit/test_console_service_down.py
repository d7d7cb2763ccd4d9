"""A console page whose service does not answer shows which one, instead of failing."""

from __future__ import annotations

import json
from base64 import b64encode

import pytest
from fastapi.testclient import TestClient
from infra import free_port
from itsdangerous import TimestampSigner

from services.console.app import create_app
from services.console.settings import SERVICE_PORTS, ConsoleSettings

SECRET = "test-secret"


@pytest.fixture()
def console() -> TestClient:
    """The console signed in, every service URL on a port nobody listens on."""
    nobody = {name: f"http://127.0.0.1:{free_port()}" for name in SERVICE_PORTS}
    app = create_app(ConsoleSettings(service_urls=nobody, secret=SECRET))
    client = TestClient(app)
    cookie = TimestampSigner(SECRET).sign(b64encode(json.dumps({"token": "dev-admin-token"}).encode())).decode()
    client.cookies.set("oms_console", cookie)
    return client


@pytest.mark.parametrize(("path", "service"), [
    ("/purchase-orders", "inventory"),
    ("/purchase-orders?status=open&sku=X", "inventory"),
    ("/orders", "order_intake"),
    ("/dropship", "fulfillment"),
    ("/dropship?location_id=SUP&status=requested", "fulfillment"),
    ("/locations/SUP/supplier-stock", "inventory"),
    ("/reports/sales", "order_intake"),
    ("/reports/sales?group_by=sku&currency=EUR", "order_intake"),
])
def test_a_page_names_the_service_that_does_not_answer(console: TestClient, path: str, service: str) -> None:
    with console:
        resp = console.get(path)
    assert resp.status_code == 200
    assert f"{service} does not answer" in resp.text
    assert 'aria-current="page"' in resp.text or "Sign out" in resp.text  # the console around it still works
