"""Shared fixtures: one real broker and one real PostgreSQL for the whole test session."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from infra import Infra, provide_infra  # noqa: E402


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with provide_infra() as provided:
        yield provided


@pytest.fixture(scope="session")
def kafka_bootstrap(infra: Infra) -> str:
    return infra.kafka_bootstrap


@pytest.fixture(scope="session")
def database_url(infra: Infra) -> str:
    return infra.database_url


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """End-to-end tests last: their running services (session-scoped) own the service schemas,
    and an allocation relay that is up would publish and delete the outbox rows that the
    integration tests inspect in the same database."""
    # Browser tests last of all: Playwright's sync API leaves an event loop marked as running on
    # the main thread, and pytest-asyncio cannot start an async test after it.
    items.sort(key=lambda item: (item.get_closest_marker("e2e") is not None, "/browser/" in str(item.path)))
