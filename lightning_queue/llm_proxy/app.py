"""The aiohttp application: routes with and without the rollout/attempt prefix, auth and JSON errors."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from . import handlers
from .connections import ConnectionGate
from .errors import ProxyError
from .metrics import CALL_MODEL
from .state import ProxyState

logger = logging.getLogger(__name__)

ATTEMPT_PREFIX = "/rollout/{rollout_id}/attempt/{attempt_id}"
# Health stays open so a supervisor can probe it without the token; it reveals only counters.
_OPEN_PATHS = frozenset({"/health"})


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure answers in the OpenAI error shape, and none stops the server."""
    try:
        return await handler(request)
    except ProxyError as error:
        return error.response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        kinds = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}
        message = (
            f"{exc.reason}: {request.method} {request.path}" if exc.status in (404, 405) else exc.text or exc.reason
        )
        return ProxyError(exc.status, message, kinds.get(exc.status, "invalid_request_error")).response()
    except Exception:
        skipped = request.app[handlers.STATE].logs.allow("unexpected")
        if skipped is not None:
            logger.exception(
                "unexpected error while serving %s %s (%d more since the last report)",
                request.method,
                request.path,
                skipped,
            )
        return ProxyError(500, "internal proxy error; see the proxy's log", "internal_error").response()


@web.middleware
async def count_calls(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Completion calls by model and final status (errors included), and how many are being served."""
    if not request.path.endswith("completions"):
        return await handler(request)
    metrics = request.app[handlers.STATE].metrics
    metrics.in_flight.inc()
    model = CALL_MODEL.set(None)
    status = "cancelled"  # only a dropped connection gets past json_errors without a response
    try:
        response = await handler(request)
        status = str(response.status)
        return response
    finally:
        metrics.in_flight.dec()
        metrics.call_answered(CALL_MODEL.get(), status)
        CALL_MODEL.reset(model)


@web.middleware
async def bearer_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[handlers.STATE].auth_token
    if token is not None and request.path not in _OPEN_PATHS:
        sent = request.headers.get("Authorization", "")
        expected = f"Bearer {token}"
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise ProxyError(
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer <token>' with the proxy's auth token "
                "(OpenAI clients: api_key=<token>)",
                "authentication_error",
            )
    return await handler(request)


def build_app(state: ProxyState, gate: ConnectionGate | None = None) -> web.Application:
    middlewares = (
        [count_calls, json_errors, bearer_auth]
        if gate is None
        else [gate.track(), count_calls, json_errors, bearer_auth]
    )
    app = web.Application(middlewares=middlewares, client_max_size=state.max_body_bytes)
    app[handlers.STATE] = state
    for prefix in ("", ATTEMPT_PREFIX):
        # OpenAI clients append paths to their base URL, which may or may not end in /v1.
        for version in ("/v1", ""):
            base = prefix + version
            app.router.add_post(f"{base}/chat/completions", handlers.chat_completions)
            app.router.add_post(f"{base}/completions", handlers.completions)
            app.router.add_get(f"{base}/models", handlers.list_models)
    app.router.add_get("/health", handlers.health)
    app.router.add_get("/metrics", handlers.metrics)
    return app
