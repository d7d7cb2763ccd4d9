"""The launcher points the console at the services it started, wherever their ports are."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.cli.launcher import System
from services.console.settings import ConsoleSettings


def test_the_console_process_is_told_where_each_service_listens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {"order_intake": 9101, "inventory": 9102, "allocation": 9103, "fulfillment": 9104}
    env = System(workdir=tmp_path, ports=ports, log_to=None).env_for("console", 9100)
    assert env["OMS_CONSOLE_PORT"] == "9100"
    for name in ports:
        monkeypatch.setenv(f"OMS_{name.upper()}_URL", env[f"OMS_{name.upper()}_URL"])
    assert ConsoleSettings().service_urls == {n: f"http://127.0.0.1:{p}" for n, p in ports.items()}


def test_without_a_secret_each_console_process_signs_with_its_own_random_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMS_CONSOLE_SECRET", raising=False)
    assert ConsoleSettings().secret != ConsoleSettings().secret
    monkeypatch.setenv("OMS_CONSOLE_SECRET", "shared-by-every-replica")
    assert ConsoleSettings().secret == "shared-by-every-replica"
