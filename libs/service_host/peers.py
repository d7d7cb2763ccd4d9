"""One way for a service to ask another over the other's public HTTP API.

Every peer call in the project is a read (``GET``) made rarely (rule writes, stock takes,
returns, dropship hand-offs), so a :class:`Peer` opens one short-lived ``httpx`` client per
call and needs no lifecycle. Where the peer is and which staff token to present come from
settings: ``base_url``/``token`` arguments first, then the environment variables the adapter
names (``OMS_<SERVICE>_URL``, ``OMS_<SERVICE>_TOKEN``), then the development defaults.

The retry policy, in one place: a read that could not connect, or that the peer answered
with 502/503/504 (starting, restarting, behind a proxy), is tried once more after a short
pause; reads are idempotent, so this is safe. Anything that still fails, and any other status
the caller did not expect, is a :class:`PeerUnavailable`; the HTTP answer for it is
``libs.service_host.errors.peer_unavailable`` (503 with Retry-After). Each service's port keeps
its own exception (``PricesUnavailable``, ``ReservationsUnavailable``, ...): the adapter turns
a ``PeerUnavailable`` into it, so the service layer knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

import httpx

DEFAULT_TOKEN = "dev-viewer-token"
"""The embedded development viewer token: every peer read needs only a viewer."""

RETRY_STATUSES = frozenset({502, 503, 504})
ATTEMPTS = 2
RETRY_PAUSE_SECONDS = 0.2


class PeerUnavailable(RuntimeError):
    """The peer could not be asked, or its answer was not usable. ``service`` is the peer's
    service name as ``errors.peer_unavailable`` shows it (e.g. ``allocation``)."""

    def __init__(self, service: str, problem: str) -> None:
        super().__init__(problem)
        self.service = service
        self.problem = problem


class Peer:
    """Another service's public HTTP API, as one service reads it."""

    def __init__(
        self,
        service: str,
        *,
        url_variable: str,
        token_variable: str,
        default_url: str,
        base_url: str | None = None,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.service = service
        self.name = service.replace("_", " ")
        self.base_url = (base_url or os.environ.get(url_variable) or default_url).rstrip("/")
        self._token = token or os.environ.get(token_variable) or DEFAULT_TOKEN
        self._transport = transport
        self._timeout = timeout

    def unavailable(self, problem: str) -> PeerUnavailable:
        return PeerUnavailable(self.service, problem)

    async def get_json(self, path: str, what: str, *, params: dict[str, str] | None = None,
                       missing_ok: bool = False) -> Any:
        """The JSON body of ``GET path`` when the peer answers 200; ``None`` for a 404 when
        ``missing_ok``. ``what`` names what was asked for in the problem text ("for ...")."""
        resp = await self._get(path, params)
        if missing_ok and resp.status_code == 404:
            return None
        if resp.status_code != 200:
            raise self.unavailable(f"{self.name} answered HTTP {resp.status_code} for {what}")
        try:
            return resp.json()
        except ValueError as exc:
            raise self.unavailable(f"{self.name}'s answer for {what} is not JSON") from exc

    async def _get(self, path: str, params: dict[str, str] | None) -> httpx.Response:
        for attempt in range(1, ATTEMPTS + 1):
            last = attempt == ATTEMPTS
            try:
                async with httpx.AsyncClient(
                    base_url=self.base_url, transport=self._transport, timeout=self._timeout,
                    headers={"Authorization": f"Bearer {self._token}"},
                ) as client:
                    resp = await client.get(path, params=params)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if last:
                    raise self._not_reachable(exc) from exc
            except httpx.HTTPError as exc:  # sent, but no answer: not retried (the peer may be busy)
                raise self._not_reachable(exc) from exc
            else:
                if last or resp.status_code not in RETRY_STATUSES:
                    return resp
            await asyncio.sleep(RETRY_PAUSE_SECONDS)
        raise AssertionError("unreachable")  # pragma: no cover

    def _not_reachable(self, exc: Exception) -> PeerUnavailable:
        return self.unavailable(f"{self.name} at {self.base_url} not reachable: {type(exc).__name__}")


class PeerAdapter:
    """The base of a port's adapter over one peer: the subclass names the peer, where its
    settings are and the port's own exception (``port_unavailable``, built from the problem
    text), which ``get_json`` raises in place of ``PeerUnavailable``. Every adapter is built
    the same way: ``(base_url, token, *, transport, timeout)``, each falling back to the
    settings (``transport`` is for tests)."""

    service: ClassVar[str]
    url_variable: ClassVar[str]
    token_variable: ClassVar[str]
    default_url: ClassVar[str]
    port_unavailable: ClassVar[type[Exception]]

    def __init__(self, base_url: str | None = None, token: str | None = None, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 10.0) -> None:
        self.peer = Peer(self.service, url_variable=self.url_variable, token_variable=self.token_variable,
                         default_url=self.default_url, base_url=base_url, token=token, transport=transport,
                         timeout=timeout)

    async def get_json(self, path: str, what: str, *, params: dict[str, str] | None = None,
                       missing_ok: bool = False) -> Any:
        """``Peer.get_json``, failing with the port's exception."""
        try:
            return await self.peer.get_json(path, what, params=params, missing_ok=missing_ok)
        except PeerUnavailable as exc:
            raise self.port_unavailable(str(exc)) from exc
