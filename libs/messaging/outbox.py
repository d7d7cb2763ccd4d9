"""Transactional outbox and its relay.

A use case writes its state change and the events it causes in one transaction
(``write_outbox``); the relay publishes committed rows to Kafka and deletes them afterwards.

Why our own and not the ``faststream-outbox`` package (see docs/decisions.md): that package
leases rows to concurrent workers and dispatches them one by one, so two events of one key can
overtake each other and every row costs a broker round trip. Here exactly one relay per service
(the holder of a PostgreSQL advisory lock) publishes rows in commit-id order, in pipelined
batches; aiokafka keeps one in-flight batch per partition, so per-key order holds on Kafka and on
the embedded broker alike. A crash between publish and delete republishes a few rows; consumers'
inboxes make that harmless.

Promptness: a commit in the process that leads the relay wakes that relay directly; any other
writing transaction (another instance's, or one not begun through ``Transactions``) issues
``pg_notify`` (delivered at commit) and the leading relay LISTENs. Either way rows leave within
milliseconds of the commit; a slow poll is only the fallback.

Packed rows (``outbox_batches``): one ``write_outbox`` call is ONE row holding all its messages
(``pack``), not one row per message. A batch of 500 orders used to insert ~1,500 outbox rows in
allocation (results and availability) and delete them again after publishing; now it is one
insert and one delete, and no array parameters (asyncpg checks every array element in Python).
Measured: ~50 -> ~17 us of Python and ~16 -> ~7 us of PostgreSQL per event, writing and relaying
(docs/benchmark.md, fifth wave). Rows share ``outbox_id_seq`` with the per-message ``outbox``
table, which only versions before the packed rows wrote (the relay still publishes what they left,
merged by id); the view ``outbox_messages`` shows both, one row per message, for people and tests.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter as PrometheusCounter
from prometheus_client import Gauge
from sqlalchemy import BigInteger, Column, DateTime, LargeBinary, MetaData, String, Table, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from libs.contracts.envelope import Envelope, encode_event
from libs.messaging import fault_hooks
from libs.messaging.partitioner import KeyPartitioner
from libs.observability import tracing

log = logging.getLogger(__name__)

OUTBOX_PUBLISHED = PrometheusCounter("oms_outbox_published_total", "Events relayed from the outbox to Kafka", ["topic"])
OUTBOX_PENDING = Gauge("oms_outbox_pending", "Events taken from the outbox at the last relay pass")
RELAY_LEADER = Gauge("oms_outbox_relay_leader", "1 when this process is the service's outbox relay")


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, primary_key=True, autoincrement=True),
        Column("topic", String(200), nullable=False),
        Column("key", String(400), nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    topic: str
    key: str
    envelope: Envelope


def notify_channel(schema: str) -> str:
    return f"oms_outbox_{schema}"


# One round trip: the packed row, and a notification that PostgreSQL delivers at commit to the
# relay of whichever instance holds the leader lock (LISTEN in ``OutboxRelay._lead``).
_INSERT = text(
    "WITH added AS (INSERT INTO outbox_batches (messages, count) VALUES (:messages, :count) RETURNING 1) "
    "SELECT pg_notify(:ch, '') FROM added"
)
# The same without the notification, for a transaction whose own process leads the relay: its
# relay is woken directly after the commit (``Transactions``). A NOTIFY makes every committing
# transaction of the whole PostgreSQL server queue for one lock, and wakes every listening
# backend: in one `steady` run 13 commits waited for it, up to 52 ms (docs/benchmark.md, tenth wave).
_INSERT_QUIET = text("INSERT INTO outbox_batches (messages, count) VALUES (:messages, :count)")

# Set on a connection whose transaction wrote outbox rows (``Transactions`` reads and clears it).
OUTBOX_WRITTEN = "oms_outbox_written"
# Set by ``Transactions`` on a connection whose process leads the relay: no pg_notify needed.
# Absent (any other connection), ``write_outbox`` notifies: never a row left waiting for a poll.
RELAY_IS_LOCAL = "oms_outbox_relay_is_local"

# The packed outbox of a service schema (each service's migration runs it; see the module doc).
# Applied migrations run it as it stands: never edit it; change the outbox with a new migration.
# ``messages``: JSON ``[[topic, key, headers, value], ...]`` with each value (itself our JSON
# envelope) as a string, kept as bytes: the relay never needs PostgreSQL to parse it, and the view
# can still show every message.
PACKED_OUTBOX_DDL = """
    CREATE TABLE outbox_batches (
        id bigint PRIMARY KEY DEFAULT nextval('outbox_id_seq'),
        messages bytea NOT NULL,
        count int NOT NULL,
        created_at timestamptz NOT NULL DEFAULT now()
    );
    ALTER TABLE outbox_batches ALTER COLUMN messages SET STORAGE EXTERNAL;
    CREATE VIEW outbox_messages AS
        SELECT id, 1::bigint AS position, topic, key, value, headers, created_at FROM outbox
        UNION ALL
        SELECT b.id, m.position, m.message ->> 0, m.message ->> 1, convert_to(m.message ->> 3, 'UTF8'),
               m.message -> 2, b.created_at
        FROM outbox_batches b,
             jsonb_array_elements(convert_from(b.messages, 'UTF8')::jsonb) WITH ORDINALITY AS m(message, position);
"""
PACKED_OUTBOX_DROP = "DROP VIEW outbox_messages;\nDROP TABLE outbox_batches;\n"


def _headers(m: OutboxMessage) -> dict[str, str]:
    if not tracing.STATE.on:
        return {"event_type": m.envelope.event_type, "correlation_id": m.envelope.correlation_id}
    # tracing: the row carries its traceparent to the relay and Kafka
    return {"event_type": m.envelope.event_type, "correlation_id": m.envelope.correlation_id,
            **tracing.outbox_headers(m.topic, m.envelope.correlation_id)}


def pack(messages: Sequence[OutboxMessage]) -> bytes:
    """The ``messages`` column of one packed row."""
    return _packed((m.topic, m.key, _headers(m), encode_event(m.envelope)) for m in messages)


def _packed(messages: Iterable[tuple[str, str, dict[str, str], bytes]]) -> bytes:
    """(topic, key, headers, value) of each message, in order, as a packed row's column: the one
    place that writes the format ``unpack`` reads."""
    return orjson.dumps([[topic, key, headers, value.decode()] for topic, key, headers, value in messages])


def unpack(packed: bytes) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(topic, key, headers, value) of each message of a packed row, in the order written."""
    return [(topic, key, headers, value.encode()) for topic, key, headers, value in orjson.loads(packed)]


async def write_outbox(conn: AsyncConnection, schema: str, messages: Sequence[OutboxMessage]) -> None:
    """Add ``messages`` to the outbox inside the caller's transaction, in the given order (one
    packed row)."""
    if not messages:
        return
    if conn.info.get(RELAY_IS_LOCAL):
        await conn.execute(_INSERT_QUIET, {"messages": pack(messages), "count": len(messages)})
    else:
        await conn.execute(_INSERT, {"messages": pack(messages), "count": len(messages), "ch": notify_channel(schema)})
    conn.info[OUTBOX_WRITTEN] = True


class Transactions:
    """The service's units of work: ``async with transactions.begin() as conn`` is one database
    transaction; when it commits having written outbox rows, the relay of this process is woken
    at once. While this process does not lead the relay, the transaction also issues a
    ``pg_notify`` for the instance that does. Use cases never wake the relay themselves."""

    def __init__(self, engine: AsyncEngine, relay: OutboxRelay) -> None:
        self._engine = engine
        self._relay = relay

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        async with self._engine.begin() as conn:
            # Leading now: the wake-up below reaches the relay. Should the lead pass to another
            # instance before the commit, that relay finds the rows at its next poll (1 s).
            conn.info[RELAY_IS_LOCAL] = self._relay.is_leader
            try:
                yield conn
            finally:
                wrote = conn.info.pop(OUTBOX_WRITTEN, False)
                conn.info.pop(RELAY_IS_LOCAL, None)
        if wrote:
            self._relay.notify()


class OutboxRelay:
    """Publishes committed outbox rows in order; one active relay per service (leader lock)."""

    def __init__(
        self,
        engine: AsyncEngine,
        producer: AIOKafkaProducer,
        *,
        schema: str,
        batch_size: int = 2000,
        poll_interval: float = 1.0,
    ) -> None:
        self._engine = engine
        self._producer = producer
        self._schema = schema
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._wake = asyncio.Event()
        self._lock_id = zlib.crc32(f"oms-outbox-relay-{schema}".encode())
        self._task: asyncio.Task[None] | None = None
        self._partitioner = KeyPartitioner()  # partitioner.py: the default, faster
        self.is_leader = False

    def notify(self) -> None:
        """Ask for a prompt pass (after a local commit); cheap, never blocks."""
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self._schema}")

    async def stop(self, drain_s: float = 0.0) -> None:
        """Stop relaying. ``drain_s`` > 0 (shutdown, after the consumers stopped): the leader first
        publishes what is committed, for up to that long, so the next instance starts clean."""
        if self._task and self.is_leader and drain_s > 0:
            try:
                await asyncio.wait_for(self._until_empty(), drain_s)
            except TimeoutError:
                log.warning("outbox not empty after %.0f s of draining; the next relay publishes the rest", drain_s)
            except Exception:  # noqa: BLE001 - the database is gone: the rows wait for the next relay
                log.warning("outbox drain failed; the next relay publishes the rest")
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass

    async def _until_empty(self) -> None:
        while self.is_leader and self._task and not self._task.done():
            async with self._engine.connect() as conn:
                if not (await conn.execute(text("SELECT EXISTS (SELECT 1 FROM outbox) OR EXISTS (SELECT 1 FROM outbox_batches)"))).scalar():
                    return
            self._wake.set()
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        backoff = 0.2
        while True:
            try:
                await self._lead()
                backoff = 0.2
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the relay must outlive broker and database outages
                log.exception("outbox relay failed; retrying in %.1fs", backoff)
                RELAY_LEADER.set(0)
                self.is_leader = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _lead(self) -> None:
        async with self._engine.connect() as lock_conn:
            got = (await lock_conn.execute(text("SELECT pg_try_advisory_lock(:id)"), {"id": self._lock_id})).scalar()
            await lock_conn.commit()
            if not got:
                await asyncio.sleep(2.0)  # another instance relays; take over if it dies
                return
            self.is_leader = True
            RELAY_LEADER.set(1)
            raw = await lock_conn.get_raw_connection()
            pg = raw.driver_connection
            channel = notify_channel(self._schema)

            def on_notify(*_: object) -> None:
                self._wake.set()

            await pg.add_listener(channel, on_notify)  # type: ignore[union-attr]
            try:
                while True:
                    sent = await self._relay_once()
                    if sent < self._batch_size:
                        try:
                            await asyncio.wait_for(self._wake.wait(), self._poll_interval)
                        except TimeoutError:
                            # also proves the lock connection is alive
                            await lock_conn.execute(text("SELECT 1"))
                            await lock_conn.commit()
                        self._wake.clear()
            finally:
                self.is_leader = False
                RELAY_LEADER.set(0)
                try:
                    await pg.remove_listener(channel, on_notify)  # type: ignore[union-attr]
                    await lock_conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": self._lock_id})
                    await lock_conn.commit()
                except Exception:  # noqa: BLE001 - connection may already be gone
                    pass

    async def _send_in_batches(self, messages: Sequence[_Pending]) -> tuple[list[int], BaseException | None]:
        """Publish the messages as record batches, one partition's batches one after the other;
        return the positions (in ``messages``) the broker acknowledged and the first error.

        Record batches instead of one ``send()`` per message: half the producer CPU (measured 25
        -> 12 us per record). Partitions come from the murmur2 partitioner ``send()`` uses too
        (``KeyPartitioner``), so a key lands where any other Kafka client would put it. Batches go out in waves: the
        k-th batch of every partition together, the next wave only after the broker answered.
        When a batch fails for good, nothing later of that partition is sent in this pass and
        only acknowledged messages leave the outbox, so the failed ones go out again before
        anything that followed them: per-key order holds even when a produce fails (a later batch
        of the same partition could otherwise be acknowledged ahead of the failed one)."""
        partitions: dict[str, list[int]] = {}
        queues: dict[tuple[str, int], list[tuple[Any, list[int]]]] = {}
        for position, m in enumerate(messages):
            topic = m.topic
            if topic not in partitions:
                partitions[topic] = sorted(await self._producer.partitions_for(topic))
            key = m.key.encode()
            all_partitions = partitions[topic]
            tp = (topic, self._partitioner(key, all_partitions, all_partitions))
            headers = [(k, str(v).encode()) for k, v in m.headers.items()]
            batches = queues.setdefault(tp, [])
            if not batches or batches[-1][0].append(key=key, value=m.value, timestamp=None, headers=headers) is None:
                batch = self._producer.create_batch()
                if batch.append(key=key, value=m.value, timestamp=None, headers=headers) is None:
                    raise ValueError(f"a message of outbox row {m.row_id} does not fit in an empty record batch")
                batches.append((batch, [position]))
            else:
                batches[-1][1].append(position)
        confirmed: list[int] = []
        error: BaseException | None = None
        wave = 0
        while True:
            sending = [(tp, batches[wave]) for tp, batches in queues.items() if wave < len(batches)]
            if not sending:
                return confirmed, error
            futures = [await self._producer.send_batch(b, tp[0], partition=tp[1]) for tp, (b, _) in sending]
            outcomes = await asyncio.gather(*futures, return_exceptions=True)
            for (tp, (_, positions)), outcome in zip(sending, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    error = error or outcome
                    del queues[tp]  # nothing after a failed batch of this partition, this pass
                else:
                    confirmed.extend(positions)
            wave += 1

    async def _pending(self, conn: AsyncConnection) -> tuple[list[_Pending], list[Any]]:
        """The oldest rows of both tables, merged by id, and their messages: at least one row,
        then rows while the messages stay within ``batch_size``."""
        rows = (await conn.execute(_PENDING, {"n": self._batch_size})).all()
        messages: list[_Pending] = []
        taken: list[Any] = []
        for row in rows:
            if row.packed is None:
                unpacked = [(row.topic, row.key, row.headers, bytes(row.value))]
            else:
                unpacked = unpack(bytes(row.packed))
            if taken and len(messages) + len(unpacked) > self._batch_size:
                break
            taken.append(row)
            messages += [_Pending(row.id, i, *m) for i, m in enumerate(unpacked)]
        return messages, taken

    async def _relay_once(self) -> int:
        # Autocommit: each statement commits on its own, with no BEGIN and COMMIT round trips
        # around the pass (one pass per committed batch; most batches are small). Nothing here
        # needs the statements together: committed rows do not change, one relay runs (the lock),
        # and a row is deleted (or rewritten to what is left) only after the broker took it.
        async with self._engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            messages, rows = await self._pending(conn)
            OUTBOX_PENDING.set(len(messages))
            if not messages:
                return 0
            confirmed, error = await self._send_in_batches(messages)
            for topic, n in Counter(messages[position].topic for position in confirmed).items():
                OUTBOX_PUBLISHED.labels(topic).inc(n)
            fault_hooks.relay_published(len(confirmed))  # test hook, inert unless its env var is set
            legacy, packed, rewrite = settle(rows, messages, confirmed)
            for row_id, rest in rewrite.items():  # a produce failed part way: keep what the broker did not take
                await conn.execute(text("UPDATE outbox_batches SET messages = :m, count = :n WHERE id = :id"),
                                   {"m": _packed((m.topic, m.key, m.headers, m.value) for m in rest),
                                    "n": len(rest), "id": row_id})
            if legacy:
                await conn.execute(text("DELETE FROM outbox WHERE id = ANY(:ids)"), {"ids": legacy})
            if packed:
                await conn.execute(text("DELETE FROM outbox_batches WHERE id = ANY(:ids)"), {"ids": packed})
            if error is not None:
                raise error  # the relay backs off; the unacknowledged messages go out first next time
            return len(messages)


class _Pending(NamedTuple):
    """One message waiting in the outbox: its row, its place in the row, what goes to Kafka."""

    row_id: int
    place: int
    topic: str
    key: str
    headers: dict[str, str]
    value: bytes


def settle(rows: Sequence[Any], messages: Sequence[_Pending], confirmed: Sequence[int],
           ) -> tuple[list[int], list[int], dict[int, list[_Pending]]]:
    """What leaves the outbox after a pass: the per-message rows the broker acknowledged, the
    packed rows it acknowledged whole, and for a packed row acknowledged in part (a produce
    failed) the messages that must stay. A partly published row is rewritten, not kept whole: a
    message the broker has must not go out again after later messages of its partition."""
    done: dict[int, set[int]] = {}
    for position in confirmed:
        done.setdefault(messages[position].row_id, set()).add(messages[position].place)
    legacy, packed, rewrite = [], [], {}
    for row in rows:
        acknowledged = done.get(row.id, set())
        if row.packed is None:
            if acknowledged:
                legacy.append(row.id)
        elif len(acknowledged) == row.count:
            packed.append(row.id)
        elif acknowledged:
            rewrite[row.id] = [m for m in messages if m.row_id == row.id and m.place not in acknowledged]
    return legacy, packed, rewrite


# The oldest rows of both tables (the per-message ``outbox`` only holds what versions before the
# packed rows wrote), in id order: one shared sequence, so this is the order of the commits' writes.
_PENDING = text(
    "SELECT id, topic, key, value, headers, NULL::bytea AS packed, 1 AS count FROM"
    " (SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT :n) o"
    " UNION ALL SELECT id, NULL, NULL, NULL, NULL, messages, count FROM"
    " (SELECT id, messages, count FROM outbox_batches ORDER BY id LIMIT 64) b"
    " ORDER BY id LIMIT :n"
)
