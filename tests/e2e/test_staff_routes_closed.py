"""The running services: staff routes answer 401 without a token and 200 with one; health,
metrics and the OpenAPI document stay open, and it shows the bearer scheme."""

from __future__ import annotations

import httpx
import pytest
from staff_auth import VIEWER

from services.cli.launcher import System

pytestmark = pytest.mark.e2e

READS = {"order_intake": "/v1/reports/orders-by-channel-status", "inventory": "/v1/locations",
         "allocation": "/v1/backorders", "fulfillment": "/v1/picklists"}


@pytest.mark.parametrize("service", sorted(READS))
def test_a_running_service_closes_staff_routes_and_leaves_health_open(system: System, service: str) -> None:
    url = system.url(service)
    refused = httpx.get(url + READS[service], timeout=10)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert httpx.get(url + READS[service], headers=VIEWER, timeout=10).status_code == 200
    for open_path in ("/health/live", "/health/ready", "/metrics", "/docs"):
        assert httpx.get(url + open_path, timeout=10).status_code == 200, open_path
    document = httpx.get(url + "/openapi.json", timeout=10).json()
    assert document["components"]["securitySchemes"]["StaffToken"] == {
        "type": "http", "scheme": "bearer", "description": "Staff token (OMS_STAFF_TOKENS); roles viewer < operator < admin."}
