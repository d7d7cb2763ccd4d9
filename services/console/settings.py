"""The console's settings, from the environment (unset: the local defaults of ``oms up``)."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

SERVICE_PORTS = {"order_intake": 8001, "inventory": 8002, "allocation": 8003, "fulfillment": 8004}


def _service_urls() -> dict[str, str]:
    return {
        name: os.environ.get(f"OMS_{name.upper()}_URL", f"http://127.0.0.1:{port}").rstrip("/")
        for name, port in SERVICE_PORTS.items()
    }


@dataclass(frozen=True)
class ConsoleSettings:
    """Where the console listens, where the services answer, and the session cookie's secret.

    ``OMS_CONSOLE_SECRET`` signs the session cookie; unset, a random one per process (staff sign
    in again after a restart, and several console instances need the same secret).
    """

    host: str = field(default_factory=lambda: os.environ.get("OMS_HTTP_HOST", "127.0.0.1"))
    port: int = field(default_factory=lambda: int(os.environ.get("OMS_CONSOLE_PORT", "8000")))
    service_urls: dict[str, str] = field(default_factory=_service_urls)
    secret: str = field(default_factory=lambda: os.environ.get("OMS_CONSOLE_SECRET") or secrets.token_urlsafe(32))
    poll_seconds: float = field(default_factory=lambda: float(os.environ.get("OMS_CONSOLE_POLL_SECONDS", "2")))
    timeout_seconds: float = 20.0
