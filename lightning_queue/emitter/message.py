"""`emit_message`: a text message as an `agentlightning.message` span."""

from __future__ import annotations

from typing import Any

from lightning_queue import semconv
from lightning_queue.types import Span, SpanCoreFields

from .spans import emit_span, flatten_attributes


def emit_message(message: str, attributes: dict[str, Any] | None = None, propagate: bool = True) -> SpanCoreFields:
    """Record a message span in the current rollout (and return it)."""
    if not isinstance(message, str):
        raise TypeError(f"a message is a str, got {type(message).__name__}: {message!r:.80}")
    attrs: dict[str, Any] = {semconv.MESSAGE_BODY: message, **flatten_attributes(attributes or {})}
    return emit_span("emit_message", semconv.SPAN_MESSAGE, attrs, propagate=propagate)


def get_message_value(span: Span | SpanCoreFields) -> str | None:
    value = span.attributes.get(semconv.MESSAGE_BODY)
    return value if isinstance(value, str) else None
