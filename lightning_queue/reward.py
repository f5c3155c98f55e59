"""Rewards as annotation spans (`agentlightning.reward.<i>.name|value`, index 0 is the primary)."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Sequence
from typing import Any

from . import semconv
from .types import Span, SpanCoreFields, TraceStatus


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    raise TypeError(f"reward {name!r} must be a number, got {type(value).__name__}: {value!r:.100}")


def emit_reward(
    reward: float | dict[str, Any],
    *,
    primary_key: str | None = None,
    attributes: dict[str, Any] | None = None,
    propagate: bool = True,
) -> SpanCoreFields:
    """Build the reward annotation span.

    There is no ambient tracer here: the worker stores what an agent returns, so `propagate=True`
    and `propagate=False` both just return the span for the caller to hand back or store.
    """
    if isinstance(reward, dict):
        if primary_key is None:
            raise ValueError("a dict of rewards needs primary_key naming the primary one")
        if primary_key not in reward:
            raise ValueError(f"primary_key {primary_key!r} is not among the rewards {list(reward)!r}")
        ordered = [(primary_key, reward[primary_key])] + [(k, v) for k, v in reward.items() if k != primary_key]
    else:
        ordered = [("primary", reward)]
    attrs: dict[str, Any] = {}
    for i, (name, value) in enumerate(ordered):
        attrs[f"{semconv.REWARD_PREFIX}.{i}.name"] = name
        attrs[f"{semconv.REWARD_PREFIX}.{i}.value"] = _number(name, value)
    attrs.update(attributes or {})
    now = time.time()
    return SpanCoreFields(
        name=semconv.SPAN_ANNOTATION,
        status=TraceStatus(status_code="OK"),
        attributes=attrs,
        start_time=now,
        end_time=now,
    )


def emit_exception(exc: BaseException, *, max_traceback_chars: int = 8000) -> SpanCoreFields:
    """An exception as a span: type, message and a traceback cut to a readable length."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(stack) > max_traceback_chars:
        stack = "...\n" + stack[-max_traceback_chars:]
    now = time.time()
    return SpanCoreFields(
        name=semconv.SPAN_EXCEPTION,
        status=TraceStatus(status_code="OK"),
        attributes={
            semconv.EXCEPTION_TYPE: type(exc).__qualname__,
            semconv.EXCEPTION_MESSAGE: str(exc),
            semconv.EXCEPTION_STACKTRACE: stack,
            semconv.EXCEPTION_ESCAPED: True,
        },
        start_time=now,
        end_time=now,
    )


def get_rewards_from_span(span: Span | SpanCoreFields) -> list[dict[str, Any]]:
    """The full `[{name, value}]` list of a v0.3 reward span (empty if it is none)."""
    found: dict[int, dict[str, Any]] = {}
    prefix = semconv.REWARD_PREFIX + "."
    for key, value in span.attributes.items():
        if not key.startswith(prefix):
            continue
        index, _, field = key[len(prefix) :].partition(".")
        if index.isdigit() and field in ("name", "value"):
            found.setdefault(int(index), {})[field] = value
    return [found[i] for i in sorted(found)]


def _agentops_reward(value: Any) -> tuple[bool, float | None]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return False, None
    if isinstance(value, dict) and value.get("type") == "reward":
        reward = value.get("value")
        return True, None if reward is None else float(reward)
    return False, None


def get_reward_value(span: Span | SpanCoreFields) -> float | None:
    """The primary reward of a span in any of the three known formats, else None."""
    attrs = span.attributes
    if any(k.startswith(semconv.REWARD_PREFIX) for k in attrs):
        rewards = get_rewards_from_span(span)
        if rewards and rewards[0].get("value") is not None:
            return float(rewards[0]["value"])
        return None
    for key in ("agentops.task.output", "agentops.entity.output"):
        if key in attrs:
            matched, reward = _agentops_reward(attrs[key])
            if matched:
                return reward
    if span.name == semconv.SPAN_ANNOTATION and "reward" in attrs and attrs["reward"] is not None:
        return float(attrs["reward"])
    return None


def is_reward_span(span: Span | SpanCoreFields) -> bool:
    return get_reward_value(span) is not None


def find_reward_spans(spans: Sequence[Span]) -> list[Span]:
    return [s for s in spans if is_reward_span(s)]


def find_final_reward(spans: Sequence[Span]) -> float | None:
    """The last reward in the order given (callers pass spans sorted by sequence id)."""
    for span in reversed(spans):
        reward = get_reward_value(span)
        if reward is not None:
            return reward
    return None
