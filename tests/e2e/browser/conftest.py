"""The console as a fifth process beside the e2e ``system``, and Debian's chromium driven by
Playwright (installed by scripts/bootstrap.sh; no browser download)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from infra import free_port

from services.cli.launcher import SERVICES, System

CHROMIUM = os.environ.get("OMS_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
STAFF_TOKEN = "dev-admin-token"  # the embedded default of OMS_STAFF_TOKENS (harmless before auth lands)
REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def console_url(system: System) -> Iterator[str]:
    sp = system.start_console(port=free_port())
    try:
        yield f"http://127.0.0.1:{sp.port}"
    finally:
        sp.process.terminate()
        sp.process.wait(15)
        if sp in system.processes:
            system.processes.remove(sp)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} missing: run scripts/bootstrap.sh (it installs Debian's chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=60_000)  # what the services do arrives within a few seconds; CI is slow
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture()
def page(request: pytest.FixtureRequest, browser: Any, console_url: str) -> Iterator[Any]:
    """A fresh browser context (own cookies) at 1280 px, signed in as staff. When the test fails,
    the page it ended on is printed (address and text), so a CI log shows what staff would have seen."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=console_url)
    context.set_default_timeout(60_000)
    pg = context.new_page()
    sign_in(pg)
    yield pg
    if request.node.stash.get(_FAILED, False):
        try:
            print(f"\n--- the page at the failure: {pg.url}\n{pg.locator('main').inner_text(timeout=5_000)[:3000]}")
        except Exception as exc:  # noqa: BLE001 - a diagnostic must not hide the failure
            print(f"\n--- the page at the failure: {pg.url} (text unavailable: {exc})")
    context.close()


def sign_in(pg: Any, token: str = STAFF_TOKEN) -> None:
    pg.goto("/sign-in")
    pg.get_by_label("Staff token").fill(token)
    pg.get_by_role("button", name="Sign in").click()
    pg.wait_for_url("**/orders")


@pytest.fixture(scope="session")
def screenshots() -> Path:
    """docs/screenshots when OMS_SAVE_SCREENSHOTS=1 (to refresh the committed ones), else a temp dir."""
    if os.environ.get("OMS_SAVE_SCREENSHOTS") == "1":
        target = REPO / "docs" / "screenshots"
    else:
        target = Path(tempfile.mkdtemp(prefix="oms-console-shots-"))
    target.mkdir(parents=True, exist_ok=True)
    return target


def shoot(pg: Any, folder: Path, name: str) -> None:
    pg.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@pytest.fixture(scope="session")
def api(system: System) -> Iterator[httpx.Client]:
    """For what a channel does (placing orders with its API key) and for checks beside the pages."""
    with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {STAFF_TOKEN}"}) as client:
        client.base_urls = {n: system.url(n) for n in SERVICES}  # type: ignore[attr-defined]
        yield client

