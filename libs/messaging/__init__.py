"""Kafka plumbing shared by the services: safe producer and consumer settings, topic creation,
the transactional outbox and its relay, the inbox, and batch handling with retries and DLQ."""

from libs.messaging.inbox import claim_new_events, inbox_table, prune_inbox
from libs.messaging.outbox import OutboxMessage, OutboxRelay, outbox_table, write_outbox
from libs.messaging.settings import KafkaSettings

__all__ = [
    "KafkaSettings",
    "OutboxMessage",
    "OutboxRelay",
    "claim_new_events",
    "inbox_table",
    "outbox_table",
    "prune_inbox",
    "write_outbox",
]
