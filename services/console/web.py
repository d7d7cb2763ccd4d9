"""What every page shares: templates, the signed-in staff token, and placing a service's problems
beside the form fields they name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from services.console.client import Problem, ServiceRefused, Services

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


def services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


def token(request: Request) -> str | None:
    """The staff token of this browser session (kept only in the signed, HttpOnly cookie)."""
    value = request.session.get("token")
    return value if isinstance(value, str) else None


async def call(request: Request, method: str, service: str, path: str, **kw: Any) -> Any:
    """A service call with the signed-in staff member's token; its JSON answer."""
    return await services(request).json(token(request), method, service, path, **kw)


def page(request: Request, template: str, **context: Any) -> HTMLResponse:
    context.setdefault("poll", request.app.state.settings.poll_seconds)
    return TEMPLATES.TemplateResponse(request, template, context)


@dataclass
class Outcome:
    """What an action form shows after it ran: the service's problems placed by field, or a message."""

    errors: dict[str, list[str]] = field(default_factory=dict)
    message: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    result: Any = None

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def place_problems(problems: list[Problem], inputs: list[str], aliases: dict[str, str] | None = None) -> dict[str, list[str]]:
    """Each problem beside the input it names: exact name, an alias, the last part of a dotted
    path (``lines.0.qty`` -> ``qty``) or its first (``rank_by.0`` -> ``rank_by``); the rest goes
    to the form's head (key ``_form``).

    The text shown is the service's own: ``field: problem``.
    """
    aliases = aliases or {}
    placed: dict[str, list[str]] = {}
    for p in problems:
        candidates = [p.field, aliases.get(p.field, ""), p.field.rsplit(".", 1)[-1], p.field.split(".", 1)[0]]
        target = next((c for c in candidates if c and c in inputs), "_form")
        placed.setdefault(target, []).append(f"{p.field}: {p.problem}")
    return placed


def refused(exc: ServiceRefused, form: FormData | dict[str, Any], inputs: list[str],
            aliases: dict[str, str] | None = None) -> Outcome:
    return Outcome(errors=place_problems(exc.problems, inputs, aliases), values=_values(form))


def _values(form: FormData | dict[str, Any]) -> dict[str, Any]:
    if isinstance(form, dict):
        return dict(form)
    return {k: (form.getlist(k) if len(form.getlist(k)) > 1 else form.get(k)) for k in form}


def texts(form: Mapping[str, Any], *names: str) -> dict[str, str]:
    """The named inputs of a form as stripped text (missing: empty)."""
    return {n: str(form.get(n) or "").strip() for n in names}


def as_int(value: Any) -> Any:
    """A form's number as int when it is one; otherwise the text as typed, so the service names it."""
    text = str(value or "").strip()
    try:
        return int(text)
    except ValueError:
        return text or None
