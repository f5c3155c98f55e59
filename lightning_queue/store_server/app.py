"""The aiohttp application of `lq store-server`: Agent-Lightning v0.3's store routes over any `LightningStore`.

Statuses and error bodies follow v0.3's server so its client reacts the same way: a body that does not
validate is a 422 whose `detail` lists the errors (`type`, `loc`, `msg`, `input`), an unknown route a
404 `{"detail": "Not Found"}`, a bad page request a 400 `{"detail": "..."}`. Where v0.3 answers a
store's `ValueError` with a 500 and a traceback, this server answers 404 (unknown id) or 400 (bad
value) with the message and no traceback; a Redis outage is a 503, which v0.3's client retries.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError
from redis.exceptions import RedisError

from ..store import LightningStore, NotFound
from ..store.protocol import (
    API_PREFIX,
    OTLP_TRACES_PATH,
    PROMETHEUS_PATH,
    AttemptQuery,
    DequeueBody,
    EnqueueBody,
    NextSequenceIdBody,
    ResourcesQuery,
    RolloutQuery,
    SpanQuery,
    StartRolloutBody,
    UpdateAttemptBody,
    UpdateRolloutBody,
    UpdateWorkerBody,
    WaitBody,
    WorkerIdBody,
    WorkerQuery,
    _Page,
)
from ..types import UNSET, Attempt, NamedResources, ResourcesUpdate, Rollout, Span, Worker
from . import metrics, otlp
from .settings import StoreServerSettings

logger = logging.getLogger(__name__)

STORE = web.AppKey("store", LightningStore)
CONFIG = web.AppKey("config", StoreServerSettings)

M = TypeVar("M", bound=BaseModel)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _BadRequest(Exception):
    """A request the route refuses with 400 and this detail."""


class _Unprocessable(Exception):
    """A body that is not JSON, answered 422 in the shape of a validation error."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.errors = errors


def _dump(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    return value


def _json(value: Any, status: int = 200) -> web.Response:
    return web.json_response(_dump(value), status=status)


def _validation_detail(exc: ValidationError, where: str) -> list[dict[str, Any]]:
    # `json()` makes every ctx value printable; urls only point at pydantic's docs.
    errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False))
    for error in errors:
        error["loc"] = [where, *error.get("loc", [])]
    return errors


async def _read_json(request: web.Request) -> Any:
    """The parsed body, or None when there is none."""
    raw = await request.read()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        position = getattr(exc, "pos", 0)
        raise _Unprocessable(
            [
                {
                    "type": "json_invalid",
                    "loc": ["body", position],
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": str(exc)[:200]},
                }
            ]
        ) from None


async def _body(request: web.Request, model: type[M], *, required: bool = True) -> M | None:
    data = await _read_json(request)
    if data is None and not required:
        return None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _Unprocessable(_validation_detail(exc, "body")) from None


def _query(request: web.Request, model: type[M]) -> M:
    data: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        if name not in request.query:
            continue
        is_list = "list" in str(info.annotation)
        data[name] = request.query.getall(name) if is_list else request.query[name]
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _Unprocessable(_validation_detail(exc, "query")) from None


def _check_page(page: _Page, target: type[BaseModel]) -> None:
    if page.sort_by is not None and page.sort_by not in target.model_fields:
        allowed = ", ".join(target.model_fields)
        raise _BadRequest(f"Invalid sort_by: {page.sort_by}, allowed fields are: {allowed}")
    # v0.3's server also refuses limit 0; the store contract answers it with an empty page and the
    # total, which is how a caller counts, so this server keeps the store's meaning.
    if page.limit < -1:
        raise _BadRequest("Limit must be greater than or equal to 0, or -1 for no limit")
    if page.offset < 0:
        raise _BadRequest("Offset must be greater than or equal to 0")


def _set_or_unset(body: BaseModel | None, name: str, *, nullable: bool = True) -> Any:
    """The field if the client sent it (v0.3 tells "absent" from null), else UNSET."""
    if body is None or name not in body.model_fields_set:
        return UNSET
    value = getattr(body, name)
    if value is None and not nullable:
        raise _BadRequest(f"{name} is invalid; it cannot be a null value.")
    return value


def _store(request: web.Request) -> LightningStore:
    return request.app[STORE]


# --- routes -------------------------------------------------------------------------------------
routes = web.RouteTableDef()


@routes.get(API_PREFIX + "/health")
async def health(request: web.Request) -> web.Response:
    # The pid tells which process answered: with --workers N any of N children may, and all must agree.
    return _json({"status": "ok", "pid": os.getpid()})


@routes.get(API_PREFIX + "/statistics")
async def statistics(request: web.Request) -> web.Response:
    return _json(await _store(request).statistics())


@routes.post(API_PREFIX + "/queues/rollouts/enqueue")
async def enqueue(request: web.Request) -> web.Response:
    body = await _body(request, EnqueueBody)
    assert body is not None
    if not body.rollouts:
        return _json([], status=201)
    return _json(list(await _store(request).enqueue_many_rollouts(body.rollouts)), status=201)


@routes.post(API_PREFIX + "/queues/rollouts/dequeue")
async def dequeue(request: web.Request) -> web.Response:
    body = await _body(request, DequeueBody, required=False) or DequeueBody()
    if body.limit <= 0:
        return _json([])
    claimed = await _store(request).dequeue_many_rollouts(limit=body.limit, worker_id=body.worker_id)
    return _json(list(claimed))


@routes.post(API_PREFIX + "/rollouts")
async def start_rollout(request: web.Request) -> web.Response:
    body = await _body(request, StartRolloutBody)
    assert body is not None
    started = await _store(request).start_rollout(
        input=body.input,
        mode=body.mode,
        resources_id=body.resources_id,
        config=body.config,
        metadata=body.metadata,
        worker_id=body.worker_id,
    )
    return _json(started, status=201)


async def _query_rollouts(request: web.Request, query: RolloutQuery) -> web.Response:
    _check_page(query, Rollout)
    page = await _store(request).query_rollouts(
        status_in=query.status_in,
        rollout_id_in=query.rollout_id_in,
        rollout_id_contains=query.rollout_id_contains,
        filter_logic=query.filter_logic,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        limit=query.limit,
        offset=query.offset,
    )
    return _json(page)


@routes.get(API_PREFIX + "/rollouts")
async def query_rollouts(request: web.Request) -> web.Response:
    return await _query_rollouts(request, _query(request, RolloutQuery))


@routes.post(API_PREFIX + "/rollouts/search")
async def search_rollouts(request: web.Request) -> web.Response:
    body = await _body(request, RolloutQuery)
    assert body is not None
    return await _query_rollouts(request, body)


@routes.get(API_PREFIX + "/rollouts/{rollout_id}/attempts/latest")
async def latest_attempt(request: web.Request) -> web.Response:
    return _json(await _store(request).get_latest_attempt(request.match_info["rollout_id"]))


async def _query_attempts(request: web.Request, query: AttemptQuery) -> web.Response:
    _check_page(query, Attempt)
    page = await _store(request).query_attempts(
        request.match_info["rollout_id"],
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        limit=query.limit,
        offset=query.offset,
    )
    return _json(page)


@routes.get(API_PREFIX + "/rollouts/{rollout_id}/attempts")
async def query_attempts(request: web.Request) -> web.Response:
    return await _query_attempts(request, _query(request, AttemptQuery))


@routes.post(API_PREFIX + "/rollouts/{rollout_id}/attempts/search")
async def search_attempts(request: web.Request) -> web.Response:
    body = await _body(request, AttemptQuery)
    assert body is not None
    return await _query_attempts(request, body)


@routes.post(API_PREFIX + "/rollouts/{rollout_id}/attempts")
async def start_attempt(request: web.Request) -> web.Response:
    body = await _body(request, WorkerIdBody, required=False)
    worker_id = body.worker_id if body else None
    return _json(await _store(request).start_attempt(request.match_info["rollout_id"], worker_id=worker_id), 201)


@routes.post(API_PREFIX + "/rollouts/{rollout_id}/attempts/{attempt_id}")
async def update_attempt(request: web.Request) -> web.Response:
    body = await _body(request, UpdateAttemptBody)
    attempt = await _store(request).update_attempt(
        rollout_id=request.match_info["rollout_id"],
        attempt_id=request.match_info["attempt_id"],
        status=_set_or_unset(body, "status", nullable=False),
        worker_id=_set_or_unset(body, "worker_id", nullable=False),
        last_heartbeat_time=_set_or_unset(body, "last_heartbeat_time", nullable=False),
        metadata=_set_or_unset(body, "metadata", nullable=False),
    )
    return _json(attempt)


@routes.get(API_PREFIX + "/rollouts/{rollout_id}")
async def get_rollout(request: web.Request) -> web.Response:
    return _json(await _store(request).get_rollout_by_id(request.match_info["rollout_id"]))


@routes.post(API_PREFIX + "/rollouts/{rollout_id}")
async def update_rollout(request: web.Request) -> web.Response:
    body = await _body(request, UpdateRolloutBody)
    rollout = await _store(request).update_rollout(
        rollout_id=request.match_info["rollout_id"],
        input=_set_or_unset(body, "input"),
        mode=_set_or_unset(body, "mode"),
        resources_id=_set_or_unset(body, "resources_id"),
        status=_set_or_unset(body, "status", nullable=False),
        config=_set_or_unset(body, "config", nullable=False),
        metadata=_set_or_unset(body, "metadata"),
    )
    return _json(rollout)


async def _query_workers(request: web.Request, query: WorkerQuery) -> web.Response:
    _check_page(query, Worker)
    page = await _store(request).query_workers(
        status_in=query.status_in,
        worker_id_contains=query.worker_id_contains,
        filter_logic=query.filter_logic,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        limit=query.limit,
        offset=query.offset,
    )
    return _json(page)


@routes.get(API_PREFIX + "/workers")
async def query_workers(request: web.Request) -> web.Response:
    return await _query_workers(request, _query(request, WorkerQuery))


@routes.post(API_PREFIX + "/workers/search")
async def search_workers(request: web.Request) -> web.Response:
    body = await _body(request, WorkerQuery)
    assert body is not None
    return await _query_workers(request, body)


@routes.get(API_PREFIX + "/workers/{worker_id}")
async def get_worker(request: web.Request) -> web.Response:
    return _json(await _store(request).get_worker_by_id(request.match_info["worker_id"]))


@routes.post(API_PREFIX + "/workers/{worker_id}")
async def update_worker(request: web.Request) -> web.Response:
    body = await _body(request, UpdateWorkerBody, required=False)
    worker = await _store(request).update_worker(
        request.match_info["worker_id"], heartbeat_stats=_set_or_unset(body, "heartbeat_stats", nullable=False)
    )
    return _json(worker)


def _resources(data: Any) -> NamedResources:
    try:
        return ResourcesUpdate.model_validate(
            {"resources_id": "-", "create_time": 0, "update_time": 0, "version": 1, "resources": data}
        ).resources
    except ValidationError as exc:
        errors = [e for e in _validation_detail(exc, "body") if e["loc"][1:2] == ["resources"]]
        for error in errors:
            error["loc"] = ["body", *error["loc"][2:]]
        raise _Unprocessable(errors) from None


@routes.get(API_PREFIX + "/resources")
async def query_resources(request: web.Request) -> web.Response:
    query = _query(request, ResourcesQuery)
    _check_page(query, ResourcesUpdate)
    page = await _store(request).query_resources(
        resources_id=query.resources_id,
        resources_id_contains=query.resources_id_contains,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        limit=query.limit,
        offset=query.offset,
    )
    return _json(page)


@routes.post(API_PREFIX + "/resources")
async def add_resources(request: web.Request) -> web.Response:
    resources = _resources(await _read_json(request))
    return _json(await _store(request).add_resources(resources), status=201)


@routes.get(API_PREFIX + "/resources/latest")
async def latest_resources(request: web.Request) -> web.Response:
    return _json(await _store(request).get_latest_resources())


@routes.get(API_PREFIX + "/resources/{resources_id}")
async def get_resources(request: web.Request) -> web.Response:
    return _json(await _store(request).get_resources_by_id(request.match_info["resources_id"]))


@routes.post(API_PREFIX + "/resources/{resources_id}")
async def update_resources(request: web.Request) -> web.Response:
    resources = _resources(await _read_json(request))
    return _json(await _store(request).update_resources(request.match_info["resources_id"], resources))


@routes.post(API_PREFIX + "/spans")
async def add_span(request: web.Request) -> web.Response:
    span = await _body(request, Span)
    assert span is not None
    return _json(await _store(request).add_span(span), status=201)


async def _query_spans(request: web.Request, query: SpanQuery) -> web.Response:
    _check_page(query, Span)
    page = await _store(request).query_spans(
        query.rollout_id,
        query.attempt_id,
        trace_id=query.trace_id,
        trace_id_contains=query.trace_id_contains,
        span_id=query.span_id,
        span_id_contains=query.span_id_contains,
        parent_id=query.parent_id,
        parent_id_contains=query.parent_id_contains,
        name=query.name,
        name_contains=query.name_contains,
        filter_logic=query.filter_logic,
        sort_by=query.sort_by,
        sort_order=query.sort_order,
        limit=query.limit,
        offset=query.offset,
    )
    return _json(page)


@routes.get(API_PREFIX + "/spans")
async def query_spans(request: web.Request) -> web.Response:
    return await _query_spans(request, _query(request, SpanQuery))


@routes.post(API_PREFIX + "/spans/search")
async def search_spans(request: web.Request) -> web.Response:
    body = await _body(request, SpanQuery)
    assert body is not None
    return await _query_spans(request, body)


@routes.post(API_PREFIX + "/spans/next")
async def next_sequence_id(request: web.Request) -> web.Response:
    body = await _body(request, NextSequenceIdBody)
    assert body is not None
    return _json({"sequence_id": await _store(request).get_next_span_sequence_id(body.rollout_id, body.attempt_id)})


@routes.post(API_PREFIX + "/waits/rollouts")
async def wait_for_rollouts(request: web.Request) -> web.Response:
    body = await _body(request, WaitBody)
    assert body is not None
    # An HTTP request cannot block forever: `timeout: null` waits at most max_wait_seconds.
    cap = request.app[CONFIG].max_wait_seconds
    timeout = cap if body.timeout is None else min(body.timeout, cap)
    return _json(await _store(request).wait_for_rollouts(rollout_ids=body.rollout_ids, timeout=timeout))


@routes.post(OTLP_TRACES_PATH)
async def otlp_traces(request: web.Request) -> web.Response:
    content_type = request.content_type
    reply_type = content_type if content_type in (otlp.PROTOBUF, otlp.JSON) else otlp.PROTOBUF
    try:
        # aiohttp inflates gzip/deflate bodies itself and counts the inflated size against the limit.
        message = otlp.parse_request(await request.read(), content_type)
    except otlp.OtlpError as exc:
        return web.Response(body=otlp.encode_status(str(exc), reply_type), status=400, content_type=reply_type)
    store = _store(request)
    response = await otlp.ingest(message, store.get_many_span_sequence_ids, store.add_many_spans)
    return web.Response(body=otlp.encode_response(response, reply_type), content_type=reply_type)


@routes.get(PROMETHEUS_PATH)
@routes.get(PROMETHEUS_PATH + "/")
async def prometheus(request: web.Request) -> web.Response:
    response = web.Response(body=metrics.exposition())
    response.headers["Content-Type"] = metrics.CONTENT_TYPE
    return response


# --- middleware -----------------------------------------------------------------------------------
def _route(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _error(status: int, detail: Any, **extra: Any) -> web.Response:
    return web.json_response({"detail": detail, **extra}, status=status)


def _authorized(request: web.Request, token: str) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Authenticate, turn every failure into a JSON error (never a traceback), and count the request."""
    started = time.perf_counter()
    route = _route(request)
    response: web.StreamResponse | None = None
    try:
        response = await _answer(request, handler)
        return response
    finally:
        status = response.status if response is not None else 499
        metrics.observe(route, request.method, status, time.perf_counter() - started)


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[CONFIG].token
    if token and request.path != API_PREFIX + "/health" and not _authorized(request, token):
        response = _error(401, "Not authenticated: send 'Authorization: Bearer <token>'")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONFIG].max_body_bytes
        return _error(413, f"Request body exceeds the limit of {limit} bytes (lq store-server --max-body-bytes)")
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except _Unprocessable as exc:
        return _error(422, exc.errors)
    except _BadRequest as exc:
        return _error(400, str(exc))
    except ValidationError as exc:
        return _error(422, _validation_detail(exc, "body"))
    except NotFound as exc:
        return _error(404, str(exc), error_type=type(exc).__name__)
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc), error_type=type(exc).__name__)
    except (RedisError, ConnectionError, TimeoutError) as exc:
        logger.warning("store unavailable while serving %s %s: %s", request.method, request.path, exc)
        return _error(503, f"Store unavailable: {type(exc).__name__}: {exc}", error_type=type(exc).__name__)
    except Exception as exc:
        logger.exception("unhandled error serving %s %s", request.method, request.path)
        return _error(500, "Internal server error", error_type=type(exc).__name__)


def create_app(store: LightningStore, config: StoreServerSettings | None = None) -> web.Application:
    """The application serving `store`; the caller owns the store (close it after the app stops)."""
    config = config or StoreServerSettings()
    app = web.Application(middlewares=[guard], client_max_size=config.max_body_bytes)
    app[STORE] = store
    app[CONFIG] = config
    app.add_routes(routes)
    return app
