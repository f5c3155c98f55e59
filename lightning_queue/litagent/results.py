"""What an agent returned, as the spans its attempt stores (the v0.3 result rules), on any `LightningStore`.

The in-process `LitAgentRunner` uses these; they are the store-agnostic core of `workers/results.py`, which
adds the Redis-specific retry rules (the worker can move to calling these).
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Sequence
from typing import Any

from ..reward import emit_exception, emit_reward
from ..store.base import LightningStore
from ..store.otel import span_from_otel
from ..types import AttemptedRollout, Span, SpanCoreFields

logger = logging.getLogger(__name__)

EXPECTED = "None, a float reward, or a list of Span / SpanCoreFields / OpenTelemetry ReadableSpan"


def _kind(item: object) -> str:
    if isinstance(item, Span):
        return "span"
    if isinstance(item, SpanCoreFields):
        return "core"
    if hasattr(item, "get_span_context") and hasattr(item, "name"):
        return "otel"
    return type(item).__name__


def check_result(result: object) -> tuple[str, list[Any]]:
    """Classify a result as ("none"|"reward"|"span"|"core"|"otel", items); raise on anything else.

    A bool or int reward is converted to float (with a warning). A list mixing kinds is a ValueError and
    any other type a TypeError, naming what was returned.
    """
    if result is None:
        return "none", []
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(f"agent returned an awaitable ({type(result).__name__}); make it async (rollout_async)")
    if isinstance(result, bool | int):
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


async def _seqs(store: LightningStore, rollout: AttemptedRollout, n: int) -> list[int]:
    if n == 0:
        return []
    return list(await store.get_many_span_sequence_ids([(rollout.rollout_id, rollout.attempt.attempt_id)] * n))


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


async def spans_for(store: LightningStore, rollout: AttemptedRollout, kind: str, items: list[Any]) -> list[Span]:
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


async def exception_span(store: LightningStore, rollout: AttemptedRollout, exc: BaseException) -> Span:
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
