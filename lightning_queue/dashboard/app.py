"""The dashboard's aiohttp application: page shells, `/api/` JSON, static files; read-only and token-guarded."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from .._version import __version__
from ..store import RedisLightningStore
from ..types import ROLLOUT_MODES, ROLLOUT_STATUSES
from .data import Dashboard
from .settings import DashboardSettings

HERE = Path(__file__).parent
COOKIE = "lq_dashboard_token"
DASHBOARD_KEY = web.AppKey("dashboard", Dashboard)
SETTINGS_KEY = web.AppKey("settings", DashboardSettings)
JINJA_KEY = web.AppKey("jinja", jinja2.Environment)
# No inline script or style at all: a span attribute that slips into the page still cannot run.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _finite(value: Any) -> Any:
    # JSON has no NaN/Infinity, and a browser's JSON.parse refuses them: a NaN reward would blank the page.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _json(data: Any, status: int = 200) -> web.Response:
    text = json.dumps(_finite(data), default=str, allow_nan=False)
    return web.Response(text=text, status=status, content_type="application/json")


def _token_of(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        return header[len("Bearer ") :]
    return request.query.get("token") or request.cookies.get(COOKIE)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    settings = request.app[SETTINGS_KEY]
    if request.method not in ("GET", "HEAD"):
        return _json({"error": "the dashboard is read-only"}, status=405)
    if settings.token is not None:
        given = _token_of(request)
        if given is None or not hmac.compare_digest(given.encode(), settings.token.encode()):
            return _json({"error": "missing or wrong token (Authorization: Bearer ..., or ?token=...)"}, status=401)
    try:
        response = await handler(request)
    except ValueError as exc:  # a bad query parameter, named by the message
        response = _json({"error": str(exc)}, status=400)
    except KeyError as exc:
        response = _json({"error": f"not found: {exc.args[0]!r}"}, status=404)
    response.headers.update(SECURITY_HEADERS)
    if settings.token is not None and request.query.get("token") and request.cookies.get(COOKIE) != settings.token:
        # A link with ?token= logs the browser in; the pages' own requests then carry the cookie.
        response.set_cookie(COOKIE, settings.token, httponly=True, samesite="Strict")
    return response


def _int(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None


def _page(name: str, title: str, **context: Any) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        template = request.app[JINJA_KEY].get_template(name)
        html = template.render(
            title=title,
            page=name.removesuffix(".html"),
            namespace=request.app[DASHBOARD_KEY].store.namespace,
            refresh_ms=int(request.app[SETTINGS_KEY].refresh_seconds * 1000),
            version=__version__,
            match=request.match_info,
            **context,
        )
        return web.Response(text=html, content_type="text/html")

    return handler


async def _api_overview(request: web.Request) -> web.Response:
    return _json(await request.app[DASHBOARD_KEY].overview())


async def _api_rollouts(request: web.Request) -> web.Response:
    q = request.query
    statuses = [s for raw in q.getall("status", []) for s in raw.split(",") if s]
    return _json(
        await request.app[DASHBOARD_KEY].rollouts(
            status=statuses,
            mode=q.get("mode") or None,
            resources_id=q.get("resources_id") or None,
            limit=_int(request, "limit", 50),
            offset=_int(request, "offset", 0),
        )
    )


async def _api_rollout(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD_KEY]
    return _json(await dashboard.rollout(request.match_info["rollout_id"], request.query.get("attempt_id") or None))


async def _api_workers(request: web.Request) -> web.Response:
    return _json(await request.app[DASHBOARD_KEY].workers())


async def _api_resources(request: web.Request) -> web.Response:
    dashboard = request.app[DASHBOARD_KEY]
    return _json(await dashboard.resources(limit=_int(request, "limit", 50), offset=_int(request, "offset", 0)))


async def _sampler(app: web.Application) -> AsyncIterator[None]:
    dashboard, settings = app[DASHBOARD_KEY], app[SETTINGS_KEY]
    task = asyncio.create_task(dashboard.sample_forever(settings.sample_seconds))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(store: RedisLightningStore, settings: DashboardSettings | None = None) -> web.Application:
    """The dashboard of `store`'s namespace; the caller owns (and closes) the store."""
    settings = settings or DashboardSettings()
    app = web.Application(middlewares=[_guard])
    app[SETTINGS_KEY] = settings
    app[DASHBOARD_KEY] = Dashboard(store, history=settings.history)
    app[JINJA_KEY] = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value in a page is text, whatever it contains
        undefined=jinja2.StrictUndefined,
    )
    app.cleanup_ctx.append(_sampler)
    app.router.add_get("/", _page("overview.html", "Overview"))
    app.router.add_get("/rollouts", _page("rollouts.html", "Rollouts", statuses=ROLLOUT_STATUSES, modes=ROLLOUT_MODES))
    app.router.add_get("/rollouts/{rollout_id}", _page("rollout.html", "Rollout"))
    app.router.add_get("/workers", _page("workers.html", "Workers"))
    app.router.add_get("/resources", _page("resources.html", "Resources"))
    app.router.add_get("/api/overview", _api_overview)
    app.router.add_get("/api/rollouts", _api_rollouts)
    app.router.add_get("/api/rollouts/{rollout_id}", _api_rollout)
    app.router.add_get("/api/workers", _api_workers)
    app.router.add_get("/api/resources", _api_resources)
    app.router.add_static("/static/", HERE / "static")
    return app
