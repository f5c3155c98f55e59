"""One proxied LLM call as one span: OTel GenAI attributes, tool calls, token ids, timing and errors.

Attribute keys follow what Agent-Lightning's adapters read from LiteLLM's `litellm_request` span
(`gen_ai.*`, `llm.request.functions.*`, `prompt_token_ids`, `response_token_ids`), so its adapters and
ours read these spans alike.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import semconv
from ..types import OtelResource, Span, TraceStatus

CallKind = Literal["chat", "completion"]
SPAN_NAMES: dict[str, str] = {"chat": "openai.chat.completion", "completion": "openai.completion"}
TRACER_NAME = "lightning_queue.llm_proxy"
_SAMPLING_KEYS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "top_k",
    "frequency_penalty",
    "presence_penalty",
    "seed",
    "n",
    "stop",
)
# Attribute values must be primitives or homogeneous lists of them.
_PRIMITIVES = (str, bool, int, float)
# Dotted keys stop this many segments below a message field; deeper structure is kept as one JSON string,
# so a deeply nested body cannot multiply its key prefixes into a huge span.
MAX_FLATTEN_DEPTH = 10
# What a span may take when the store does not say (RedisLightningStore has `max_span_bytes`).
DEFAULT_SPAN_LIMIT = 16 << 20


class SpanTooLarge(ValueError):
    """The attributes of a call outgrew what the store can record."""


def _text_size(text: str) -> int:
    # msgpack: UTF-8 bytes plus a header of at most 5 bytes; isascii() is O(1).
    return 5 + (len(text) if text.isascii() else len(text.encode("utf-8", errors="surrogatepass")))


def value_size(value: Any) -> int:
    """The bytes `value` takes msgpack-encoded, or slightly more."""
    if isinstance(value, str):
        return _text_size(value)
    if isinstance(value, list):
        return 5 + sum(_text_size(v) if isinstance(v, str) else 9 for v in value)
    return 9


class Attributes(dict[str, Any]):
    """Attributes that count their size as they are set and stop at `limit` bytes (keys and values).

    Flattening charges every key it builds, so it does at most `limit` bytes of work however the
    body is shaped.
    """

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.used = 0

    def charge(self, size: int) -> None:
        self.used += size
        if self.used > self.limit:
            raise SpanTooLarge(f"the recorded form of the call is over {self.limit} bytes")

    def __setitem__(self, key: str, value: Any) -> None:
        self.charge(_text_size(key) + value_size(value))
        super().__setitem__(key, value)

    def merge(self, other: dict[str, Any]) -> None:
        for key, value in other.items():
            self[key] = value


@dataclass
class CallRecord:
    """What the proxy saw of one call, filled in as the call goes."""

    kind: CallKind
    rollout_id: str
    attempt_id: str
    sequence_id: int
    model: str
    request: dict[str, Any]
    start_time: float
    streamed: bool = False
    end_time: float | None = None
    first_chunk_time: float | None = None
    status_code: int | None = None
    response: dict[str, Any] | None = None
    error_type: str | None = None
    error_message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The request's attributes, built (and bounded) once before the call is forwarded.
    request_attrs: dict[str, Any] | None = None
    # Bytes of the answer as received: a large one is turned into attributes off the event loop.
    response_bytes: int = 0
    # The namespace's policy version when the call was admitted (its attempt's if the store has none),
    # and the version its attempt was claimed under.
    policy_version: int | None = None
    attempt_policy_version: int | None = None
    # Each distinct system_fingerprint of a streamed answer, in order (a weights swap mid-stream shows here).
    fingerprints: list[str] = field(default_factory=list)

    def fail(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        self.error_message = message[:1000]


def _value(value: Any) -> Any:
    """A value allowed as an attribute: primitives and homogeneous primitive lists as is, the rest as JSON."""
    if isinstance(value, _PRIMITIVES):
        return value
    if isinstance(value, list) and value and all(type(v) is type(value[0]) for v in value):
        if isinstance(value[0], _PRIMITIVES):
            return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _flatten(prefix: str, value: Any, out: Attributes, depth: int = 0) -> None:
    """Nested dicts and lists become dotted keys (list positions as segments); None is dropped."""
    if value is None:
        return
    nested = isinstance(value, dict) or (
        isinstance(value, list) and value and not all(isinstance(v, _PRIMITIVES) for v in value)
    )
    if nested and depth < MAX_FLATTEN_DEPTH:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in items:
            child = f"{prefix}.{key}"
            out.charge(len(child))
            _flatten(child, item, out, depth + 1)
    else:
        out[prefix] = _value(value)


def int_list(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None


def _tool_calls(prefix: str, calls: Any, out: Attributes) -> None:
    for j, call in enumerate(calls if isinstance(calls, list) else []):
        if not isinstance(call, dict):
            continue
        function = call.get("function") or {}
        for key, value in (
            ("id", call.get("id")),
            ("type", call.get("type")),
            ("name", function.get("name")),
            ("arguments", function.get("arguments")),
        ):
            if value is not None:
                out[f"{prefix}.tool_calls.{j}.{key}"] = _value(value)


def _message(prefix: str, message: dict[str, Any], out: Attributes) -> None:
    for key, value in message.items():
        if key == "tool_calls":
            _tool_calls(prefix, value, out)
        elif key not in ("token_ids", "prompt_token_ids"):
            _flatten(f"{prefix}.{key}", value, out)


def request_attributes(
    kind: CallKind, model: str, body: dict[str, Any], streamed: bool, limit: int = DEFAULT_SPAN_LIMIT
) -> Attributes:
    """The request part of a call's span; raises SpanTooLarge once it grows over `limit` bytes."""
    attrs = Attributes(limit)
    attrs.merge(
        {
            "gen_ai.system": "openai",
            "gen_ai.operation.name": "chat" if kind == "chat" else "text_completion",
            "llm.request.type": kind,
            "gen_ai.request.model": model,
            "llm.is_streaming": streamed,
        }
    )
    for key in _SAMPLING_KEYS:
        if body.get(key) is not None:
            attrs[f"gen_ai.request.{key}"] = _value(body[key])
    if kind == "chat":
        for i, message in enumerate(body.get("messages") or []):
            if isinstance(message, dict):
                _message(f"gen_ai.prompt.{i}", message, attrs)
    else:
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt) else [prompt]
        for i, text in enumerate(prompts):
            if text is not None:
                attrs[f"gen_ai.prompt.{i}.role"] = "user"
                attrs[f"gen_ai.prompt.{i}.content"] = _value(text)
    for i, tool in enumerate(body.get("tools") or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict):
            for key in ("name", "description"):
                if function.get(key) is not None:
                    attrs[f"llm.request.functions.{i}.{key}"] = _value(function[key])
            if function.get("parameters") is not None:
                attrs[f"llm.request.functions.{i}.parameters"] = json.dumps(function["parameters"])
    if body.get("tool_choice") is not None:
        attrs["gen_ai.request.tool_choice"] = _value(body["tool_choice"])
    return attrs


def _response_token_ids(response: dict[str, Any], choice: dict[str, Any]) -> list[int] | None:
    ids = int_list(choice.get("token_ids"))
    if ids is None:
        ids = int_list((choice.get("provider_specific_fields") or {}).get("token_ids"))
    if ids is None:
        # Old vLLM: a top-level list with one id list per choice.
        nested = response.get("response_token_ids")
        if isinstance(nested, list) and nested:
            ids = int_list(nested[0])
    return ids


def response_attributes(response: dict[str, Any], limit: int = DEFAULT_SPAN_LIMIT) -> Attributes:
    attrs = Attributes(limit)
    for key in ("id", "model", "system_fingerprint"):
        if isinstance(response.get(key), str):
            attrs[f"gen_ai.response.{key}"] = response[key]
    choices = [c for c in response.get("choices") or [] if isinstance(c, dict)]
    finish = [c["finish_reason"] for c in choices if isinstance(c.get("finish_reason"), str)]
    if finish:
        attrs["gen_ai.response.finish_reasons"] = finish
    for i, choice in enumerate(choices):
        prefix = f"gen_ai.completion.{i}"
        if isinstance(choice.get("message"), dict):
            _message(prefix, choice["message"], attrs)
        elif "text" in choice:
            attrs[f"{prefix}.role"] = "assistant"
            attrs[f"{prefix}.content"] = _value(choice["text"])
        if choice.get("finish_reason") is not None:
            attrs[f"{prefix}.finish_reason"] = _value(choice["finish_reason"])
        ids = _response_token_ids(response, choice)
        if ids is not None:
            # Choice 0 carries the contract key; further choices (n > 1) keep theirs under their index.
            attrs["response_token_ids" if i == 0 else f"{prefix}.token_ids"] = ids
    prompt_ids = int_list(response.get("prompt_token_ids"))
    if prompt_ids is None and choices:
        prompt_ids = int_list(choices[0].get("prompt_token_ids"))  # vLLM's completions API puts them per choice
    if prompt_ids is not None:
        attrs["prompt_token_ids"] = prompt_ids
    usage = response.get("usage")
    if isinstance(usage, dict):
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            if isinstance(usage.get(key), int):
                attrs[f"gen_ai.usage.{key}"] = usage[key]
    elif prompt_ids is not None and isinstance(attrs.get("response_token_ids"), list):
        # A stream without a usage chunk: the token ids tell the same counts.
        attrs["gen_ai.usage.prompt_tokens"] = len(prompt_ids)
        attrs["gen_ai.usage.completion_tokens"] = len(attrs["response_token_ids"])
        attrs["gen_ai.usage.total_tokens"] = len(prompt_ids) + len(attrs["response_token_ids"])
    if "gen_ai.usage.total_tokens" in attrs:
        attrs["llm.usage.total_tokens"] = attrs["gen_ai.usage.total_tokens"]
    return attrs


# Bytes of a span outside its attributes (ids, names, resource, status, times), with room to spare.
SPAN_OVERHEAD = 2 << 10
_SUMMARY_KEYS = ("gen_ai.response.", "gen_ai.usage.", "llm.usage.")


def _summary(response: dict[str, Any], limit: int) -> tuple[Attributes, str]:
    """What a span keeps of an answer too large to record: ids, usage, finish reasons, token ids if they fit."""
    choices = [c for c in response.get("choices") or [] if isinstance(c, dict)]
    slim = {
        **response,
        "choices": [{k: v for k, v in c.items() if k not in ("message", "text", "logprobs")} for c in choices],
    }
    whole = response_attributes(slim, 1 << 62)
    kept = Attributes(limit)
    kept.merge({k: v for k, v in whole.items() if k.startswith(_SUMMARY_KEYS)})
    try:
        kept.merge({k: whole[k] for k in ("prompt_token_ids", "response_token_ids") if k in whole})
    except SpanTooLarge:
        return kept, "response id, usage and finish reasons"
    return kept, "response id, usage, finish reasons and token ids"


def build_span(call: CallRecord, limit: int = DEFAULT_SPAN_LIMIT) -> Span:
    """The call as a span of at most `limit` bytes: an answer that does not fit is dropped, and the span
    says so (`lq.proxy.truncated`); the request part was bounded before the call was forwarded."""
    room = limit - SPAN_OVERHEAD
    request = call.request_attrs
    if request is None:
        request = request_attributes(call.kind, call.model, call.request, call.streamed, room)
    attrs: dict[str, Any] = dict(request)
    truncated: str | None = None
    if call.response is not None:
        used = request.used if isinstance(request, Attributes) else 0
        try:
            attrs.update(response_attributes(call.response, room - used))
        except SpanTooLarge:
            summary, truncated = _summary(call.response, room - used)
            attrs.update(summary)
    if call.status_code is not None:
        attrs["http.response.status_code"] = call.status_code
    end = call.end_time if call.end_time is not None else call.start_time
    attrs["lq.proxy.latency_ms"] = round((end - call.start_time) * 1000, 3)
    if call.first_chunk_time is not None:
        attrs["lq.proxy.time_to_first_chunk_ms"] = round((call.first_chunk_time - call.start_time) * 1000, 3)
    attrs.update(call.extra)
    status = TraceStatus(status_code="OK")
    if truncated is not None:
        attrs["lq.proxy.truncated"] = True
        attrs["lq.proxy.span_limit_bytes"] = limit
        if call.error_type is None:
            call.fail(
                "span_truncated",
                f"the answer did not fit in the store's span limit of {limit} bytes; "
                f"kept the request and the {truncated}",
            )
    if call.error_type is not None:
        attrs["error.type"] = call.error_type
        status = TraceStatus(status_code="ERROR", description=call.error_message)
    resource = OtelResource(
        attributes={
            semconv.RESOURCE_ROLLOUT_ID: call.rollout_id,
            semconv.RESOURCE_ATTEMPT_ID: call.attempt_id,
            semconv.RESOURCE_SPAN_SEQUENCE_ID: call.sequence_id,
            semconv.RESOURCE_TRACER_NAME: TRACER_NAME,
        }
    )
    return Span.from_attributes(
        attributes=attrs,
        rollout_id=call.rollout_id,
        attempt_id=call.attempt_id,
        sequence_id=call.sequence_id,
        name=SPAN_NAMES[call.kind],
        start_time=call.start_time,
        end_time=end,
        resource=resource,
        status=status,
    )
