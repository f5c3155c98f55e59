"""Reading rewards from spans (`agentlightning.reward.<i>.name|value`, index 0 is the primary).

Rewards are recorded by `lightning_queue.emitter.emit_reward`, re-exported here as in v0.3.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from . import semconv
from .emitter import emit_exception, emit_reward, reward
from .types import Span, SpanCoreFields

__all__ = [
    "emit_exception",
    "emit_reward",
    "find_final_reward",
    "find_reward_spans",
    "get_reward_value",
    "get_rewards_from_span",
    "is_reward_span",
    "reward",
]


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
