"""`emit_reward`: a reward as an annotation span (`agentlightning.reward.<i>.name|value`, index 0 primary)."""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable
from typing import Any, TypeVar, cast

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


_Fn = TypeVar("_Fn", bound=Callable[..., Any])


def _emit_returned(fn: Callable[..., Any], result: Any) -> None:
    # v0.3's decorator records a reward-less span when the function returns None or a non-number;
    # here a None is skipped (there is no reward to learn from) and a non-number is a clear error.
    if result is None:
        warnings.warn(f"@reward function {fn.__qualname__} returned None: no reward recorded", stacklevel=3)
        return
    if not isinstance(result, int | float):  # a bool counts as 0/1, as in emit_reward
        raise TypeError(
            f"@reward function {fn.__qualname__} must return a number, got {type(result).__name__}: {result!r:.100}"
        )
    emit_reward(float(result))


def reward(fn: _Fn) -> _Fn:
    """Decorate a function returning a number so that each call records that number as a reward span.

    v0.3's `@agl.reward` (deprecated there in favour of `emit_reward`, which it calls). Sync and async
    functions both work; the wrapped function still returns its value.
    """
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def wrapper_async(*args: Any, **kwargs: Any) -> Any:
            result = await fn(*args, **kwargs)
            _emit_returned(fn, result)
            return result

        return cast(_Fn, wrapper_async)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        _emit_returned(fn, result)
        return result

    return cast(_Fn, wrapper)
