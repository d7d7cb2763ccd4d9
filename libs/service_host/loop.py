"""The event loop every OMS process runs on: uvloop where it installs (Linux and macOS), asyncio's
own elsewhere (uvloop has no Windows build, so the dependency is marked off there).

uvloop does a socket's reads and writes, timers and callbacks in C (libuv). Every SQL statement
and every produce or fetch request is a loopback socket round trip, and those were the largest
single item in the services' profiles. In a quiet-machine ABBA of ``oms bench steady`` it measured
1,179 / 1,190 orders/s at full speed against 1,118 / 1,094 on asyncio's loop, CPU per order
1.88 / 1.86 against 2.04 / 1.90 ms (docs/benchmark.md, ninth wave). The benchmark's relay and load
generator run on the same loop, so the relay ratio still measures the services and not a loop."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Literal, TypeVar

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover - Windows, or an install without it
    uvloop = None  # type: ignore[assignment]


def uvicorn_loop() -> Literal["uvloop", "asyncio"]:
    """uvicorn's ``loop`` setting for the services' processes."""
    return "asyncio" if uvloop is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on the OMS event loop (for the processes uvicorn does not start)."""
    if uvloop is None:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)
