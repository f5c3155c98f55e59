"""Turn what an agent traced and returned into the spans its attempt stores (the v0.3 result rules).

One implementation for every runtime: the worker (`lq worker`, Trainer workers) and the in-process
`LitAgentRunner` both call these, on any `LightningStore`; `workers/results.py` adds only the Redis retry rules.
"""

from __future__ import annotations

import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_queue.emitter import emit_exception, emit_reward
from lightning_queue.reward import find_final_reward, get_reward_value
from lightning_queue.store.base import LightningStore
from lightning_queue.store.otel import span_from_otel
from lightning_queue.tracer import AttemptTrace
from lightning_queue.types import AttemptedRollout, Span, SpanCoreFields

logger = logging.getLogger(__name__)

# Reserves n fresh sequence ids of the attempt being stored (a runtime may fold it into a round trip it makes anyway).
Reserve = Callable[[int], Awaitable[Sequence[int]]]

EXPECTED = "None, a float reward, or a list of Span / SpanCoreFields / OpenTelemetry ReadableSpan (and one reward)"


@dataclass
class AgentResult:
    """What an agent returned: its spans (Span, SpanCoreFields or OTel ReadableSpan) and its reward, if any."""

    items: list[Any] = field(default_factory=list)
    reward: float | None = None


def _is_otel_span(item: object) -> bool:
    return hasattr(item, "get_span_context") and hasattr(item, "name") and not isinstance(item, Span)


def _number(value: object, where: str) -> float | None:
    if isinstance(value, bool | int) and not isinstance(value, float):
        logger.warning(
            "agent returned %s %r as its reward%s; converting it to float", type(value).__name__, value, where
        )
        return float(value)
    return value if isinstance(value, float) else None


def check_result(result: object) -> AgentResult:
    """Split a result into spans and a reward; a TypeError (or ValueError) saying what was returned otherwise.

    A float is the reward; a list may mix Span, SpanCoreFields and OpenTelemetry ReadableSpan items
    with at most one number, the reward.
    """
    if result is None:
        return AgentResult()
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(f"agent returned an awaitable ({type(result).__name__}); make it async (rollout_async)")
    reward = _number(result, "")
    if reward is not None:
        return AgentResult(reward=reward)
    if not isinstance(result, list | tuple):
        raise TypeError(f"agent returned {type(result).__name__} {result!r:.80}; expected {EXPECTED}")
    if not result:
        logger.warning("agent returned an empty list: the attempt has no spans from it")
    out = AgentResult()
    for index, item in enumerate(result):
        if isinstance(item, Span | SpanCoreFields) or _is_otel_span(item):
            out.items.append(item)
            continue
        value = _number(item, f" at index {index}")
        if value is None:
            raise TypeError(
                f"agent returned a list with {type(item).__name__} {item!r:.80} at index {index}; expected {EXPECTED}"
            )
        if out.reward is not None:
            raise ValueError(f"agent returned a list with two rewards ({out.reward!r} and {value!r}); return one")
        out.reward = value
    return out


def _ids(span: Any) -> tuple[str, str]:
    if isinstance(span, Span):
        return span.trace_id, span.span_id
    ctx = span.get_span_context()
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _fresh(result: AgentResult, trace: AttemptTrace | None) -> tuple[list[Any], list[Any]]:
    """(traced spans, returned items not traced already): an agent may emit a span and return it too."""
    traced = trace.readable_spans() if trace is not None else []
    emitted = trace.emitted() if trace is not None else []
    seen = {_ids(s) for s in traced}
    returned = [
        item
        for item in result.items
        if not (item in emitted if isinstance(item, SpanCoreFields) else _ids(item) in seen)
    ]
    return traced, returned


def _reward_of(item: Any) -> float | None:
    if isinstance(item, Span | SpanCoreFields):
        return get_reward_value(item)
    return get_reward_value(SpanCoreFields(name=item.name, attributes=dict(item.attributes or {})))


async def spans_for(
    store: LightningStore,
    rollout: AttemptedRollout,
    result: AgentResult,
    trace: AttemptTrace | None = None,
    reserve: Reserve | None = None,
) -> list[Span]:
    """The spans to store for `rollout`'s attempt: what was traced, then what was returned, with sequence ids.

    A returned reward equal to the last one already recorded (emitted and returned) is stored once.
    """
    traced, returned = _fresh(result, trace)
    items = [*traced, *returned]
    if result.reward is not None:
        last = next((r for r in map(_reward_of, reversed(items)) if r is not None), None)
        if last != result.reward:
            items.append(emit_reward(result.reward, propagate=False))
    if not items:
        return []
    rid, aid = rollout.rollout_id, rollout.attempt.attempt_id
    needed = sum(1 for s in items if not isinstance(s, Span) or s.sequence_id <= 0)
    fresh = iter(await _seqs(store, rollout, needed, reserve))
    out = []
    for item in items:
        if isinstance(item, Span):
            out.append(_own_span(item, rollout, fresh))
        elif isinstance(item, SpanCoreFields):
            out.append(Span.from_core_fields(item, rollout_id=rid, attempt_id=aid, sequence_id=next(fresh)))
        else:
            out.append(span_from_otel(item, rid, aid, next(fresh)))
    return out


def warn_if_no_reward(
    rollout: AttemptedRollout, spans: Sequence[Span], limiter: NoRewardWarnings | None = None
) -> None:
    """The silent loss of an agent that neither emits nor returns a reward: say so, naming the rollout.

    With `limiter`, a runtime running one agent on many rollouts warns of the first few one by one and then
    counts the rest into a periodic summary (an agent missing its reward misses it on every rollout).
    """
    if find_final_reward(spans) is not None:
        return
    if limiter is None or limiter.admit(rollout):
        logger.warning(
            "rollout %s attempt %s ended with no reward (%d spans): call emit_reward(x) in the agent or return x",
            rollout.rollout_id,
            rollout.attempt.attempt_id,
            len(spans),
        )


class NoRewardWarnings:
    """Rate limit of one agent's "ended with no reward" warnings: the first `first` rollouts one by one,
    then one summary every `every` seconds counting the rollouts since (and naming the latest)."""

    def __init__(self, first: int = 5, every: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        if first < 1 or every <= 0:
            raise ValueError(f"NoRewardWarnings needs first >= 1 and every > 0, got first={first!r} every={every!r}")
        self.first = first
        self.every = every
        self._clock = clock
        self._seen = 0
        self._unreported = 0
        self._latest = ""
        self._since = 0.0

    def admit(self, rollout: AttemptedRollout) -> bool:
        """Whether to warn of `rollout` on its own; otherwise it is counted (and the summary logged when due)."""
        self._seen += 1
        if self._seen <= self.first:
            if self._seen == self.first:
                self._since = self._clock()
            return True
        self._unreported += 1
        self._latest = f"rollout {rollout.rollout_id} attempt {rollout.attempt.attempt_id}"
        if self._clock() - self._since >= self.every:
            self.flush()
        return False

    def flush(self) -> None:
        """Log the summary of the rollouts counted since the last one, if any (a runtime calls it when it stops)."""
        if self._unreported:
            logger.warning(
                "%d more rollouts ended with no reward in the last %.0fs (latest: %s): "
                "call emit_reward(x) in the agent or return x",
                self._unreported,
                self._clock() - self._since,
                self._latest,
            )
        self._unreported = 0
        self._since = self._clock()


def _own_span(span: Span, rollout: AttemptedRollout, fresh: Iterator[int]) -> Span:
    rid, aid = rollout.rollout_id, rollout.attempt.attempt_id
    if (span.rollout_id, span.attempt_id) not in (("", ""), (rid, aid)):
        raise ValueError(
            f"agent returned span {span.span_id} of rollout {span.rollout_id!r} attempt {span.attempt_id!r} "
            f"while running rollout {rid!r} attempt {aid!r}; leave the ids empty or use these"
        )
    seq = span.sequence_id if span.sequence_id > 0 else next(fresh)
    return span.model_copy(update={"rollout_id": rid, "attempt_id": aid, "sequence_id": seq})


async def _seqs(store: LightningStore, rollout: AttemptedRollout, n: int, reserve: Reserve | None) -> list[int]:
    if n == 0:
        return []
    if reserve is not None:
        ids = list(await reserve(n))
        if len(ids) != n:
            raise RuntimeError(f"asked for {n} sequence ids of rollout {rollout.rollout_id}, got {len(ids)}")
        return ids
    pairs = [(rollout.rollout_id, rollout.attempt.attempt_id)] * n
    return list(await store.get_many_span_sequence_ids(pairs))


async def failure_spans(
    store: LightningStore,
    rollout: AttemptedRollout,
    exc: BaseException,
    trace: AttemptTrace | None = None,
    reserve: Reserve | None = None,
) -> list[Span]:
    """What a failed attempt stores: the spans traced before it failed, then the `agentlightning.exception` span."""
    return await spans_for(store, rollout, AgentResult(items=[emit_exception(exc, propagate=False)]), trace, reserve)


def error_record(exc: BaseException, *, max_traceback_chars: int = 4000) -> dict[str, Any]:
    """Why an attempt ended, for its metadata: exception type, message and a truncated traceback."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(stack) > max_traceback_chars:
        stack = "...\n" + stack[-max_traceback_chars:]
    return {"type": type(exc).__qualname__, "message": str(exc), "traceback": stack}
