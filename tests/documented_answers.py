"""Tests check every answer a service gives against the body its OpenAPI document promises.

Routes document their success answers (``responses={200: {"model": ...}}``) without FastAPI
re-serialising them, so what clients receive stays exactly what the use case returned. This
middleware, installed by the test apps (``http_support.host_app``, ``staff_auth.guarded_app``),
keeps the documents honest: a 2xx JSON answer that does not fit its documented model fails
the test that caused it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class AnswerDoesNotMatchItsDocument(AssertionError):
    pass


def check_documented_answers(app: FastAPI) -> None:
    app.add_middleware(_CheckAnswers)


class _CheckAnswers:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = []
        body: list[bytes] = []
        json_answer: list[bool] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
                headers = dict(message.get("headers") or [])
                json_answer.append(headers.get(b"content-type", b"").startswith(b"application/json"))
            elif message["type"] == "http.response.body":
                body.append(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, keep)
        if not status or not 200 <= status[0] < 300 or not json_answer[0]:
            return
        model = self._documented(scope, status[0])
        if model is None:
            return
        raw = b"".join(body)
        try:
            TypeAdapter(model).validate_json(raw)
        except Exception as exc:  # noqa: BLE001 - reported as the test's failure
            raise AnswerDoesNotMatchItsDocument(
                f"{scope['method']} {scope['path']} answered {status[0]} with a body its OpenAPI document "
                f"does not describe ({model}): {exc}\n{raw[:500]!r}"
            ) from None

    def _documented(self, scope: Scope, status: int) -> Any:
        route = scope.get("route")  # set by the router that served the request
        if not isinstance(route, APIRoute):
            return None
        documented = route.responses.get(status) or route.responses.get(str(status)) or {}
        if "model" in documented:
            return documented["model"]
        if status == route.status_code and route.response_model is not None:
            return route.response_model
        return None
