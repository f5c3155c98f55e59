"""`emit_reward`: a reward as an annotation span (`agentlightning.reward.<i>.name|value`, index 0 primary)."""

from __future__ import annotations

from typing import Any

from lightning_queue import semconv
from lightning_queue.types import SpanCoreFields

from .spans import emit_span, flatten_attributes


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool | int | float):
        return float(value)
    raise TypeError(f"reward {name!r} must be a number, got {type(value).__name__}: {value!r:.100}")


def reward_attributes(reward: float | dict[str, Any], primary_key: str | None = None) -> dict[str, Any]:
    """The v0.3 reward attributes of one reward or a dict of named rewards (`primary_key` first)."""
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
    return attrs


def emit_reward(
    reward: float | dict[str, Any],
    *,
    primary_key: str | None = None,
    attributes: dict[str, Any] | None = None,
    propagate: bool = True,
) -> SpanCoreFields:
    """Record a reward span in the current rollout and return it.

    Inside a worker's rollout the span is stored with the attempt even if the agent returns None;
    returning it as well does not store it twice. `propagate=False` only builds the span.
    """
    attrs = reward_attributes(reward, primary_key)
    attrs.update(flatten_attributes(attributes or {}))
    return emit_span("emit_reward", semconv.SPAN_ANNOTATION, attrs, propagate=propagate)
