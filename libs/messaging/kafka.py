"""Producer construction and topic creation; the same code works on Apache Kafka and Tansu."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from libs.messaging.partitioner import KeyPartitioner
from libs.messaging.settings import KafkaSettings

log = logging.getLogger(__name__)


def create_producer(settings: KafkaSettings, client_id: str) -> AIOKafkaProducer:
    """acks=all always; idempotence where the broker supports it (see KafkaSettings)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=settings.idempotence,
        linger_ms=settings.linger_ms,
        max_batch_size=256 * 1024,
        request_timeout_ms=30_000,
        retry_backoff_ms=100,
        partitioner=KeyPartitioner(),  # aiokafka's default, computed faster (partitioner.py)
    )


async def ensure_topics(settings: KafkaSettings, topics: list[str], *, attempts: int = 30) -> None:
    """Create missing topics (and their dead-letter topics' callers pass them in explicitly)."""
    for attempt in range(attempts):
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="oms-admin")
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in topics if t not in existing]
            if missing:
                try:
                    await admin.create_topics(
                        [NewTopic(t, settings.partitions, settings.replication_factor) for t in missing]
                    )
                except TopicAlreadyExistsError:
                    pass  # another instance created it first
            return
        except (KafkaError, OSError) as exc:
            log.warning("broker not ready for topic creation (%s), attempt %d", exc, attempt + 1)
            await asyncio.sleep(min(0.2 * (attempt + 1), 2.0))
        finally:
            await admin.close()
    raise RuntimeError(f"could not create topics on {settings.bootstrap}")


async def broker_reachable(settings: KafkaSettings) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap, client_id="oms-ready")
    try:
        await asyncio.wait_for(admin.start(), 3)
        await asyncio.wait_for(admin.list_topics(), 3)
        return True
    except Exception:  # noqa: BLE001 - readiness only reports
        return False
    finally:
        await admin.close()


async def group_states(bootstrap: str, group_ids: list[str]) -> dict[str, str]:
    """The state (Stable, Empty, PreparingRebalance, CompletingRebalance, Dead) of each consumer
    group, as its coordinator reports it. (By id: Tansu answers ListGroups with no groups.)"""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id="oms-groups")
    try:
        await admin.start()
        states: dict[str, str] = {}
        for response in await admin.describe_consumer_groups(group_ids):
            for error_code, group_id, state, *_ in response.groups:
                states[group_id] = state if error_code == 0 else f"error {error_code}"
        return states
    finally:
        await admin.close()
