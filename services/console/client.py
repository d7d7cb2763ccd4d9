"""Calls to the four services' public HTTP APIs with the signed-in staff member's token.

A refusal comes back as ``ServiceRefused`` carrying the service's own ``{field, problem}`` list,
so a page can show each problem beside the field it names.
"""

from __future__ import annotations

from typing import Any

import httpx

from libs.contracts.problems import Problem


class ServiceRefused(Exception):
    """A service answered 4xx/5xx; ``problems`` is its answer, field by field."""

    def __init__(self, status: int, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.problem}" for p in problems))
        self.status = status
        self.problems = problems


class NotSignedIn(Exception):
    """No staff token in the session, or a service refused it (401/403 without problems)."""


def problems_from(resp: httpx.Response) -> list[Problem]:
    """The service's ``detail`` as a problem list, whatever shape it came in."""
    try:
        detail = resp.json().get("detail")
    except Exception:  # noqa: BLE001 - not JSON: show the text
        return [Problem("(service)", f"HTTP {resp.status_code}: {resp.text[:300]}")]
    if isinstance(detail, list):
        return [Problem(str(d.get("field", "(body)")), str(d.get("problem", d.get("msg", d))))
                if isinstance(d, dict) else Problem("(body)", str(d)) for d in detail]
    return [Problem("(service)", str(detail) if detail else f"HTTP {resp.status_code}")]


# uvicorn closes a connection idle for 5 s (its timeout_keep_alive); httpx would keep one for 5 s
# too, so a request could leave on a connection the service is closing at that moment and fail
# with "Server disconnected without sending a response". Idle connections are dropped sooner here,
# and a read (GET) that still meets a closing connection is sent once more on a new one.
KEEPALIVE_EXPIRY_S = 2.0
_STALE_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class Services:
    """One shared HTTP connection pool; each call carries the caller's token."""

    def __init__(self, urls: dict[str, str], timeout: float) -> None:
        self.urls = urls
        self.http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY_S))

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, token: str | None, method: str, service: str, path: str, **kw: Any) -> httpx.Response:
        if not token:
            raise NotSignedIn()
        headers = {"Authorization": f"Bearer {token}", "X-Actor": "console"} | kw.pop("headers", {})
        try:
            try:
                resp = await self.http.request(method, self.urls[service] + path, headers=headers, **kw)
            except _STALE_CONNECTION:
                if method != "GET":
                    raise  # a change may have been applied: never sent twice
                resp = await self.http.request(method, self.urls[service] + path, headers=headers, **kw)
        except httpx.TransportError as exc:
            raise ServiceRefused(503, [Problem("(service)", f"{service} does not answer: {type(exc).__name__}")]) from None
        if resp.status_code in (401, 403):
            problems = problems_from(resp)
            if resp.status_code == 401:
                raise NotSignedIn()
            raise ServiceRefused(403, problems)
        if resp.status_code >= 400:
            raise ServiceRefused(resp.status_code, problems_from(resp))
        return resp

    async def json(self, token: str | None, method: str, service: str, path: str, **kw: Any) -> Any:
        resp = await self.call(token, method, service, path, **kw)
        return resp.json() if resp.content else None
