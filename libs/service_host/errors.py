"""Error answers every service gives, in one place.

* **422** ``{"detail": [{"field": ..., "problem": ...}, ...]}``: the project's problem shape, also
  for what FastAPI validates itself (path and query parameters, declared bodies) and for NUL
  characters in any path or query parameter (PostgreSQL cannot store them);
* **413**: a request body larger than ``OMS_HTTP_MAX_BODY_BYTES`` (default 4 MiB; multipart
  uploads such as stock-take sheets: ``OMS_HTTP_MAX_UPLOAD_BYTES``, default 21 MiB);
* **503** with ``Retry-After``: the database (or broker) is unreachable; nothing was changed,
  the same request can be sent again.

``install(app)`` hooks all of it into a FastAPI app. Its validation handler is the only one:
routes declare their bodies (``bodies.py`` decodes them) and never answer a 422 of their own
for what FastAPI checks; domain refusals use ``problem_response`` with the same shape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

import asyncpg.exceptions
from aiokafka.errors import KafkaError
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.contracts.problems import Problem
from libs.contracts.storable import NUL_PROBLEM, problem_text
from libs.database.errors import describe_error
from libs.messaging.consumer import is_transient
from libs.service_host.bodies import not_json

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5
DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_UPLOAD_BYTES = 21 * 1024 * 1024  # a 20 MiB sheet plus the multipart envelope

# The database or broker is away: not the request's fault (see also is_transient).
UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,  # connection refused or reset, timeouts
    KafkaError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, cannot connect now
    asyncpg.exceptions.InsufficientResourcesError,  # too many connections
)


class HasProblem(Protocol):
    """What ``problem_response`` reads. Everything outside allocation's domain uses
    ``libs.contracts.problems.Problem``; ``book.Problem`` and ``policy.PolicyProblem`` are
    still their own (that domain is being reshaped in parallel)."""

    @property
    def field(self) -> str: ...

    @property
    def problem(self) -> str: ...


def peer_unavailable(service: str, problem: str) -> JSONResponse:
    """503 with Retry-After: another service this answer needs could not be asked; nothing was
    changed. ``field`` names that service in parentheses, e.g. ``(allocation)``."""
    return JSONResponse(
        {"detail": [{"field": f"({service})", "problem": problem}]}, status_code=503, headers={"Retry-After": "5"}
    )


def problem_response(
    problems: Iterable[HasProblem], status: int = 422, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The project's error answer: every problem as ``{"field", "problem"}``."""
    return JSONResponse(
        {"detail": [{"field": p.field, "problem": p.problem} for p in problems]},
        status_code=status,
        headers=headers,
    )


_LOCATIONS = {"body", "query", "path", "header", "cookie"}
_NOT_AN_OBJECT = {"model_attributes_type", "model_type", "dict_type"}


def problems_of_errors(errors: Sequence[Any]) -> list[Problem]:
    """FastAPI's ``{type, loc, msg}`` errors as the project's ``{field, problem}``.

    The body's own faults read as they did when each service parsed its body by hand: a body
    that is not JSON (or is missing) in the decoder's words, one that is not an object as such."""
    out = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ())]
        kind = err.get("type")
        whole_body = loc == ["body"]
        if loc and loc[0] in _LOCATIONS:
            loc = loc[1:]
        if kind == "json_invalid":
            out.append(Problem("(body)", f"not valid JSON: {err.get('ctx', {}).get('error', err.get('msg'))}"))
        elif whole_body and kind == "missing":
            out.append(Problem("(body)", not_json(b"")))
        elif whole_body and kind in _NOT_AN_OBJECT:
            out.append(Problem("(body)", "must be a JSON object"))
        else:
            out.append(Problem(".".join(loc) or "(body)", problem_text(err)))
    return out


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return problem_response(problems_of_errors(exc.errors()))


async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DBAPIError) and not is_transient(exc):
        raise exc  # a real fault: the server error handler answers 500 (and logs it)
    log.warning("%s %s: database or broker unavailable (%s)", request.method, request.url.path, describe_error(exc))
    return JSONResponse(
        {"detail": "the service's database or broker is unavailable; retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def refuse_nul_parameters(request: Request) -> None:
    """Path and query parameters PostgreSQL cannot store are refused before any route runs."""
    errors = [
        {"type": "value_error", "loc": ("path", name), "msg": NUL_PROBLEM}
        for name, value in request.path_params.items()
        if isinstance(value, str) and "\x00" in value
    ]
    errors += [
        {"type": "value_error", "loc": ("query", name.replace("\x00", "\\u0000")), "msg": NUL_PROBLEM}
        for name, value in request.query_params.multi_items()
        if "\x00" in name or "\x00" in value
    ]
    if errors:
        raise RequestValidationError(errors)


class BodySizeLimit:
    """Answer 413 to a body above the limit, from Content-Length or while it streams in."""

    def __init__(self, app: ASGIApp, *, max_body: int, max_upload: int) -> None:
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        multipart = headers.get(b"content-type", b"").lower().startswith(b"multipart/")
        limit = self.max_upload if multipart else self.max_body
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        received = 0
        exceeded = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, exceeded
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    exceeded = True
                    raise BodyTooLarge(limit)
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if exceeded:
                return  # whatever the route answered to a cut body, the answer is 413 below
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            pass
        if exceeded and not started:
            await _too_large(send, limit)


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body larger than {limit} bytes")


async def _too_large(send: Send, limit: int) -> None:
    response = problem_response([Problem("(body)", f"larger than {limit} bytes")], status=413)
    await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


def _int_env(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else default


def install(app: FastAPI) -> None:
    """Hook the error answers above into ``app`` (before its routers are included)."""
    app.add_exception_handler(RequestValidationError, _validation_error)
    kinds: tuple[type[Exception], ...] = (DBAPIError, *UNAVAILABLE)
    for kind in kinds:
        app.add_exception_handler(kind, _unavailable)
    app.router.dependencies.append(Depends(refuse_nul_parameters))
    app.add_middleware(
        BodySizeLimit,
        max_body=_int_env("OMS_HTTP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        max_upload=_int_env("OMS_HTTP_MAX_UPLOAD_BYTES", DEFAULT_MAX_UPLOAD_BYTES),
    )
