"""Who may call which HTTP route: staff bearer tokens with roles, and channel API keys.

Staff send ``Authorization: Bearer <token>``; tokens and their roles come from
``OMS_STAFF_TOKENS`` (``token:role,...``; roles ``viewer`` < ``operator`` < ``admin``). Channel
connectors send ``X-API-Key``; keys per channel come from ``OMS_CHANNEL_API_KEYS``
(``channel:key,...``; ``*`` matches any channel without a key of its own).

Each service declares ONE table, ``(method, path) -> rule``, beside its routes. The host
attaches the rule's FastAPI dependency to every route it serves (so the served OpenAPI shows
the security scheme of each operation) and refuses to start when a route has no rule or the
table names a route that does not exist: a new route cannot be served unprotected by mistake.
``/health/*``, ``/metrics``, ``/docs`` and ``/openapi.json`` belong to the host, not to a
service table, and stay open.

Only SHA-256 digests of tokens and keys are kept; they are compared in constant time and are
never logged or echoed in an answer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.routing import APIRoute
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from libs.contracts.problems import ProblemAnswer

DEV_STAFF_TOKENS = "dev-admin-token:admin,dev-operator-token:operator,dev-viewer-token:viewer"
DEV_CHANNEL_API_KEYS = "*:dev-key"
# Every secret the repository ships: never acceptable outside development.
_DEV_SECRETS = frozenset({"dev-admin-token", "dev-operator-token", "dev-viewer-token", "dev-key"})
MIN_SECRET_LENGTH = 16  # outside development, for every staff token and channel key


class Role(IntEnum):
    """Staff roles; each includes everything the ones below it may do."""

    VIEWER = 1  # read every view and report
    OPERATOR = 2  # also change stock, orders, allocations, packing
    ADMIN = 3  # also the allocation policy, locations and SKU settings

    @property
    def label(self) -> str:
        return self.name.lower()


# --- credentials ----------------------------------------------------------------------------


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _entries(spec: str, variable: str) -> list[tuple[int, str, str]]:
    """``a:b,c:d`` -> [(1, a, b), (2, c, d)]; the error names the entry's position, never its text."""
    out = []
    for position, item in enumerate(filter(None, (p.strip() for p in spec.split(","))), start=1):
        first, sep, second = item.rpartition(":") if variable == "OMS_STAFF_TOKENS" else item.partition(":")
        if not sep or not first or not second:
            raise ValueError(f"{variable} entry {position} is not of the form {_FORMS[variable]}")
        out.append((position, first, second))
    return out


_FORMS = {"OMS_STAFF_TOKENS": "token:role", "OMS_CHANNEL_API_KEYS": "channel:key"}


class StaffTokens:
    """The staff tokens and their roles (``OMS_STAFF_TOKENS``)."""

    def __init__(self, spec: str) -> None:
        self._roles: list[tuple[bytes, Role]] = []
        self.secrets: list[str] = []  # kept only for the start-up check; never logged
        for position, token, role_name in _entries(spec, "OMS_STAFF_TOKENS"):
            try:
                role = Role[role_name.strip().upper()]
            except KeyError:
                raise ValueError(
                    f"OMS_STAFF_TOKENS entry {position}: role {role_name.strip()!r} is not one of "
                    + ", ".join(r.label for r in Role)
                ) from None
            if any(hmac.compare_digest(d, _digest(token)) for d, _ in self._roles):
                raise ValueError(f"OMS_STAFF_TOKENS entry {position} repeats an earlier token")
            self._roles.append((_digest(token), role))
            self.secrets.append(token)
        if not self._roles:
            raise ValueError("OMS_STAFF_TOKENS holds no token: every staff route would be closed")

    def role_of(self, token: str) -> Role | None:
        """The token's role, or None. Compares with every known token (no early exit)."""
        presented = _digest(token)
        found: Role | None = None
        for digest, role in self._roles:
            if hmac.compare_digest(digest, presented):
                found = role
        return found


class ChannelKeys:
    """Per-channel API keys (``OMS_CHANNEL_API_KEYS``: ``channel:key,...``; ``*`` = any channel)."""

    def __init__(self, spec: str) -> None:
        self._digests: dict[str, bytes] = {}
        self.secrets: list[str] = []  # kept only for the start-up check; never logged
        for _, channel, key in _entries(spec, "OMS_CHANNEL_API_KEYS"):
            self._digests[channel] = _digest(key)
            self.secrets.append(key)

    def allows(self, channel: str, key: str | None) -> bool:
        """Is ``key`` the key of ``channel`` (or the ``*`` key when the channel has none)?"""
        expected = self._digests.get(channel) or self._digests.get("*")
        if not key or expected is None:
            return False
        return hmac.compare_digest(expected, _digest(key))

    def named_channels(self) -> frozenset[str]:
        """The channels that have a key of their own (not ``*``)."""
        return frozenset(c for c in self._digests if c != "*")

    def known(self, key: str | None) -> bool:
        """Is ``key`` the key of some channel? (constant time over all keys)"""
        if not key:
            return False
        presented = _digest(key)
        return sum(hmac.compare_digest(d, presented) for d in self._digests.values()) > 0


class AuthSettings(BaseSettings):
    """The secrets and the deployment kind (environment variables ``OMS_*``)."""

    model_config = SettingsConfigDict(env_prefix="OMS_", extra="ignore")

    staff_tokens: SecretStr = SecretStr(DEV_STAFF_TOKENS)
    channel_api_keys: SecretStr = SecretStr(DEV_CHANNEL_API_KEYS)
    # "" = decide from where the database and broker are (see ``deployment``)
    env: Literal["", "development", "production"] = ""


# --- the rules a service table maps routes to -------------------------------------------------

ChannelOf = Callable[[Request], Awaitable[str | None]]


@dataclass(frozen=True)
class Staff:
    """A staff bearer token with at least ``role``."""

    role: Role

    def describe(self) -> str:
        return f"staff token with role {self.role.label} or higher"


@dataclass(frozen=True)
class StaffOrChannel:
    """A staff token with at least ``role``, or the ``X-API-Key`` of the channel that owns the
    resource (``channel_of`` reads it; None when the resource does not exist)."""

    role: Role
    channel_of: ChannelOf

    def describe(self) -> str:
        return f"staff token with role {self.role.label} or higher, or the X-API-Key of the order's own channel"


@dataclass(frozen=True)
class ChannelKey:
    """The ``X-API-Key`` of the channel named in the body; the route checks it (the body is the
    route's to parse), the host only documents it."""

    def describe(self) -> str:
        return "X-API-Key of the channel named in the body"


@dataclass(frozen=True)
class SignedBody:
    """A webhook signed by its sender: the route verifies ``header`` (an HMAC of the raw body
    with a secret from configuration) itself, since only it holds the body; the host only
    documents it."""

    header: str
    how: str

    def describe(self) -> str:
        return f"{self.header}: {self.how}"

    @property
    def scheme_name(self) -> str:
        """The OpenAPI security scheme documenting the header (``XShopifyHmacSha256``)."""
        return self.header.replace("-", "")


Rule = Staff | StaffOrChannel | ChannelKey | SignedBody
AccessTable = Mapping[tuple[str, str], Rule]  # (HTTP method, path template) -> rule

VIEWER = Staff(Role.VIEWER)
OPERATOR = Staff(Role.OPERATOR)
ADMIN = Staff(Role.ADMIN)
CHANNEL_KEY = ChannelKey()


# --- refusing development secrets outside development -------------------------------------------


class InsecureConfiguration(RuntimeError):
    """The service would run outside development with secrets everyone knows."""


_LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def _on_this_machine(host: str | None) -> bool:
    if not host:
        return True  # a Unix socket
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def deployment(env: str, database_url: str, kafka_bootstrap: str) -> tuple[str, str]:
    """``("development" | "production", why)``.

    ``OMS_ENV`` decides when set. Unset, it is development only when both the database and
    every bootstrap server are on this machine (loopback): where the embedded PostgreSQL and
    broker always run. Anything else (a container name, a cluster address) is production.
    """
    if env:
        return env, f"OMS_ENV={env}"
    database_host = urlsplit(database_url).hostname
    if not _on_this_machine(database_host):
        return "production", "OMS_DATABASE_URL is not on this machine (set OMS_ENV to decide explicitly)"
    for server in filter(None, (s.strip() for s in kafka_bootstrap.split(","))):
        if not _on_this_machine(urlsplit(f"//{server}").hostname):
            return "production", "OMS_KAFKA_BOOTSTRAP is not on this machine (set OMS_ENV to decide explicitly)"
    return "development", "database and broker on this machine"


def refuse_development_secrets(
    service: str, settings: AuthSettings, database_url: str, kafka_bootstrap: str, *, uses_channel_keys: bool
) -> None:
    """Raise InsecureConfiguration when running in production with a shipped development secret,
    or a token or key shorter than MIN_SECRET_LENGTH. The message never contains a secret."""
    kind, why = deployment(settings.env, database_url, kafka_bootstrap)
    if kind != "production":
        return
    problems = []
    checks = [("OMS_STAFF_TOKENS", StaffTokens(settings.staff_tokens.get_secret_value()).secrets)]
    if uses_channel_keys:
        checks.append(("OMS_CHANNEL_API_KEYS", ChannelKeys(settings.channel_api_keys.get_secret_value()).secrets))
    for variable, secrets in checks:
        if any(s in _DEV_SECRETS for s in secrets):
            if variable.lower().removeprefix("oms_") in settings.model_fields_set:
                problems.append(f"{variable} contains a development default published in the repository")
            else:
                problems.append(f"{variable} is unset, so it holds the development defaults published in the repository")
        elif any(len(s) < MIN_SECRET_LENGTH for s in secrets):
            problems.append(f"{variable} has a value shorter than {MIN_SECRET_LENGTH} characters")
    if problems:
        raise InsecureConfiguration(
            f"refusing to start {service} in production ({why}): " + "; ".join(problems)
            + ". Set them from your secret store (README: Configuration); OMS_ENV=development allows"
            " the development defaults on a developer's machine only."
        )


# --- the guard ----------------------------------------------------------------------------------

_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="StaffToken",
    description="Staff token (OMS_STAFF_TOKENS); roles viewer < operator < admin.",
)
_api_key = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    scheme_name="ChannelApiKey",
    description="The channel's API key (OMS_CHANNEL_API_KEYS).",
)
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
ApiKey = Annotated[str | None, Depends(_api_key)]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No credentials, or unknown ones (`WWW-Authenticate: Bearer`); `{detail: [{field, problem}]}`",
          "model": ProblemAnswer},
    403: {"description": "Known credentials that may not do this (the role needed is named); `{detail: [{field, problem}]}`",
          "model": ProblemAnswer},
    # in place of FastAPI's {loc, msg, type}: the service host answers every validation fault so (errors.py)
    422: {"description": "Bad input: every problem, each naming its field", "model": ProblemAnswer},
}


def _refuse(status: int, field: str, problem: str) -> HTTPException:
    headers = {"WWW-Authenticate": 'Bearer realm="oms"'} if status == 401 else None
    return HTTPException(status, detail=[{"field": field, "problem": problem}], headers=headers)


class StaffAccess:
    """Checks every request against its route's rule; built once per process."""

    def __init__(self, service: str, table: AccessTable, tokens: StaffTokens, keys: ChannelKeys) -> None:
        self.service = service
        self.table = dict(table)
        self.tokens = tokens
        self.keys = keys

    @classmethod
    def configure(
        cls, service: str, table: AccessTable, *, database_url: str, kafka_bootstrap: str,
        settings: AuthSettings | None = None,
    ) -> StaffAccess:
        """From the environment; raises InsecureConfiguration (or ValueError for a malformed
        variable) before anything connects."""
        settings = settings or AuthSettings()
        uses_channel_keys = any(isinstance(rule, StaffOrChannel | ChannelKey) for rule in table.values())
        refuse_development_secrets(
            service, settings, database_url, kafka_bootstrap, uses_channel_keys=uses_channel_keys
        )
        return cls(
            service,
            table,
            StaffTokens(settings.staff_tokens.get_secret_value()),
            ChannelKeys(settings.channel_api_keys.get_secret_value() if uses_channel_keys else ""),
        )

    # --- serving --------------------------------------------------------------------------------
    def include(self, app: FastAPI, routers: Iterable[APIRouter]) -> None:
        """Serve every route of ``routers`` on ``app`` behind its rule; refuse a route without a
        rule and a rule without a route."""
        served: set[tuple[str, str]] = set()
        for router in routers:
            for route in router.routes:
                rule = self.rule_for(route)
                served |= {(m, route.path) for m in route.methods}  # type: ignore[attr-defined]
                # documented on the operation: Swagger UI shows the description, tools the extension
                access = f"**Access:** {rule.describe()}."
                if access not in (route.description or ""):  # type: ignore[attr-defined]
                    route.description = "\n\n".join(filter(None, [route.description, access]))  # type: ignore[attr-defined]
                route.openapi_extra = {**(route.openapi_extra or {}), "x-oms-access": rule.describe()}  # type: ignore[attr-defined]
                single = APIRouter()
                single.routes.append(route)
                app.include_router(single, dependencies=[Depends(self.dependency(rule))], responses=_RESPONSES)
        stale = sorted(set(self.table) - served)
        if stale:
            raise LookupError(f"{self.service}: the access table names routes that do not exist: {stale}")

    def rule_for(self, route: Any) -> Rule:
        if not isinstance(route, APIRoute):
            raise LookupError(f"{self.service}: {route!r} is not an API route; only those can be protected")
        rules = {self.table.get((method, route.path)) for method in route.methods or ()}
        if None in rules or len(rules) != 1:
            methods = ",".join(sorted(route.methods or ()))
            raise LookupError(
                f"{self.service}: no access rule for {methods} {route.path}: add it to the service's ACCESS table"
            )
        return rules.pop()  # type: ignore[return-value]

    def dependency(self, rule: Rule) -> Callable[..., Awaitable[None]]:
        """The FastAPI dependency enforcing ``rule`` (its parameters document the scheme)."""
        if isinstance(rule, Staff):

            async def staff_token(request: Request, credentials: Bearer) -> None:
                request.state.staff_role = self.staff_role(credentials, rule.role)

            return staff_token
        if isinstance(rule, StaffOrChannel):

            async def staff_token_or_channel_key(request: Request, credentials: Bearer, api_key: ApiKey) -> None:
                if credentials is not None or not api_key:
                    request.state.staff_role = self.staff_role(credentials, rule.role, or_key=True)
                    return
                await self.check_channel_key(request, rule, api_key)

            return staff_token_or_channel_key

        if isinstance(rule, SignedBody):
            signature = APIKeyHeader(name=rule.header, auto_error=False, scheme_name=rule.scheme_name,
                                     description=f"Signature of the webhook body: {rule.how}")

            async def signed_body(value: str | None = Depends(signature)) -> None:
                return None  # the route verifies the signature over the raw body

            return signed_body

        async def channel_key(api_key: ApiKey) -> None:
            return None  # the route compares the key with the body's channel

        return channel_key

    def staff_role(self, credentials: HTTPAuthorizationCredentials | None, needed: Role, or_key: bool = False) -> Role:
        alternative = " (or X-API-Key of the order's channel)" if or_key else ""
        if credentials is None:
            raise _refuse(401, "Authorization", f"send Authorization: Bearer <staff token>{alternative}")
        role = self.tokens.role_of(credentials.credentials)
        if role is None:
            raise _refuse(401, "Authorization", "unknown staff token")
        if role < needed:
            raise _refuse(403, "Authorization", f"needs role {needed.label}; this token has role {role.label}")
        return role

    async def check_channel_key(self, request: Request, rule: StaffOrChannel, api_key: str) -> None:
        if not self.keys.known(api_key):
            raise _refuse(401, "X-API-Key", "unknown API key")
        channel = await rule.channel_of(request)
        if channel is None:
            return  # no such resource: the route answers 404
        if not self.keys.allows(channel, api_key):
            raise _refuse(403, "X-API-Key", "this key is not the key of the channel that placed this order")
