"""`emit_exception`: an exception as an `agentlightning.exception` span."""

from __future__ import annotations

import traceback
from typing import Any

from lightning_queue import semconv
from lightning_queue.types import SpanCoreFields

from .spans import emit_span, flatten_attributes


def exception_attributes(exc: BaseException, *, max_traceback_chars: int = 8000) -> dict[str, Any]:
    """Type, message and a traceback cut to a readable length."""
    stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if len(stack) > max_traceback_chars:
        stack = "...\n" + stack[-max_traceback_chars:]
    return {
        semconv.EXCEPTION_TYPE: type(exc).__qualname__,
        semconv.EXCEPTION_MESSAGE: str(exc),
        semconv.EXCEPTION_STACKTRACE: stack,
        semconv.EXCEPTION_ESCAPED: True,
    }


def emit_exception(
    exception: BaseException,
    attributes: dict[str, Any] | None = None,
    propagate: bool = True,
    *,
    max_traceback_chars: int = 8000,
) -> SpanCoreFields:
    """Record an exception span in the current rollout (and return it)."""
    if not isinstance(exception, BaseException):
        raise TypeError(f"emit_exception needs an exception, got {type(exception).__name__}: {exception!r:.80}")
    attrs = exception_attributes(exception, max_traceback_chars=max_traceback_chars)
    attrs.update(flatten_attributes(attributes or {}))
    return emit_span("emit_exception", semconv.SPAN_EXCEPTION, attrs, propagate=propagate)
