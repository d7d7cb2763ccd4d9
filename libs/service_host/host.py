"""Assemble one service: engine, migrations, producer, FastStream broker, outbox relay, FastAPI.

Nothing connects at import time: ``build_app`` returns an app whose lifespan does the work.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.contracts.topics import ALL_TOPICS, dlq
from libs.database import create_engine, ping, upgrade_schema
from libs.database.engine import normalise_url
from libs.messaging.inbox import prune_inbox
from libs.messaging.kafka import broker_reachable, create_producer, ensure_topics
from libs.messaging.outbox import OutboxRelay, Transactions
from libs.messaging.settings import KafkaSettings
from libs.observability import tracing
from libs.observability.logs import CORRELATION_ID, configure_logging, instance_name
from libs.observability.metrics import (
    READY,
    ConsumerLag,
    HttpMetricsMiddleware,
    query_gauges,
    refresh_forever,
    refresh_outbox,
)
from libs.service_host import errors
from libs.service_host.auth import InsecureConfiguration, Rule, StaffAccess

log = logging.getLogger(__name__)

EMBEDDED_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:15432/oms"


class HostSettings(BaseSettings):
    """Process settings shared by every service (environment variables ``OMS_*``)."""

    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    database_url: str = Field(default=EMBEDDED_DATABASE, description="OMS_DATABASE_URL")
    http_host: str = "127.0.0.1"
    db_pool_size: int = 10
    log_level: str = "INFO"
    # "text": readable lines (a terminal, `oms up`); "json": one object a line (containers,
    # log shippers); libs/observability/logs.py
    log_format: str = Field(default="text", pattern="^(text|json)$", description="OMS_LOG_FORMAT")
    # Inbox ids are kept at least as long as the topics keep records (Kafka's default retention
    # is 7 days); older ones are pruned every interval. Raise both together.
    inbox_retention_hours: float = Field(default=168.0, gt=0)
    inbox_prune_interval_s: float = Field(default=3600.0, gt=0)
    # How often the gauges that need the database or broker (consumer lag, outbox backlog, the
    # service's own) are read: libs/observability/metrics.py.
    metrics_interval_s: float = Field(default=5.0, gt=0, description="OMS_METRICS_INTERVAL_S")
    # Tracing is off unless one of these is set (libs/observability/tracing.py): an OTLP/HTTP
    # collector (e.g. http://otel-collector:4318), or a file of finished spans (JSON lines).
    otlp_endpoint: str = Field(default="", description="OMS_OTLP_ENDPOINT")
    trace_file: str = Field(default="", description="OMS_TRACE_FILE")
    # Python's cyclic garbage collector runs a young-generation pass every ``gc_threshold``
    # allocations (CPython's default: 700). A batch of 500 orders allocates hundreds of
    # thousands of short-lived objects, and each pass also walks every object that survived the
    # last one, so the default spent 25-30 % of allocation's CPU per order in the collector
    # (bench/hotpath.py, docs/benchmark.md). Start-up objects are frozen out of collection too.
    # Reference counting still frees nearly everything at once; only cycles wait longer.
    gc_threshold: int = Field(default=50_000, ge=700, description="OMS_GC_THRESHOLD")
    # Shutdown (SIGTERM) drains: consumers leave their group, the relay publishes what is
    # committed. Leaving the group gets this long (the embedded broker has been seen to hold it
    # forever during a rebalance); the whole shutdown gets the second figure, then the process
    # exits anyway (below Kubernetes' default 30 s grace period plus the 10 s HTTP drain).
    consumer_stop_timeout_s: float = Field(default=10.0, gt=0, description="OMS_CONSUMER_STOP_TIMEOUT_S")
    shutdown_deadline_s: float = Field(default=25.0, gt=0, description="OMS_SHUTDOWN_DEADLINE_S")


@dataclass
class Runtime:
    """What a service's entrypoints get: the live connections of this process."""

    name: str
    schema: str
    engine: AsyncEngine
    producer: AIOKafkaProducer
    broker: KafkaBroker
    relay: OutboxRelay
    kafka: KafkaSettings
    # What a service's ``wire`` and ``background`` share in this process (e.g. allocation's
    # subscriber rings the doorbell of its refill loop), by a name the service chooses.
    shared: dict[str, Any] = field(default_factory=dict)

    def transaction(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One unit of work: a database transaction that wakes the outbox relay when it commits
        having written outbox rows (``libs.messaging.outbox.Transactions``)."""
        return Transactions(self.engine, self.relay).begin()


@dataclass
class ServiceDefinition:
    name: str  # e.g. "allocation"
    schema: str  # its PostgreSQL schema
    default_port: int
    versions_dir: Path
    # Registers subscribers on runtime.broker and returns the HTTP routers.
    wire: Callable[[Runtime], list[Any]]
    # Background tasks to run beside the subscribers (e.g. coalesced publishers).
    background: Callable[[Runtime], list[Callable[[], Any]]] | None = None
    # (method, path) -> who may call it (libs/service_host/auth.py); every route needs a rule.
    access: Mapping[tuple[str, str], Rule] = field(default_factory=dict)
    # Sets the service's own gauges from its schema (one connection, every metrics interval).
    gauges: Callable[[AsyncConnection], Awaitable[None]] | None = None
    # On shutdown, once the consumers have stopped and before the relay publishes what is left:
    # what a background task still holds for later (e.g. SKUs waiting for the next availability
    # window) is written out, so a drained instance leaves nothing pending.
    drain: Callable[[Runtime], Awaitable[None]] | None = None


def build_app(
    service: ServiceDefinition,
    host: HostSettings | None = None,
    kafka: KafkaSettings | None = None,
) -> FastAPI:
    host = host or HostSettings()
    kafka = kafka or KafkaSettings()
    # Before anything connects: refuses development secrets outside development.
    access = StaffAccess.configure(
        service.name, service.access, database_url=host.database_url, kafka_bootstrap=kafka.bootstrap
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(
            host.database_url, schema=service.schema, pool_size=host.db_pool_size, application_name=service.name
        )
        await _wait_for_database(engine)
        await upgrade_schema(engine, schema=service.schema, versions_dir=service.versions_dir)
        await ensure_topics(kafka, [*ALL_TOPICS, *(dlq(t) for t in ALL_TOPICS)])
        producer = create_producer(kafka, client_id=f"oms-{service.name}")
        await producer.start()
        broker = KafkaBroker(
            kafka.bootstrap,
            client_id=f"oms-{service.name}",
            acks="all",
            enable_idempotence=bool(kafka.idempotence),
            logger=logging.getLogger(f"oms.{service.name}.broker"),
            log_level=logging.DEBUG,
        )
        relay = OutboxRelay(engine, producer, schema=service.schema)
        runtime = Runtime(service.name, service.schema, engine, producer, broker, relay, kafka)
        access.include(app, service.wire(runtime))
        app.state.runtime = runtime
        relay.start()
        tasks = [asyncio.create_task(fn()) for fn in (service.background(runtime) if service.background else [])]
        tasks.append(asyncio.create_task(_prune_inbox_forever(engine, host), name=f"inbox-pruner-{service.name}"))
        lag = ConsumerLag(
            kafka.bootstrap,
            [(sub.group_id, sub.topic_names) for sub in map(_any, broker.subscribers) if getattr(sub, "group_id", None)],
            client_id=f"oms-{service.name}-metrics",
        )
        tasks += _metric_refreshers(service, runtime, lag, host.metrics_interval_s)
        groups = sorted({sub.group_id for sub in map(_any, broker.subscribers) if getattr(sub, "group_id", None)})
        log.info("%s migrated; joining consumer group(s) %s", service.name, ", ".join(groups))
        await broker.start()  # returns once the group has given this member its partitions
        tune_garbage_collector(host.gc_threshold)
        log.info("%s ready", service.name)
        try:
            yield
        finally:
            log.info("%s stopping", service.name)
            deadline = threading.Timer(host.shutdown_deadline_s, _exit_after_deadline, (service.name, host.shutdown_deadline_s))
            deadline.daemon = True
            deadline.start()
            try:  # leaving the group must not hold the drain up: offsets are committed per batch anyway
                await asyncio.wait_for(broker.stop(), host.consumer_stop_timeout_s)
            except TimeoutError:
                log.warning("%s: the consumer did not leave its group within %.0f s; going on with the drain "
                            "(the group drops this member when its session times out)",
                            service.name, host.consumer_stop_timeout_s)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if service.drain:
                try:
                    await service.drain(runtime)
                except Exception:  # noqa: BLE001 - what it held stays in the database for the next instance
                    log.exception("%s: drain of pending background work failed", service.name)
            await lag.close()
            await relay.stop(drain_s=5.0)  # publish what the drained batches committed
            await producer.stop()
            await engine.dispose()
            tracing.shutdown_tracing()
            deadline.cancel()
            log.info("%s stopped", service.name)  # drained: offsets committed, outbox relay and producer closed

    app = FastAPI(title=f"OMS {service.name}", lifespan=lifespan, version="1.0")
    app.add_middleware(CorrelationMiddleware)  # log lines of a request about an order carry its id
    app.add_middleware(HttpMetricsMiddleware, service=service.name)  # latency by route template
    tracing.instrument_app(app)  # FastAPI's server spans when tracing is on
    errors.install(app)  # 422 {field, problem}, 413 body limit, 503 + Retry-After during outages

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        return {"status": "live"}

    @app.get("/health/ready", tags=["health"])
    async def ready() -> Response:
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        if runtime is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        db_ok, kafka_ok = await _readiness(runtime)
        ok = db_ok and kafka_ok
        return JSONResponse(
            {"status": "ready" if ok else "not ready", "database": db_ok, "broker": kafka_ok},
            status_code=200 if ok else 503,
        )

    @app.get("/metrics", tags=["health"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def tune_garbage_collector(threshold: int) -> None:
    """Collect what start-up left, freeze the survivors (modules, settings, pools: never garbage)
    so no later pass walks them, and let the young generation grow to ``threshold`` objects."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 50, 100)


async def _readiness(runtime: Runtime) -> tuple[bool, bool]:
    db_ok, kafka_ok = await asyncio.gather(ping(runtime.engine), broker_reachable(runtime.kafka))
    READY.labels(runtime.name).set(1 if db_ok and kafka_ok else 0)
    return db_ok, kafka_ok


def _any(subscriber: object) -> Any:
    """A FastStream Kafka subscriber: its group_id and topic_names are not on the base type."""
    return subscriber


def _metric_refreshers(
    service: ServiceDefinition, runtime: Runtime, lag: ConsumerLag, interval: float
) -> list[asyncio.Task[None]]:
    """The gauges read from the database and broker, each on its own every ``interval``."""
    refreshers: dict[str, Callable[[], Awaitable[object]]] = {
        "consumer lag": lag.refresh,
        "outbox": lambda: refresh_outbox(runtime.engine, service.name),
        "readiness": lambda: _readiness(runtime),
    }
    if service.gauges is not None:
        gauges = service.gauges
        refreshers[service.name] = lambda: query_gauges(runtime.engine, gauges)
    return [
        asyncio.create_task(refresh_forever(name, fn, interval), name=f"metrics-{name}-{service.name}")
        for name, fn in refreshers.items()
    ]


async def _prune_inbox_forever(engine: AsyncEngine, host: HostSettings) -> None:
    """Keep the inbox as long as the topics keep records, not for ever (it grew without bound)."""
    while True:
        await asyncio.sleep(host.inbox_prune_interval_s)
        try:
            pruned = await prune_inbox(engine, host.inbox_retention_hours * 3600)
            if pruned:
                log.info("pruned %d inbox ids older than %.0f h", pruned, host.inbox_retention_hours)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - an outage: try again next interval
            log.warning("inbox pruning failed (%s); next try in %.0f s", type(exc).__name__, host.inbox_prune_interval_s)


async def _wait_for_database(engine: AsyncEngine, attempts: int = 60) -> None:
    for _ in range(attempts):
        if await ping(engine):
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("database not reachable")


def _exit_after_deadline(name: str, seconds: float) -> None:
    """A shutdown that hangs must not keep the process (and a deploy or `oms up --scale`) waiting:
    whatever it left is safe (committed outbox rows are published by the next relay, uncommitted
    offsets are redelivered and the inbox or natural keys make that harmless)."""
    log.error("%s: shutdown did not finish within %.0f s; exiting now", name, seconds)
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(1)


def run_service(service: ServiceDefinition) -> None:
    """Run one service in this process until SIGINT/SIGTERM (what ``oms run NAME`` does)."""
    import uvicorn

    from libs.service_host.loop import uvicorn_loop

    try:
        host = HostSettings()
    except ValueError as exc:  # a bad OMS_* value: name it (pydantic names the variable's field)
        print(f"{service.name}: bad configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    configure_logging(service.name, level=host.log_level, fmt=host.log_format)
    tracing.configure_tracing(service.name, instance_name(), endpoint=host.otlp_endpoint, file=host.trace_file)
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    port = int(os.environ.get(f"OMS_{service.name.upper()}_PORT", service.default_port))
    log.info("starting %s on %s:%d, database %s", service.name, host.http_host, port, _redact(host.database_url))
    try:
        app = build_app(service, host)
    except (InsecureConfiguration, ValueError) as exc:  # the message names variables, never secrets
        log.error("%s", exc)
        raise SystemExit(2) from None
    uvicorn.run(
        app,
        host=host.http_host,
        port=port,
        log_level="warning",
        access_log=False,
        log_config=None,  # uvicorn's lines go through our handler (format, context, masking)
        lifespan="on",
        loop=uvicorn_loop(),  # uvloop (libs/service_host/loop.py)
        timeout_graceful_shutdown=10,
    )


_ORDER_PATH = re.compile(r"^/v1/orders/([^/]+)")


class CorrelationMiddleware:
    """Binds the correlation id of a request about an order for its log lines: the
    ``X-Correlation-Id`` header, else the order id in the path (events of an order carry its id
    as correlation id unless the channel gave one). Plain ASGI: no per-request task or copy."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        correlation = None
        for name, value in scope["headers"]:
            if name == b"x-correlation-id":
                correlation = value.decode("latin-1")[:200]
                break
        if correlation is None:
            match = _ORDER_PATH.match(scope["path"])
            correlation = match.group(1) if match else None
        if correlation is None:
            await self.app(scope, receive, send)
            return
        token = CORRELATION_ID.set(correlation)
        try:
            await self.app(scope, receive, send)
        finally:
            CORRELATION_ID.reset(token)


def _redact(url: str) -> str:
    """Never log secrets: drop the password from a database URL."""
    from sqlalchemy.engine import make_url

    return make_url(normalise_url(url)).render_as_string(hide_password=True)
