"""The metrics that answer the on-call questions (issue 12), Prometheus naming (units in the
name, ``_total`` for counters). Catalogue with the questions they answer: docs/operations.md.

Cheap by construction: gauges that need the database or the broker (consumer lag, outbox
backlog, backorder queue) are refreshed by one background task every ``OMS_METRICS_INTERVAL_S``
seconds (default 5), never per scrape and never per message; a scrape only reads memory. The
hot path pays for one histogram observation per HTTP request and nothing per message.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import Gauge, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "oms_consumer_lag_messages",
    "Records of the partition not yet committed by the consumer group: end offset minus committed "
    "offset (minus the first offset when the group has committed nothing). Read with the partitions "
    "named: the embedded Tansu broker answers an OffsetFetch for all of a group's partitions with a "
    "response aiokafka cannot decode; with them it is right, as on Apache Kafka. Every instance of a "
    "service reports its groups: aggregate with max by (group, topic, partition)",
    ["group", "topic", "partition"],
)
CONSUMER_LAG_UPDATED = Gauge(
    "oms_consumer_lag_updated_timestamp_seconds", "When oms_consumer_lag_messages was last read (Unix time)"
)
OUTBOX_BACKLOG = Gauge("oms_outbox_backlog_rows", "Events waiting in the service's outbox", ["service"])
OUTBOX_OLDEST_AGE = Gauge(
    "oms_outbox_oldest_age_seconds", "Age of the oldest row waiting in the outbox (0 when empty)", ["service"]
)
READY = Gauge(
    "oms_service_ready",
    "1 when the instance reaches its database and the broker (what /health/ready answers), else 0; "
    "set by every readiness probe and every metrics interval",
    ["service"],
)
HTTP_LATENCY = Histogram(
    "oms_http_request_duration_seconds",
    "HTTP requests by route template (unmatched paths as 'unmatched'), method and status",
    ["service", "method", "route", "status"],
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


class HttpMetricsMiddleware:
    """Plain ASGI: times every request and labels it with the matched route's template."""

    def __init__(self, app: Any, service: str) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_LATENCY.labels(self.service, scope["method"], route, str(status[0])).observe(
                time.perf_counter() - started
            )


async def refresh_forever(name: str, refresh: Callable[[], Awaitable[object]], interval: float) -> None:
    """Run ``refresh`` every ``interval`` seconds until cancelled; outages only log."""
    while True:
        try:
            await refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the broker or database is away: keep the last values
            log.debug("%s metrics not refreshed: %s", name, type(exc).__name__)
        await asyncio.sleep(interval)


async def refresh_outbox(engine: AsyncEngine, service: str) -> None:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT (SELECT count(*) FROM outbox) + (SELECT COALESCE(sum(count), 0) FROM outbox_batches),"
                     " COALESCE(EXTRACT(EPOCH FROM now() - LEAST((SELECT min(created_at) FROM outbox),"
                     " (SELECT min(created_at) FROM outbox_batches))), 0)")
            )
        ).one()
    OUTBOX_BACKLOG.labels(service).set(row[0])
    OUTBOX_OLDEST_AGE.labels(service).set(max(float(row[1]), 0.0))


async def query_gauges(engine: AsyncEngine, fill: Callable[[AsyncConnection], Awaitable[None]]) -> None:
    """Run a service's own gauge queries (e.g. allocation's backorder queue) on one connection."""
    async with engine.connect() as conn:
        await fill(conn)


class ConsumerLag:
    """Reads committed and end offsets of the given (group, topics) with a client of its own."""

    def __init__(self, bootstrap: str, groups: Iterable[tuple[str, Iterable[str]]], client_id: str) -> None:
        self._bootstrap = bootstrap
        self._groups = [(group, sorted(set(topics))) for group, topics in groups]
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None

    async def refresh(self) -> None:
        if self._consumer is None or self._admin is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self._bootstrap, client_id=self._client_id,
                                        enable_auto_commit=False)
            admin = AIOKafkaAdminClient(bootstrap_servers=self._bootstrap, client_id=self._client_id)
            await consumer.start()
            try:
                await admin.start()
            except BaseException:
                await consumer.stop()
                raise
            self._consumer, self._admin = consumer, admin
        consumer, admin = self._consumer, self._admin
        await consumer.topics()  # refreshes the metadata: partitions added since
        for group, topics in self._groups:
            partitions = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or ())]
            if not partitions:
                continue
            # partitions named: Tansu's answer for a whole group cannot be decoded (docs/operations.md)
            committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
            end = await consumer.end_offsets(partitions)
            first = await consumer.beginning_offsets(partitions)
            for tp in partitions:
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else first[tp]
                CONSUMER_LAG.labels(group, tp.topic, str(tp.partition)).set(max(end[tp] - done, 0))
        CONSUMER_LAG_UPDATED.set(time.time())

    async def close(self) -> None:
        for client in (self._admin, self._consumer):
            if client is not None:
                try:
                    await (client.close() if isinstance(client, AIOKafkaAdminClient) else client.stop())
                except Exception:  # noqa: BLE001 - closing after an outage
                    pass
        self._consumer = self._admin = None
