"""Async SQLAlchemy engine construction. Nothing connects at import time."""

from __future__ import annotations

import os

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from libs.database.errors import scrub_on_error


def database_url_from_env() -> str | None:
    """``OMS_DATABASE_URL`` in SQLAlchemy form (``postgresql+asyncpg://...``), or None."""
    url = os.environ.get("OMS_DATABASE_URL")
    return normalise_url(url) if url else None


def normalise_url(url: str) -> str:
    """Accept ``postgres://`` / ``postgresql://`` URLs too, as most tools print them."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def create_engine(url: str, *, schema: str, pool_size: int = 10, application_name: str = "oms") -> AsyncEngine:
    """An engine whose connections work in ``schema`` (each service owns one schema).

    Its errors never carry row values (customer names, addresses): parameters are hidden and
    the driver's texts scrubbed (see ``libs.database.errors``).

    No pre-ping: it was one more round trip at the start of every transaction (a consumed batch,
    a relay pass, a request), and most batches are small. A connection that died with its server
    fails its first statement instead; SQLAlchemy then drops every pooled connection made before
    that moment, the consumer retries the batch as a transient error and a request answers 503:
    nothing is changed twice or lost (tests/e2e/test_faults.py stops PostgreSQL mid-stream)."""
    engine = create_async_engine(
        normalise_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        hide_parameters=True,
        connect_args={
            "server_settings": {"search_path": schema, "application_name": application_name},
            # asyncpg's statement cache is per connection; our statements are few and fixed.
            "statement_cache_size": 512,
        },
    )
    event.listen(engine.sync_engine, "handle_error", scrub_on_error)
    return engine


async def ping(engine: AsyncEngine) -> bool:
    """True when the database answers a trivial query."""
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:  # noqa: BLE001 - readiness only reports, never raises
        return False
