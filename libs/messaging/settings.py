"""Kafka client settings. Every delivery-relevant default is stated here, not inherited."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED_KAFKA = "127.0.0.1:19092"


class KafkaSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OMS_KAFKA_", extra="ignore")

    bootstrap: str = Field(default=EMBEDDED_KAFKA, description="OMS_KAFKA_BOOTSTRAP")
    # Idempotent producers need broker support (Apache Kafka has it; the embedded Tansu broker
    # cannot start one). Unset: on for any configured broker, off for the embedded default.
    # Per-key order does not depend on it: see OutboxRelay.
    idempotence: bool | None = Field(default=None, description="OMS_KAFKA_IDEMPOTENCE")
    partitions: int = Field(default=6, description="partitions for topics the services create")
    replication_factor: int = 1
    linger_ms: int = 2
    # Consumer batches: bigger batches mean fewer transactions. A batch is handed over as soon as
    # records are there; the wait is how long an empty poll waits, and FastStream sleeps as long
    # again after one, so it is what an idle consumer's loop costs against at most that much
    # latency per hop (5 -> 25 ms: the four idle services 0.30-0.37 -> 0.26 cores; with the
    # fetch wait below, the idle system 0.54-0.59 -> 0.34 cores: docs/benchmark.md, fifth wave).
    max_batch: int = 500
    batch_wait_ms: int = 25
    # How long the broker may hold a fetch open when it has nothing. Apache Kafka answers as
    # soon as data arrives; the embedded Tansu broker waits the whole time, so this is the
    # latency a hop adds there, and against it what every consumer's polling costs: an idle
    # system (four services, broker) used 0.54-0.59 of the two cores at 20 ms, 0.40 at 50 ms,
    # 0.22 at 100 ms (with the 25 ms poll wait), and under load a longer wait gives bigger batches:
    # the steady benchmark measured 2.5 ms CPU per order at 100 ms against 3.3 at 50 ms, and no
    # further gain at 200 ms (docs/benchmark.md, fifth wave).
    fetch_max_wait_ms: int = 100
    # Appended to every consumer group name. A new suffix is a new group, which starts at the
    # earliest offset: the way to replay a service's input topics from offset 0.
    group_suffix: str = Field(default="", description="OMS_KAFKA_GROUP_SUFFIX")
    # One consumer (group <service>) over all a service's topics, or one per topic (group
    # <service>.<topic>, the 1.0 layout). Changing it starts new groups: docs/decisions.md 2.
    consumer_per_topic: bool = Field(default=False, description="OMS_KAFKA_CONSUMER_PER_TOPIC")
    # Handling retries before a message goes to <topic>.dlq.
    max_attempts: int = 4
    retry_backoff_ms: int = 100

    @model_validator(mode="after")
    def _default_idempotence(self) -> KafkaSettings:
        if self.idempotence is None:
            self.idempotence = self.bootstrap != EMBEDDED_KAFKA
        return self
