"""JSON request bodies as every service reads them: declared on the route, decoded by orjson.

Routes declare their bodies (a pydantic model, or ``documented_as(Model)`` for a document a
use case checks itself) so the served OpenAPI describes each one; FastAPI validates declared models and
the host's one handler (``errors.py``) answers every fault as ``{field, problem}``. What
FastAPI would do differently from the hand parsing this replaced is settled here, in
``JsonBodyRoute`` (give it to every service router as ``route_class``):

* the body is decoded with orjson, whatever the ``Content-Type`` says (connectors and
  ``curl -d`` send JSON as text or form data); Python's json module took NaN, integers of any
  size and invalid UTF-8 that orjson refuses (the last answered 400, not 422);
* a declared body that is not JSON is refused with the decoder's words only after the access check,
  so a caller without credentials still hears 401 first;
* a blank body counts as no body (an optional body then takes its defaults).

FastAPI's own ``strict_content_type`` would refuse JSON sent as ``text/plain``; here it is
read as before.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import orjson
from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import PlainValidator

_JSON_CONTENT_TYPE = (b"content-type", b"application/json")


class Undecodable:
    """A body orjson could not decode; ``error`` is orjson's message (with line and column)."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def decode(raw: bytes) -> Any:
    """The JSON document in ``raw``: None when blank, ``Undecodable`` when not JSON."""
    if not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Undecodable(str(exc))


def not_json(raw: bytes) -> str:
    """What the project answers about a body that is not JSON (the decoder's own words)."""
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    return "not valid JSON"


class _JsonRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = decode(await self.body())
        return self._json


async def refuse_undecodable_body(request: Request) -> None:
    """Answer 422 for a body that is not JSON; runs after the access check (see module doc)."""
    document = getattr(request, "_json", None)
    if isinstance(document, Undecodable):
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body",), "msg": "not valid JSON", "ctx": {"error": document.error}}]
        )


class JsonBodyRoute(APIRoute):
    """An API route whose JSON body is decoded as described in the module docstring."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        dependencies = list(kwargs.pop("dependencies", None) or [])
        if not any(getattr(d, "dependency", None) is refuse_undecodable_body for d in dependencies):
            dependencies.append(Depends(refuse_undecodable_body))
        super().__init__(path, endpoint, dependencies=dependencies, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        reads_json = self.body_field is not None

        async def route_handler(request: Request) -> Response:
            scope = request.scope
            if reads_json:
                headers = scope.get("headers") or []
                if _JSON_CONTENT_TYPE not in headers:
                    scope = {**scope, "headers": [h for h in headers if h[0] != b"content-type"] + [_JSON_CONTENT_TYPE]}
            return await handler(_JsonRequest(scope, request.receive))

        return route_handler


def _as_is(document: Any) -> Any:
    return document


def documented_as(model: type) -> Any:
    """Body metadata: documented as ``model`` but handed over as decoded JSON, for a use case
    that checks the document itself (every problem at once, in its own order; for example a
    policy, or a channel order whose key is checked before its content). Use it as
    ``document: Annotated[Any, Body(), documented_as(Model)]``."""
    return PlainValidator(_as_is, json_schema_input_type=model)
