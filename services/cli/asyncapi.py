"""Generate the contract documents: AsyncAPI 3.0 per service (and OpenAPI for its HTTP routes).

Each service is built exactly as the host builds it, but nothing connects: the engine is created
(SQLAlchemy connects lazily), the aiokafka producer and the FastStream broker are constructed and
never started, and ``SERVICE.wire(runtime)`` registers the real subscribers. FastStream's
generator then describes them.

Two things FastStream cannot see are added here from ``libs.contracts``:

* what each service PUBLISHES: events leave through the transactional outbox (plain aiokafka),
  not through FastStream publishers, so doc-only publishers are registered on the throw-away
  broker (``PUBLISHES`` below; keep it in step with docs/contract.md);
* message payloads: subscribers receive the raw batch and decode envelopes themselves, so
  FastStream would show an empty payload. Every message of a topic gets the topic's schema
  (the envelope with ``data`` per event type, discriminated by ``event_type``), its headers,
  its key and, on receive operations, the consumer group.

Usage: ``python -m services.cli.asyncapi [OUT_DIR]`` (default ``docs/asyncapi``). Services
whose module cannot be imported yet are skipped with a note. YAML is written too when PyYAML is
installed.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import re
import sys
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from fastapi import FastAPI
from pydantic import BaseModel, Field, TypeAdapter, create_model

from libs.contracts import events as ev
from libs.contracts.envelope import Envelope
from libs.contracts.orders import ChannelOrder
from libs.contracts.topics import Topic, dlq
from libs.service_host.auth import DEV_STAFF_TOKENS, ChannelKeys, StaffAccess, StaffTokens

log = logging.getLogger(__name__)

SERVICES = ("order_intake", "inventory", "allocation", "fulfillment")
DOC_BOOTSTRAP = "kafka:9092"  # the server named in the documents (docker-compose.yml)
DOC_DATABASE = "postgresql+asyncpg://oms@localhost:5432/oms"  # never connected to
DEV_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:15432/oms"  # never connected to either
DEV_BOOTSTRAP = "127.0.0.1:9092"
API_VERSION = "1.0.0"

# Topic -> (message key, event models carried). ChannelOrder travels bare (it is what connectors
# write); every other topic carries envelopes.
TOPICS: dict[str, tuple[str, list[type[BaseModel]]]] = {
    Topic.CHANNEL_ORDERS: ("{channel}:{external_id}", [ChannelOrder]),
    Topic.CHANNEL_ORDERS_REJECTED: ("{channel}:{external_id} (as received)", [ev.ChannelOrderRejected]),
    Topic.ORDERS: ("order_id", [ev.OrderPlaced, ev.OrderCancelled, ev.OrderModified, ev.OrderHeld, ev.OrderHoldReleased]),
    Topic.INVENTORY: (
        "sku (StockAdjusted, PurchaseOrderChanged) or location_id (LocationChanged)",
        [ev.StockAdjusted, ev.LocationChanged, ev.PurchaseOrderChanged],
    ),
    Topic.ALLOCATIONS: (
        "order_id",
        [
            ev.OrderAllocated,
            ev.OrderBackordered,
            ev.AllocationReleased,
            ev.OrderReallocated,
            ev.AllocationPacked,
            ev.PackRejected,
            ev.AllocationShipped,
            ev.AllocationCancelled,
        ],
    ),
    Topic.FULFILLMENT: (
        "order_id",
        [ev.PackRequested, ev.OrderPacked, ev.OrderShipped, ev.ReturnReceived, ev.DropshipRefused],
    ),
    Topic.AVAILABILITY: ("sku", [ev.AvailabilityChanged]),
    Topic.SHOPIFY_INVENTORY_LEVELS: ("{shop}:{inventory_item_id}", [ev.ShopifyInventoryLevel]),
    Topic.DROPSHIP: ("location_id (the supplier's dropship location)", [ev.DropshipRequested]),
}

# What each service writes to its outbox (and so to Kafka).
PUBLISHES: dict[str, dict[str, str]] = {
    "order_intake": {
        Topic.ORDERS: "Order lifecycle: placed, cancelled (whole order or lines), modified.",
        Topic.CHANNEL_ORDERS_REJECTED: "Channel orders that failed validation, with every problem found.",
        Topic.SHOPIFY_INVENTORY_LEVELS: "The Shopify connector: availability of mapped SKUs at mapped locations as"
        " Shopify inventory levels (the body of inventory_levels/set), for the sender that calls Shopify.",
    },
    "inventory": {
        Topic.INVENTORY: "Every stock ledger change (delta, absolute on_hand, per-position seq) and "
        "location changes.",
    },
    "allocation": {
        Topic.ALLOCATIONS: "A full snapshot of the order's lines and live allocations after every change; "
        "`version` grows by one per order.",
        Topic.AVAILABILITY: "Available-to-promise per SKU (total, per location, per channel), coalesced.",
    },
    "fulfillment": {
        Topic.FULFILLMENT: "Pack requests, packed and shipped shipments, returns received, dropship refusals.",
        Topic.DROPSHIP: "Dropship requests: the lines a dropship supplier is asked to ship, with the ship-to"
        " address and the reference it answers with.",
    },
}

_ENVELOPE_HEADERS = {
    "type": "object",
    "properties": {
        "event_type": {"type": "string", "description": "same as the envelope's event_type"},
        "correlation_id": {"type": "string", "description": "follows an order through all services"},
    },
    "required": ["event_type", "correlation_id"],
}
_CHANNEL_ORDER_HEADERS = {
    "type": "object",
    "properties": {
        "correlation_id": {"type": "string", "description": "optional; defaults to the message key"},
    },
}
_DLQ_HEADERS = {
    "type": "object",
    "description": "The original headers plus why the record failed.",
    "properties": {
        "dlq.error": {"type": "string"},
        "dlq.error_type": {"type": "string"},
        "dlq.topic": {"type": "string"},
        "dlq.partition": {"type": "string"},
        "dlq.offset": {"type": "string"},
        "dlq.attempts": {"type": "string"},
        "dlq.consumer_group": {"type": "string"},
        "dlq.failed_at": {"type": "string", "format": "date-time"},
    },
}


def _envelope_of(event: type[BaseModel]) -> type[BaseModel]:
    name = event.__name__
    return create_model(
        f"{name}Envelope",
        __base__=Envelope,
        __doc__=f"Envelope carrying {name} (`event_type` is also the Kafka header of that name).",
        event_type=(Literal[name], ...),  # type: ignore[valid-type,arg-type]
        data=(event, ...),
    )


def _payload_type(topic: str) -> Any:
    models = TOPICS[topic][1]
    if topic == Topic.CHANNEL_ORDERS:
        return ChannelOrder
    wrapped = [_envelope_of(m) for m in models]
    if len(wrapped) == 1:
        return wrapped[0]
    return Annotated[Union[tuple(wrapped)], Field(discriminator="event_type")]  # noqa: UP007


def _payload_schemas() -> tuple[dict[str, Any], dict[str, str]]:
    """Component schemas for every topic payload, and the schema name of each topic."""
    components: dict[str, Any] = {}
    names: dict[str, str] = {}
    for topic in TOPICS:
        schema = TypeAdapter(_payload_type(topic)).json_schema(ref_template="#/components/schemas/{model}")
        components.update(schema.pop("$defs", {}))
        name = f"{topic}.payload"
        schema.setdefault("title", f"Message value on {topic}")
        components[name] = schema
        names[topic] = name
    return components, names


async def _build_service(name: str) -> tuple[Any, list[Any], Any] | None:
    """Import the service, wire it onto unconnected objects; None when not importable yet."""
    from aiokafka import AIOKafkaProducer
    from faststream.kafka import KafkaBroker

    from libs.database import create_engine
    from libs.messaging.outbox import OutboxRelay
    from libs.messaging.settings import KafkaSettings
    from libs.service_host import Runtime

    try:
        module = importlib.import_module(f"services.{name}.service")
        service = module.SERVICE
    except Exception as exc:  # noqa: BLE001 - a service still being written is skipped, not fatal
        log.warning("skipping %s: %s: %s", name, type(exc).__name__, exc)
        return None
    kafka = KafkaSettings(bootstrap=DOC_BOOTSTRAP, idempotence=True)
    engine = create_engine(DOC_DATABASE, schema=service.schema, pool_size=1, application_name="oms-docs")
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, client_id=f"oms-{name}")  # never started
    broker = KafkaBroker(
        kafka.bootstrap,
        client_id=f"oms-{name}",
        specification_url=DOC_BOOTSTRAP,
        description="Apache Kafka (docker-compose.yml, deploy/k8s); embedded Tansu broker in development.",
    )
    relay = OutboxRelay(engine, producer, schema=service.schema)  # never started
    runtime = Runtime(service.name, service.schema, engine, producer, broker, relay, kafka)
    routers = service.wire(runtime)
    return service, routers, (broker, engine, producer, kafka)


def served_app(service: Any, routers: list[Any]) -> FastAPI:
    """The app ``libs.service_host.build_app`` serves for ``service``, with ``routers`` included as
    its lifespan includes them (each route behind its access rule), without starting it: its
    ``openapi()`` is the document the service serves at /openapi.json."""
    from libs.messaging.settings import KafkaSettings
    from libs.service_host import HostSettings, build_app

    # Development settings on this machine: build_app checks them, never connects with them.
    app = build_app(service, HostSettings(database_url=DEV_DATABASE), KafkaSettings(bootstrap=DEV_BOOTSTRAP))
    StaffAccess(service.name, service.access, StaffTokens(DEV_STAFF_TOKENS), ChannelKeys("")).include(app, routers)
    return app


def _describe_publishers(name: str, broker: Any) -> None:
    """Doc-only publishers: the outbox's topics and the dead-letter topics of consumed topics."""
    for topic, description in PUBLISHES.get(name, {}).items():
        broker.publisher(topic, title=f"{topic}:Outbox", description=description)
    consumed = sorted({t for sub in broker.subscribers for t in sub.topic_names})
    for topic in consumed:
        broker.publisher(
            dlq(topic),
            title=f"{dlq(topic)}:DeadLetter",
            description=f"Records of {topic} that could not be processed after bounded retries, "
            "unchanged, with the error in `dlq.*` headers. The partition keeps flowing.",
        )


def _enrich(doc: dict[str, Any], name: str, broker: Any, partitions: int) -> dict[str, Any]:
    """Fill in payloads, headers, keys and consumer groups FastStream cannot infer."""
    schemas, payload_names = _payload_schemas()
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(schemas)
    groups = {t: sub.group_id for sub in broker.subscribers for t in sub.topic_names}

    # one subscriber reads several topics: each channel says what the service does with its topic
    inputs: dict[str, str] = importlib.import_module(f"services.{name}.entrypoints.subscribers").INPUTS
    channel_topic: dict[str, str] = {}
    for channel_name, channel in doc.get("channels", {}).items():
        address = channel.get("address", "")
        channel_topic[channel_name] = address
        if channel_name.endswith(":OnBatch") and address in inputs:
            channel["description"] = inputs[address]
        base = address.removesuffix(".dlq")
        kafka_binding = channel.setdefault("bindings", {}).setdefault("kafka", {})
        kafka_binding["partitions"] = partitions
        for ref in channel.get("messages", {}).values():
            message_name = ref["$ref"].rsplit("/", 1)[-1]
            message = components["messages"][message_name]
            if base not in payload_names:
                continue
            message["payload"] = {"$ref": f"#/components/schemas/{payload_names[base]}"}
            message["contentType"] = "application/json"
            if address.endswith(".dlq"):
                message["headers"] = _DLQ_HEADERS
            elif base == Topic.CHANNEL_ORDERS:
                message["headers"] = _CHANNEL_ORDER_HEADERS
            else:
                message["headers"] = _ENVELOPE_HEADERS
            message["bindings"] = {
                "kafka": {
                    "key": {"type": "string", "description": TOPICS[base][0]},
                    "bindingVersion": "0.4.0",
                }
            }
    for operation in doc.get("operations", {}).values():
        if operation.get("action") != "receive":
            continue
        channel_name = operation["channel"]["$ref"].rsplit("/", 1)[-1]
        group = groups.get(channel_topic.get(channel_name, ""))
        if group:
            operation["bindings"] = {
                "kafka": {
                    "groupId": {"type": "string", "enum": [group]},
                    "clientId": {"type": "string", "enum": [f"oms-{name}"]},
                    "bindingVersion": "0.4.0",
                }
            }
    _prune_schemas(doc)
    # subscribers live in a WeakSet: sort so regenerated documents diff cleanly
    for section in (doc, components):
        for key in ("channels", "operations", "messages", "schemas"):
            if key in section:
                section[key] = dict(sorted(section[key].items()))
    return doc


_REF = re.compile(r'"#/components/schemas/([^"]+)"')


def _prune_schemas(doc: dict[str, Any]) -> None:
    """Drop component schemas nothing refers to (FastStream's placeholders, other topics' events)."""
    schemas: dict[str, Any] = doc["components"]["schemas"]
    outside = json.dumps({k: v for k, v in doc.items() if k != "components"}) + json.dumps(
        {k: v for k, v in doc["components"].items() if k != "schemas"}
    )
    reachable: set[str] = set()
    todo = set(_REF.findall(outside))
    while todo:
        name = todo.pop()
        if name in reachable or name not in schemas:
            continue
        reachable.add(name)
        todo |= set(_REF.findall(json.dumps(schemas[name])))
    for name in [n for n in schemas if n not in reachable]:
        del schemas[name]


Documents = dict[str, tuple[dict[str, Any], dict[str, Any]]]


async def _build_documents(only: tuple[str, ...] = SERVICES) -> Documents:
    """AsyncAPI and OpenAPI documents per importable service (no file I/O here)."""
    from faststream.specification import AsyncAPI

    documents: Documents = {}
    for name in only:
        built = await _build_service(name)
        if built is None:
            continue
        service, routers, (broker, engine, producer, kafka) = built
        title = f"OMS {name.replace('_', '-')}"
        try:
            _describe_publishers(name, broker)
            spec = AsyncAPI(
                broker,
                title=title,
                version=API_VERSION,
                description=(
                    f"Kafka interface of the {name.replace('_', '-')} service. Values are JSON; "
                    "events travel in the envelope of libs/contracts/envelope.py. "
                    "Compatibility: only optional fields are ever added; a breaking change is a new "
                    "topic version (.v2). See docs/contract.md."
                ),
                schema_version="3.0.0",
            ).to_specification()
            asyncapi_doc = _enrich(spec.to_jsonable(), name, broker, kafka.partitions)
            documents[name] = (asyncapi_doc, served_app(service, routers).openapi())
        finally:
            await producer.stop()  # never started: only marks it closed
            await engine.dispose()
    return documents


def _write(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    return path


def _write_yaml(path: Path, doc: Any) -> list[Path]:
    try:
        import yaml
    except ImportError:
        return []
    plain = json.loads(json.dumps(doc, default=str))
    path.write_text(yaml.safe_dump(plain, sort_keys=False, allow_unicode=True))
    return [path]


def generate(path: str | Path = "docs/asyncapi") -> list[Path]:
    """Write ``<path>/<service>.json`` (+ ``.yaml``) per importable service and the OpenAPI
    documents of their HTTP routes to ``<path>/../openapi/<service>.json``; return the files."""
    out_dir = Path(path)
    openapi_dir = out_dir.parent / "openapi"
    written: list[Path] = []
    for name, (asyncapi_doc, openapi_doc) in asyncio.run(_build_documents()).items():
        out_dir.mkdir(parents=True, exist_ok=True)
        openapi_dir.mkdir(parents=True, exist_ok=True)
        written.append(_write(out_dir / f"{name}.json", asyncapi_doc))
        written.extend(_write_yaml(out_dir / f"{name}.yaml", asyncapi_doc))
        written.append(_write(openapi_dir / f"{name}.json", openapi_doc))
    return written


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    args = sys.argv[1:] if argv is None else argv
    for written in generate(args[0] if args else "docs/asyncapi"):
        print(written)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
