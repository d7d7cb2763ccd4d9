"""Helpers for HTTP tests: a service's routers in an app with the host's error handling."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from documented_answers import check_documented_answers
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.service_host import errors

# Staff routes will need a bearer token (staff authentication lands in parallel); harmless before.
STAFF = {"Authorization": "Bearer dev-admin-token"}


def runtime(engine: AsyncEngine) -> Any:
    """What routers need of a Runtime: the engine, a relay to wake and the unit of work that
    wakes it (``Runtime.transaction``)."""
    from libs.messaging.outbox import Transactions

    relay = SimpleNamespace(notify=lambda: None, is_leader=False)  # no relay runs: notify as another instance would
    return SimpleNamespace(engine=engine, relay=relay, transaction=Transactions(engine, relay).begin)  # type: ignore[arg-type]


def channel_keys(spec: str) -> Any:
    """Order intake's per-channel API keys (``ApiKeys`` before staff authentication moved them
    to ``libs.service_host.auth.ChannelKeys``)."""
    try:
        from libs.service_host.auth import ChannelKeys  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        from services.order_intake.entrypoints.http import ApiKeys as ChannelKeys
    return ChannelKeys(spec)


def host_app(*routers: Any) -> FastAPI:
    """An app as ``libs.service_host.build_app`` assembles it, without connecting to anything."""
    app = FastAPI()
    errors.install(app)
    check_documented_answers(app)
    for router in routers:
        app.include_router(router)
    return app


def fields(response: Any) -> set[str]:
    """The fields a 422 answer names."""
    return {d["field"] for d in response.json()["detail"]}
