"""Reading a request body: bounded in size, in time and in bytes in flight, parsed as strict JSON, and
(for attributed calls) measured in its recorded form before anything is forwarded."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .errors import ProxyError
from .spans import CallKind, SpanTooLarge, request_attributes

# Deeper bodies get 400: no OpenAI request needs this much nesting, and deeper ones would recurse.
MAX_JSON_DEPTH = 64
# Bodies at least this large are parsed and measured in a thread, so /health and other calls keep
# being served meanwhile (small ones are cheaper inline than a thread hop).
THREAD_BYTES = 64 << 10


class BodyBytes:
    """Bytes of request bodies being received at once, across all connections; over `limit`, new
    bodies are refused at once with 503 instead of being buffered."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def reserve(self, size: int) -> None:
        if self.used + size > self.limit:
            raise ProxyError(
                503,
                f"the proxy is receiving {self.used} bytes of request bodies already (limit {self.limit}); retry later",
                "server_busy",
            )
        self.used += size

    def release(self, size: int) -> None:
        self.used -= size


@dataclass
class ParsedBody:
    body: dict[str, Any]
    # The request part of the span, when the call is attributed.
    attributes: dict[str, Any] | None


class _NonFinite(ValueError):
    """A NaN or Infinity literal in a JSON body (not JSON, and no upstream should receive it)."""


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def _too_deep(value: Any, limit: int) -> bool:
    """Whether `value` nests deeper than `limit` levels; iterative, so any depth is safe to ask about."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def _deep_error() -> ProxyError:
    return ProxyError(400, f"request body is nested deeper than {MAX_JSON_DEPTH} levels of objects and arrays")


def parse(raw: bytes, kind: CallKind, span_room: int | None, span_limit: int | None = None) -> ParsedBody:
    """Strict JSON (no NaN or Infinity, bounded depth); with `span_room`, also the request's attributes."""
    try:
        body = json.loads(raw, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        raise ProxyError(
            400, f"request body contains {exc}, which is not JSON: send a finite number or null instead"
        ) from None
    except RecursionError:
        raise _deep_error() from None
    except ValueError as exc:
        raise ProxyError(400, f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProxyError(400, f"request body must be a JSON object, got {type(body).__name__}")
    if _too_deep(body, MAX_JSON_DEPTH):
        raise _deep_error()
    if span_room is None:
        return ParsedBody(body, None)
    try:
        attributes = request_attributes(kind, str(body.get("model")), body, body.get("stream") is True, span_room)
    except SpanTooLarge:
        raise ProxyError(
            413,
            f"request cannot be recorded: its recorded form (one attribute per field) is over the store's span "
            f"limit of {span_limit if span_limit is not None else span_room} bytes; the call was not forwarded",
            "request_too_large",
        ) from None
    return ParsedBody(body, attributes)


async def read_body(
    request: web.Request,
    kind: CallKind,
    *,
    max_body_bytes: int,
    span_limit: int | None,
    span_room: int | None,
    timeout: float,
    in_flight: BodyBytes,
) -> ParsedBody:
    """The body of a call; `span_limit` (attributed calls) refuses what the store could not record."""
    declared = request.content_length
    limit = max_body_bytes if span_limit is None else min(max_body_bytes, span_limit)
    if declared is not None and declared > limit:
        raise _too_large(declared, max_body_bytes, span_limit)
    reserved = declared if declared is not None else limit
    in_flight.reserve(reserved)
    try:
        raw = await asyncio.wait_for(request.read(), timeout)
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(None, max_body_bytes, span_limit) from None
    except asyncio.TimeoutError:
        raise ProxyError(408, f"request body did not arrive within {timeout:g} s", "request_timeout") from None
    finally:
        in_flight.release(reserved)
    if len(raw) > limit:
        raise _too_large(len(raw), max_body_bytes, span_limit)
    if len(raw) >= THREAD_BYTES:
        return await asyncio.to_thread(parse, raw, kind, span_room, span_limit)
    return parse(raw, kind, span_room, span_limit)


def _too_large(size: int | None, max_body_bytes: int, span_limit: int | None) -> ProxyError:
    if size is not None and size <= max_body_bytes and span_limit is not None and size > span_limit:
        return ProxyError(
            413,
            f"request body of {size} bytes is over what the store can record: its span limit is {span_limit} "
            "bytes; the call was not forwarded",
            "request_too_large",
        )
    what = "request body" if size is None else f"request body of {size} bytes"
    return ProxyError(
        413,
        f"{what} is larger than the proxy's limit of {max_body_bytes} bytes "
        "(raise it with LLMProxy(max_body_bytes=...) or lq proxy --max-body-mb)",
        "request_too_large",
    )
