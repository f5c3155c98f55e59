"""Turn what an agent returned into the spans its attempt stores (the v0.3 result rules)."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import OutOfMemoryError

from lightning_queue.resilience import Backoff
from lightning_queue.reward import emit_exception, emit_reward
from lightning_queue.store import RedisLightningStore
from lightning_queue.store.otel import span_from_otel
from lightning_queue.types import AttemptedRollout, Span, SpanCoreFields

logger = logging.getLogger(__name__)
T = TypeVar("T")

EXPECTED = "None, a float reward, or a list of Span / SpanCoreFields / OpenTelemetry ReadableSpan"
# A result the store refuses (over a size limit, not serialisable) or Redis refuses (OOM under noeviction):
# waiting will not help, so the attempt fails saying why. Not every ResponseError: a failover's READONLY
# or a cluster's TRYAGAIN pass, and a good result must not be failed for them.
UNSTORABLE: tuple[type[Exception], ...] = (ValueError, TypeError, OutOfMemoryError)


def _is_otel_span(item: object) -> bool:
    return hasattr(item, "get_span_context") and hasattr(item, "name") and not isinstance(item, Span)


def _kind(item: object) -> str:
    if isinstance(item, Span):
        return "span"
    if isinstance(item, SpanCoreFields):
        return "core"
    if _is_otel_span(item):
        return "otel"
    return type(item).__name__


def check_result(result: object) -> tuple[str, list[Any]]:
    """Classify a result as ("none"|"reward"|"span"|"core"|"otel", items); raise on anything else.

    A float becomes one reward core span. A mixed list is a ValueError and any other type a
    TypeError; both fail the attempt with a message saying what was returned.
    """
    if result is None:
        return "none", []
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(f"agent returned an awaitable ({type(result).__name__}); make it async (rollout_async)")
    if isinstance(result, bool | int) and not isinstance(result, float):
        logger.warning("agent returned %s %r as its reward; converting it to float", type(result).__name__, result)
        result = float(result)
    if isinstance(result, float):
        return "reward", [emit_reward(result, propagate=False)]
    if isinstance(result, list | tuple):
        if not result:
            logger.warning("agent returned an empty list: the attempt has no spans from it")
            return "none", []
        kinds = {_kind(item) for item in result}
        if len(kinds) > 1 or not kinds <= {"span", "core", "otel"}:
            raise ValueError(
                f"agent returned a list of {', '.join(sorted(kinds))}: expected a list of one kind, "
                "all Span, all SpanCoreFields or all OpenTelemetry ReadableSpan"
            )
        return kinds.pop(), list(result)
    raise TypeError(f"agent returned {type(result).__name__} {result!r:.80}; expected {EXPECTED}")


async def spans_for(store: RedisLightningStore, rollout: AttemptedRollout, kind: str, items: list[Any]) -> list[Span]:
    """The spans to store for `rollout`'s attempt, with sequence ids reserved from the store."""
    if not items:
        return []
    rid, aid = rollout.rollout_id, rollout.attempt.attempt_id
    if kind == "span":
        return _own_spans(items, rollout, await _seqs(store, rollout, sum(1 for s in items if s.sequence_id <= 0)))
    seqs = await _seqs(store, rollout, len(items))
    if kind == "otel":
        return [span_from_otel(item, rid, aid, seq) for item, seq in zip(items, seqs, strict=True)]
    return [
        Span.from_core_fields(core, rollout_id=rid, attempt_id=aid, sequence_id=seq)
        for core, seq in zip(items, seqs, strict=True)
    ]


def _own_spans(spans: Sequence[Span], rollout: AttemptedRollout, seqs: list[int]) -> list[Span]:
    rid, aid = rollout.rollout_id, rollout.attempt.attempt_id
    fresh = iter(seqs)
    out = []
    for span in spans:
        if (span.rollout_id, span.attempt_id) not in (("", ""), (rid, aid)):
            raise ValueError(
                f"agent returned span {span.span_id} of rollout {span.rollout_id!r} attempt {span.attempt_id!r} "
                f"while running rollout {rid!r} attempt {aid!r}; leave the ids empty or use these"
            )
        seq = span.sequence_id if span.sequence_id > 0 else next(fresh)
        out.append(span.model_copy(update={"rollout_id": rid, "attempt_id": aid, "sequence_id": seq}))
    return out


async def _seqs(store: RedisLightningStore, rollout: AttemptedRollout, n: int) -> list[int]:
    if n == 0:
        return []
    pairs = [(rollout.rollout_id, rollout.attempt.attempt_id)] * n
    return list(await store.get_many_span_sequence_ids(pairs))


async def exception_span(store: RedisLightningStore, rollout: AttemptedRollout, exc: BaseException) -> Span:
    """The `agentlightning.exception` span recording why an attempt ended."""
    [seq] = await _seqs(store, rollout, 1)
    return Span.from_core_fields(
        emit_exception(exc), rollout_id=rollout.rollout_id, attempt_id=rollout.attempt.attempt_id, sequence_id=seq
    )


def error_record(exc: BaseException, *, max_traceback_chars: int = 4000) -> dict[str, Any]:
    """Why an attempt ended, for its metadata: exception type, message and a truncated traceback."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(stack) > max_traceback_chars:
        stack = "...\n" + stack[-max_traceback_chars:]
    return {"type": type(exc).__qualname__, "message": str(exc), "traceback": stack}


async def through_oom(op: Callable[[], Awaitable[T]], *, seconds: float) -> T:
    """Run `op`, retrying for up to `seconds` while Redis answers OOM.

    Right after Redis refused a big result, that call's buffers still count against maxmemory for a
    moment, so the small write recording the failure is refused too; a little later it fits.
    """
    deadline = time.monotonic() + seconds
    backoff = Backoff(first=0.1, cap=1.0)
    while True:
        try:
            return await op()
        except OutOfMemoryError as exc:
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("Redis is out of memory (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
