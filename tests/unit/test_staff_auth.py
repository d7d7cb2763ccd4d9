"""Staff authentication without I/O: every route of every service has a rule, 401 and 403 on
every route, token parsing, and the refusal to start with development secrets in production.

The guard runs before a route's handler, so these tests need no database: each service is
wired onto unconnected objects exactly as ``oms run`` wires it."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import APIRouter, FastAPI
from faststream.kafka import KafkaBroker
from staff_auth import OPERATOR, VIEWER

from libs.database import create_engine
from libs.messaging.outbox import OutboxRelay
from libs.messaging.settings import KafkaSettings
from libs.service_host import HostSettings, Runtime, auth, build_app
from libs.service_host.auth import (
    DEV_CHANNEL_API_KEYS,
    DEV_STAFF_TOKENS,
    AuthSettings,
    ChannelKey,
    ChannelKeys,
    InsecureConfiguration,
    Role,
    Staff,
    StaffAccess,
    StaffOrChannel,
    StaffTokens,
    deployment,
    refuse_development_secrets,
)

SERVICES = ("order_intake", "inventory", "allocation", "fulfillment")
UNREACHABLE_DB = "postgresql+asyncpg://nobody@127.0.0.1:9/none"  # never connected to
REMOTE_DB = "postgresql+asyncpg://oms:pw@postgres.database.svc:5432/oms"
LOCAL_KAFKA = "127.0.0.1:19092"
STRONG_TOKENS = "a-long-admin-secret-0123456789:admin,a-long-viewer-secret-012345:viewer"
STRONG_KEYS = "web:a-long-web-key-0123456789,pos:a-long-pos-key-0123456789"


def definition(name: str) -> Any:
    return importlib.import_module(f"services.{name}.service").SERVICE


async def wired(name: str) -> tuple[FastAPI, list[APIRouter], Any]:
    """The service's routers and the app serving them behind the development tokens."""
    service = definition(name)
    kafka = KafkaSettings(bootstrap="127.0.0.1:9")
    engine = create_engine(UNREACHABLE_DB, schema=service.schema, pool_size=1)
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap)  # never started
    broker = KafkaBroker(kafka.bootstrap)  # never connected
    runtime = Runtime(service.name, service.schema, engine, producer, broker,
                      OutboxRelay(engine, producer, schema=service.schema), kafka)
    routers = service.wire(runtime)
    app = FastAPI()
    StaffAccess(name, service.access, StaffTokens(DEV_STAFF_TOKENS), ChannelKeys(DEV_CHANNEL_API_KEYS)).include(
        app, routers)
    app.state.runtime = runtime
    return app, routers, runtime


@pytest.fixture(scope="module")
def apps() -> dict[str, FastAPI]:
    import asyncio

    async def build() -> dict[str, FastAPI]:
        return {name: (await wired(name))[0] for name in SERVICES}

    return asyncio.run(build())


async def call(app: FastAPI, method: str, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://oms") as client:
        body = {} if method in ("POST", "PUT", "PATCH") else None
        return await client.request(method, path, json=body, headers=headers or {})


def concrete(path: str) -> str:
    """A path template with every parameter filled in."""
    return path.replace("{", "").replace("}", "")


ROUTES = [(name, method, path, rule) for name in SERVICES for (method, path), rule in definition(name).access.items()]
STAFF_ROUTES = [r for r in ROUTES if not isinstance(r[3], ChannelKey | auth.SignedBody)]
MUTATING = [r for r in STAFF_ROUTES if r[1] != "GET"]


def ids(route: tuple[str, str, str, Any]) -> str:
    return f"{route[0]}:{route[1]} {route[2]}"


# --- every route has a rule ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SERVICES)
async def test_every_route_of_every_service_has_an_access_rule_and_shows_its_security(name: str) -> None:
    app, routers, runtime = await wired(name)
    table = definition(name).access
    served = {(m, r.path) for router in routers for r in router.routes for m in r.methods}  # type: ignore[attr-defined]
    assert served == set(table), "the ACCESS table and the routes differ"
    operations = [(path, method.upper(), op) for path, item in app.openapi()["paths"].items()
                  for method, op in item.items()]
    assert {(m, p) for p, m, _ in operations} == served
    for path, method, op in operations:
        rule = table[(method, path)]
        schemes = {name for alternative in op["security"] for name in alternative}
        expected = {Staff: {"StaffToken"}, StaffOrChannel: {"StaffToken", "ChannelApiKey"},
                    ChannelKey: {"ChannelApiKey"}}.get(type(rule)) or {rule.scheme_name}
        assert schemes == expected, (method, path)
        assert op["x-oms-access"] == rule.describe()
    await runtime.engine.dispose()


def test_the_house_rule_holds_reads_need_viewer_changes_operator_or_admin() -> None:
    for name, method, path, rule in STAFF_ROUTES:
        if method == "GET":
            assert rule == auth.VIEWER, (name, path)
        else:
            assert rule.role >= Role.OPERATOR, (name, method, path)
    admin = {(m, p) for _, m, p, rule in STAFF_ROUTES if rule == auth.ADMIN}
    assert admin == {("PUT", "/v1/policy"), ("POST", "/v1/locations"), ("PATCH", "/v1/locations/{location_id}"),
                     ("PUT", "/v1/skus/{sku}"), ("POST", "/v1/rules"), ("PUT", "/v1/rules/{rule_id}"),
                     ("DELETE", "/v1/rules/{rule_id}"), ("POST", "/v1/customers/{customer_id}/erase")}


async def test_a_route_without_a_rule_or_a_rule_without_a_route_refuses_to_serve() -> None:
    router = APIRouter(prefix="/v1")

    @router.post("/new-thing")
    async def new_thing() -> dict[str, str]:
        return {}

    access = StaffAccess("test", {}, StaffTokens(DEV_STAFF_TOKENS), ChannelKeys(""))
    with pytest.raises(LookupError, match="no access rule for POST /v1/new-thing"):
        access.include(FastAPI(), [router])
    stale = StaffAccess("test", {("POST", "/v1/new-thing"): auth.ADMIN, ("GET", "/v1/gone"): auth.VIEWER},
                        StaffTokens(DEV_STAFF_TOKENS), ChannelKeys(""))
    with pytest.raises(LookupError, match="/v1/gone"):
        stale.include(FastAPI(), [router])


# --- 401 and 403 on every route ------------------------------------------------------------------------


@pytest.mark.parametrize("route", STAFF_ROUTES, ids=ids)
async def test_no_token_or_an_unknown_token_is_401_with_www_authenticate(apps: dict[str, FastAPI], route: Any) -> None:
    name, method, path, _ = route
    for headers in (None, {"Authorization": "Bearer not-a-token"}, {"Authorization": "Basic ZGV2OmRldg=="}):
        resp = await call(apps[name], method, concrete(path), headers)
        assert resp.status_code == 401, (headers, resp.text)
        assert resp.headers["www-authenticate"].startswith("Bearer")
        [problem] = resp.json()["detail"]
        assert problem["field"] == "Authorization" and problem["problem"]


@pytest.mark.parametrize("route", MUTATING, ids=ids)
async def test_a_role_below_the_routes_is_403_naming_the_role_needed(apps: dict[str, FastAPI], route: Any) -> None:
    name, method, path, rule = route
    below = {Role.OPERATOR: VIEWER, Role.ADMIN: OPERATOR}[rule.role]
    resp = await call(apps[name], method, concrete(path), below)
    assert resp.status_code == 403, resp.text
    [problem] = resp.json()["detail"]
    assert problem["field"] == "Authorization"
    assert f"needs role {rule.role.label}" in problem["problem"]


@pytest.mark.parametrize("route", [r for r in MUTATING if r[3].role == Role.OPERATOR][:3], ids=ids)
async def test_viewer_cannot_write(apps: dict[str, FastAPI], route: Any) -> None:
    name, method, path, _ = route
    assert (await call(apps[name], method, concrete(path), VIEWER)).status_code == 403


async def test_operator_cannot_change_policy_locations_or_sku_settings(apps: dict[str, FastAPI]) -> None:
    for name, method, path in [("allocation", "PUT", "/v1/policy"), ("inventory", "POST", "/v1/locations"),
                               ("inventory", "PATCH", "/v1/locations/WH1"), ("fulfillment", "PUT", "/v1/skus/S1")]:
        resp = await call(apps[name], method, path, OPERATOR)
        assert resp.status_code == 403 and "needs role admin" in resp.text, (path, resp.text)


async def test_health_metrics_and_docs_stay_open() -> None:
    app = build_app(definition("inventory"), HostSettings(database_url=UNREACHABLE_DB),
                    KafkaSettings(bootstrap=LOCAL_KAFKA))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://oms") as client:
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 503  # not started: open, not 401
        assert (await client.get("/metrics")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200
        assert (await client.get("/docs")).status_code == 200


# --- tokens and keys -------------------------------------------------------------------------------------


def test_tokens_map_to_roles_and_bad_entries_are_named_without_the_secret() -> None:
    tokens = StaffTokens(DEV_STAFF_TOKENS)
    assert tokens.role_of("dev-admin-token") is Role.ADMIN
    assert tokens.role_of("dev-viewer-token") is Role.VIEWER
    assert tokens.role_of("dev-admin-token ") is None
    assert tokens.role_of("") is None
    assert StaffTokens("with:colon:operator").role_of("with:colon") is Role.OPERATOR
    for spec, message in [("secret-one:root", "entry 1: role 'root'"), ("ok:admin,secret-two", "entry 2 is not"),
                          ("same-secret:admin,same-secret:viewer", "entry 2 repeats"), ("", "holds no token")]:
        with pytest.raises(ValueError, match=message) as caught:
            StaffTokens(spec)
        assert "secret" not in str(caught.value)


def test_channel_keys_are_per_channel_with_star_for_channels_without_their_own() -> None:
    keys = ChannelKeys("web:web-key,*:any-key")
    assert keys.allows("web", "web-key") and not keys.allows("web", "any-key")
    assert keys.allows("pos", "any-key") and not keys.allows("pos", "web-key")
    assert keys.known("web-key") and keys.known("any-key") and not keys.known("nope") and not keys.known(None)


# --- development secrets outside development ---------------------------------------------------------------


@pytest.mark.parametrize(("env", "database", "kafka", "kind"), [
    ("", "postgresql+asyncpg://postgres@127.0.0.1:15432/oms", "127.0.0.1:19092", "development"),
    ("", "postgres://u:p@localhost/oms", "localhost:9092,[::1]:9093", "development"),
    ("", REMOTE_DB, LOCAL_KAFKA, "production"),
    ("", "postgresql+asyncpg://postgres@127.0.0.1:15432/oms", "127.0.0.1:9092,kafka:9092", "production"),
    ("production", "postgresql+asyncpg://postgres@127.0.0.1:15432/oms", LOCAL_KAFKA, "production"),
    ("development", REMOTE_DB, "kafka:9092", "development"),
])
def test_deployment_is_development_only_on_this_machine_unless_oms_env_says(
        env: str, database: str, kafka: str, kind: str) -> None:
    assert deployment(env, database, kafka)[0] == kind


@pytest.mark.usefixtures("clean_env")
def test_production_refuses_development_or_short_secrets_and_never_names_them() -> None:
    def refusal(settings: AuthSettings, channel_keys: bool = True) -> str:
        with pytest.raises(InsecureConfiguration) as caught:
            refuse_development_secrets("svc", settings, REMOTE_DB, LOCAL_KAFKA, uses_channel_keys=channel_keys)
        return str(caught.value)

    message = refusal(AuthSettings())
    assert "OMS_STAFF_TOKENS is unset" in message and "OMS_CHANNEL_API_KEYS is unset" in message
    assert "dev-admin-token" not in message and "dev-key" not in message
    message = refusal(AuthSettings(staff_tokens=f"{STRONG_TOKENS},dev-viewer-token:viewer",  # type: ignore[arg-type]
                                   channel_api_keys=STRONG_KEYS))  # type: ignore[arg-type]
    assert "OMS_STAFF_TOKENS contains a development default" in message and "CHANNEL" not in message
    message = refusal(AuthSettings(staff_tokens="short-secret:admin",  # type: ignore[arg-type]
                                   channel_api_keys=STRONG_KEYS))  # type: ignore[arg-type]
    assert "shorter than 16" in message and "short-secret" not in message
    # channel keys matter only to a service whose routes take them
    refuse_development_secrets("svc", AuthSettings(staff_tokens=STRONG_TOKENS),  # type: ignore[arg-type]
                               REMOTE_DB, LOCAL_KAFKA, uses_channel_keys=False)
    refuse_development_secrets("svc", AuthSettings(staff_tokens=STRONG_TOKENS,  # type: ignore[arg-type]
                                                   channel_api_keys=STRONG_KEYS),  # type: ignore[arg-type]
                               REMOTE_DB, LOCAL_KAFKA, uses_channel_keys=True)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for variable in ("OMS_ENV", "OMS_STAFF_TOKENS", "OMS_CHANNEL_API_KEYS"):
        monkeypatch.delenv(variable, raising=False)
    yield


@pytest.mark.usefixtures("clean_env")
def test_build_app_refuses_the_development_defaults_outside_development(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InsecureConfiguration, match="refusing to start order_intake in production"):
        build_app(definition("order_intake"), HostSettings(database_url=REMOTE_DB), KafkaSettings(bootstrap=LOCAL_KAFKA))
    monkeypatch.setenv("OMS_ENV", "production")
    with pytest.raises(InsecureConfiguration, match="OMS_ENV=production"):
        build_app(definition("inventory"), HostSettings(database_url=UNREACHABLE_DB), KafkaSettings(bootstrap=LOCAL_KAFKA))
    monkeypatch.setenv("OMS_STAFF_TOKENS", STRONG_TOKENS)
    monkeypatch.setenv("OMS_CHANNEL_API_KEYS", STRONG_KEYS)
    build_app(definition("order_intake"), HostSettings(database_url=REMOTE_DB), KafkaSettings(bootstrap=LOCAL_KAFKA))
    monkeypatch.delenv("OMS_ENV")
    monkeypatch.delenv("OMS_STAFF_TOKENS")
    monkeypatch.delenv("OMS_CHANNEL_API_KEYS")
    build_app(definition("order_intake"), HostSettings(database_url=UNREACHABLE_DB), KafkaSettings(bootstrap=LOCAL_KAFKA))


def test_a_service_process_refuses_to_start_in_production_with_the_development_tokens() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMS_")}
    env.update(OMS_DATABASE_URL=REMOTE_DB, OMS_KAFKA_BOOTSTRAP="kafka.example:9092")
    done = subprocess.run([sys.executable, "-m", "services.allocation"], env=env, capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[2])
    assert done.returncode == 2, done.stderr
    output = done.stdout + done.stderr
    assert "refusing to start allocation in production" in output
    assert "OMS_STAFF_TOKENS is unset" in output
    assert "dev-admin-token" not in output and "Traceback" not in output
