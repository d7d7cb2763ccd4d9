"""Allocation: the service definition the host runs (HTTP port 8003, schema ``allocation``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libs.service_host import Runtime, ServiceDefinition
from services.allocation.adapters.tables import SCHEMA
from services.allocation.entrypoints import http, subscribers
from services.allocation.service_layer.availability import publish_pending, run_publisher
from services.allocation.service_layer.early_changes import (
    PRUNE_INTERVAL_S,
    RETENTION_HOURS,
    run_early_change_pruning,
)
from services.allocation.service_layer.expiry import run_expiry_sweep
from services.allocation.service_layer.queue_gauges import refresh_backorder_gauges
from services.allocation.service_layer.refill import QueueRefill

GROUP_ID = "oms-allocation"


def _refill(runtime: Runtime) -> QueueRefill:
    # OMS_REFILL_IDLE_POLL_S: how often the refill loop looks for a long queue still being filled
    # without being woken (one left by a crash or by another instance).
    poll = float(os.environ.get("OMS_REFILL_IDLE_POLL_S", "5"))
    refill = runtime.shared.get("refill")
    if refill is None:
        refill = runtime.shared["refill"] = QueueRefill(runtime.transaction, idle_poll=poll)
    return refill


def wire(runtime: Runtime) -> list[Any]:
    subscribers.register(runtime, GROUP_ID + runtime.kafka.group_suffix, on_filling=_refill(runtime).wake)
    return [http.build_router(runtime)]


def background(runtime: Runtime) -> list[Callable[[], Any]]:
    # OMS_AVAILABILITY_INTERVAL_MS: the coalescing window of the availability feed. Longer means
    # fewer AvailabilityChanged per busy SKU (and less work for every consumer of the feed).
    interval = int(os.environ.get("OMS_AVAILABILITY_INTERVAL_MS", "1000")) / 1000
    # OMS_EXPIRY_SWEEP_INTERVAL_MS: how often lots that expired under allocated units are released.
    sweep = int(os.environ.get("OMS_EXPIRY_SWEEP_INTERVAL_MS", "60000")) / 1000
    # OMS_EARLY_CHANGES_RETENTION_HOURS / _PRUNE_INTERVAL_S: changes whose order never came
    # (service_layer/early_changes.py); keep the retention at least the orders topic's.
    retention = float(os.environ.get("OMS_EARLY_CHANGES_RETENTION_HOURS", str(RETENTION_HOURS)))
    prune = float(os.environ.get("OMS_EARLY_CHANGES_PRUNE_INTERVAL_S", str(PRUNE_INTERVAL_S)))
    return [
        lambda: run_publisher(runtime.transaction, interval=interval),
        lambda: run_expiry_sweep(runtime.transaction, interval=sweep),
        lambda: run_early_change_pruning(runtime.transaction, retention, prune),
        _refill(runtime).run,  # the rest of long backorder queues, chunk by chunk
    ]


SERVICE = ServiceDefinition(
    name="allocation",
    schema=SCHEMA,
    default_port=8003,
    versions_dir=Path(__file__).parent / "adapters" / "migrations" / "versions",
    wire=wire,
    access=http.ACCESS,
    background=background,
    gauges=refresh_backorder_gauges,  # the backorder queue's depth and oldest age
    drain=lambda runtime: publish_pending(runtime.transaction),  # no SKU left waiting for a window
)
