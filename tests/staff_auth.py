"""Staff credentials for tests: the development tokens (the embedded default of
OMS_STAFF_TOKENS) and an app that serves routers behind their access rules as the host does.

Every test that calls a staff route sends one of these headers, e.g. ``httpx.Client(headers=ADMIN)``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from documented_answers import check_documented_answers
from fastapi import APIRouter, FastAPI

from libs.service_host import errors
from libs.service_host.auth import (
    DEV_CHANNEL_API_KEYS,
    DEV_STAFF_TOKENS,
    AccessTable,
    ChannelKeys,
    StaffAccess,
    StaffTokens,
)

ADMIN = {"Authorization": "Bearer dev-admin-token"}
OPERATOR = {"Authorization": "Bearer dev-operator-token"}
VIEWER = {"Authorization": "Bearer dev-viewer-token"}


def guarded_app(
    service: str, table: AccessTable, routers: Iterable[APIRouter], *, runtime: Any = None,
    channel_keys: str = DEV_CHANNEL_API_KEYS,
) -> FastAPI:
    """A FastAPI app serving ``routers`` behind ``table`` with the development tokens and the
    host's error answers (its one validation handler among them)."""
    app = FastAPI()
    errors.install(app)
    check_documented_answers(app)
    StaffAccess(service, table, StaffTokens(DEV_STAFF_TOKENS), ChannelKeys(channel_keys)).include(app, routers)
    app.state.runtime = runtime
    return app
