"""The console process: FastAPI + Jinja2 pages, htmx for partial updates and polling.

``create_app`` builds it from settings; nothing connects at import time. ``run`` is what
``oms run console`` and the container run.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.middleware.sessions import SessionMiddleware

from services.console import (
    pages_dropship,
    pages_orders,
    pages_purchase_orders,
    pages_reports,
    pages_setup,
    pages_stock,
)
from services.console.client import NotSignedIn, ServiceRefused, Services
from services.console.settings import ConsoleSettings
from services.console.web import page, services

log = logging.getLogger("oms.console")


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.services = Services(settings.service_urls, settings.timeout_seconds)
        try:
            yield
        finally:
            await app.state.services.close()

    app = FastAPI(title="OMS operations console", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.settings = settings
    # Signed (not readable by page scripts: HttpOnly) cookie holding the staff token; SameSite=lax
    # keeps other sites from posting forms with it.
    app.add_middleware(SessionMiddleware, secret_key=settings.secret, session_cookie="oms_console",
                       same_site="lax", max_age=12 * 3600)
    app.mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")), name="static")

    @app.exception_handler(NotSignedIn)
    async def to_sign_in(request: Request, _exc: NotSignedIn) -> Response:
        request.session.pop("token", None)
        if request.headers.get("HX-Request"):
            return Response(status_code=204, headers={"HX-Redirect": "/sign-in"})
        return RedirectResponse("/sign-in", status_code=303)

    @app.exception_handler(ServiceRefused)
    async def service_refused(request: Request, exc: ServiceRefused) -> Response:
        # A page whose data a service would not give: show its answer, as it said it (in place
        # of the refreshed part when htmx asked for one).
        template = "error_fragment.html" if request.headers.get("HX-Request") else "error.html"
        return page(request, template, problems=exc.problems, status=exc.status)

    @app.get("/health/live", include_in_schema=False)
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready", include_in_schema=False)
    async def ready() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", include_in_schema=False)
    async def home() -> RedirectResponse:
        return RedirectResponse("/orders", status_code=303)

    @app.get("/sign-in", response_class=HTMLResponse)
    async def sign_in_page(request: Request) -> HTMLResponse:
        return page(request, "sign_in.html", error="")

    @app.post("/sign-in", response_class=HTMLResponse)
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        staff_token = str(form.get("token") or "").strip()
        if not staff_token:
            return page(request, "sign_in.html", error="Enter your staff token.")
        try:  # a read every role may do: the services say whether they know the token
            await services(request).call(staff_token, "GET", "order_intake", "/v1/orders", params={"limit": 1})
        except NotSignedIn:
            return page(request, "sign_in.html", error="The services do not accept this token.")
        except ServiceRefused as exc:
            return page(request, "sign_in.html", error="; ".join(f"{p.field}: {p.problem}" for p in exc.problems))
        request.session["token"] = staff_token
        log.info("staff member signed in")  # never the token
        return RedirectResponse("/orders", status_code=303)

    @app.post("/sign-out")
    async def sign_out(request: Request) -> RedirectResponse:
        request.session.clear()
        return RedirectResponse("/sign-in", status_code=303)

    app.include_router(pages_orders.router)
    app.include_router(pages_stock.router)
    app.include_router(pages_setup.router)
    app.include_router(pages_purchase_orders.router)
    app.include_router(pages_dropship.router)
    app.include_router(pages_reports.router)
    return app


def run() -> None:
    """Serve the console in the foreground (``oms run console``)."""
    settings = ConsoleSettings()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    log.info("console on http://%s:%d; services %s", settings.host, settings.port, settings.service_urls)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning")
