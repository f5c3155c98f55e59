"""Request handlers: chat and text completions (plain and streamed), the model list, health."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST
from redis.exceptions import RedisError

from .body import THREAD_BYTES, read_body
from .config import UpstreamModel
from .errors import ProxyError
from .metrics import CALL_MODEL
from .relay import StreamRelay
from .spans import CallKind, CallRecord
from .state import ProxyState
from .upstream import UPSTREAM_ERRORS, upstream_failure

STATE: web.AppKey[ProxyState] = web.AppKey("lq_proxy_state", ProxyState)
_UPSTREAM_PATHS: dict[str, str] = {"chat": "chat/completions", "completion": "completions"}


def _store_unavailable(exc: BaseException) -> ProxyError:
    return ProxyError(503, f"the proxy's store is unavailable ({type(exc).__name__}); retry later", "store_error")


def _pick_model(state: ProxyState, body: dict[str, Any]) -> UpstreamModel:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise ProxyError(400, f'request body needs "model": one of {state.models.names}')
    upstream = state.models.pick(name)
    if upstream is None:
        raise ProxyError(404, f"unknown model {name!r}; this proxy serves {state.models.names}", "model_not_found")
    return upstream


async def _attribute(
    request: web.Request,
    state: ProxyState,
    kind: CallKind,
    body: dict[str, Any],
    attributes: dict[str, Any] | None,
    attempt_version: int | None,
    policy_version: int | None,
) -> CallRecord | None:
    rollout_id = request.match_info.get("rollout_id")
    attempt_id = request.match_info.get("attempt_id")
    if rollout_id is None or attempt_id is None:
        state.note_unattributed(request.path)
        return None
    try:
        sequence_id = await state.writer.sequence_ids.submit((rollout_id, attempt_id))
    except (RedisError, OSError) as exc:
        raise _store_unavailable(exc) from None
    return CallRecord(
        kind=kind,
        rollout_id=rollout_id,
        attempt_id=attempt_id,
        sequence_id=sequence_id,
        model=str(body["model"]),
        request=body,
        start_time=time.time(),
        streamed=body.get("stream") is True,
        request_attrs=attributes,
        policy_version=policy_version if policy_version is not None else attempt_version,
        attempt_policy_version=attempt_version,
    )


def _refuse_unattributed(request: web.Request, state: ProxyState) -> None:
    state.stats.unattributed_calls += 1
    raise ProxyError(
        404,
        f"{request.path} has no rollout attempt, so the call could not be recorded: call "
        f"{request.url.origin()}/rollout/<rollout_id>/attempt/<attempt_id>/v1/... (the endpoint of "
        "proxy.as_resource(rollout_id, attempt_id)), or start the proxy with --allow-unattributed "
        "(LLMProxy(allow_unattributed=True)) to serve unrecorded calls",
        "unattributed_call",
    )


async def check_path_ids(request: web.Request, state: ProxyState) -> int | None:
    """Refuse ids of dead or unknown attempts; returns the attempt's policy version."""
    rollout_id = request.match_info.get("rollout_id")
    attempt_id = request.match_info.get("attempt_id")
    if rollout_id is None or attempt_id is None:
        return None
    try:
        return await state.directory.check(rollout_id, attempt_id)
    except (RedisError, OSError) as exc:
        raise _store_unavailable(exc) from None


def _headers(call: CallRecord | None) -> dict[str, str]:
    if call is None:
        return {}
    return {"x-rollout-id": call.rollout_id, "x-attempt-id": call.attempt_id, "x-sequence-id": str(call.sequence_id)}


async def _failed(state: ProxyState, call: CallRecord | None, error: ProxyError) -> web.Response:
    state.stats.upstream_errors += 1
    if call is not None:
        call.end_time = time.time()
        call.status_code = error.status
        call.fail(error.error_type, error.message)
        await state.record(call)
    return error.response(_headers(call))


def _scrub_and_parse(state: ProxyState, raw: bytes) -> tuple[bytes, Any]:
    raw = state.scrub(raw)
    try:
        return raw, json.loads(raw)
    except (ValueError, RecursionError):
        return raw, None


def _error_message(payload: Any, raw: bytes) -> str:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message") or payload["error"])
    if isinstance(payload, dict) and "error" in payload:
        return str(payload["error"])
    return raw[:500].decode("utf-8", errors="replace")


async def _whole_response(
    state: ProxyState, call: CallRecord | None, upstream: UpstreamModel, response: aiohttp.ClientResponse
) -> web.Response:
    """Read an upstream answer in full, record it, and pass it on with its status."""
    try:
        raw = await response.read()
    except UPSTREAM_ERRORS as exc:
        raise upstream_failure(exc, upstream) from None
    # Scrubbing and parsing a large answer take tens of milliseconds: not on the loop.
    raw, payload = (
        await asyncio.to_thread(_scrub_and_parse, state, raw)
        if len(raw) >= THREAD_BYTES
        else _scrub_and_parse(state, raw)
    )
    status = response.status
    if payload is None:
        where = f"upstream of model {upstream.name!r}"
        detail = raw[:500].decode("utf-8", errors="replace")
        error = (
            ProxyError(502, f"{where} answered {status} with a body that is not JSON: {detail!r}", "upstream_error")
            if status < 400
            else ProxyError(status, f"{where} answered {status}: {detail}", "upstream_error")
        )
        return await _failed(state, call, error)
    if status >= 400:
        state.stats.upstream_errors += 1
    if call is not None:
        call.end_time = time.time()
        call.status_code = status
        if status < 400 and isinstance(payload, dict):
            call.response = payload
            call.response_bytes = len(raw)
        if status >= 400:
            call.fail("upstream_http_error", f"upstream answered {status}: {_error_message(payload, raw)}")
        await state.record(call)
    return web.Response(body=raw, status=status, content_type="application/json", headers=_headers(call))


async def _call(request: web.Request, kind: CallKind) -> web.StreamResponse:
    state = request.app[STATE]
    attributed = "rollout_id" in request.match_info
    if not attributed and not state.allow_unattributed:
        _refuse_unattributed(request, state)
    # The version the upstream serves now: read at admission, which a weight-sync pause holds back.
    policy_version = state.barrier.view.policy_version
    state.barrier.admit()
    try:
        return await _admitted(request, state, kind, attributed, policy_version)
    finally:
        state.barrier.leave()


async def _admitted(
    request: web.Request, state: ProxyState, kind: CallKind, attributed: bool, policy_version: int | None
) -> web.StreamResponse:
    attempt_version = await check_path_ids(request, state)
    parsed = await read_body(
        request,
        kind,
        max_body_bytes=state.max_body_bytes,
        span_limit=state.span_limit if attributed else None,
        span_room=state.span_room if attributed else None,
        timeout=state.limits.body_timeout,
        in_flight=state.body_bytes,
    )
    body = parsed.body
    upstream = _pick_model(state, body)
    CALL_MODEL.set(upstream.name)
    stream = body.get("stream") is True
    upstream_body = {**body, **upstream.extra_body, "model": upstream.model}
    call = await _attribute(request, state, kind, body, parsed.attributes, attempt_version, policy_version)
    state.stats.calls += 1
    try:
        async with state.upstream.post(upstream, _UPSTREAM_PATHS[kind], upstream_body, stream=stream) as response:
            if stream and response.status < 400 and response.content_type == "text/event-stream":
                relay = StreamRelay(state, call, upstream, response, kind)
                return await relay.run(request, _headers(call))
            # Errors, and upstreams that answer a stream request with plain JSON, are passed on whole.
            return await _whole_response(state, call, upstream, response)
    except ProxyError as error:
        return await _failed(state, call, error)


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _call(request, "chat")


async def completions(request: web.Request) -> web.StreamResponse:
    return await _call(request, "completion")


async def list_models(request: web.Request) -> web.Response:
    state = request.app[STATE]
    await check_path_ids(request, state)
    data = [{"id": name, "object": "model", "created": 0, "owned_by": "lightning-queue"} for name in state.models.names]
    return web.json_response({"object": "list", "data": data})


async def metrics(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.Response(body=state.metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


async def health(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response({"status": "ok", **state.health()})
