"""`emit_object`: a value as an `agentlightning.object` span (JSON, or a literal for str/number/bool/bytes)."""

from __future__ import annotations

import base64
import json
from typing import Any

from lightning_queue import semconv
from lightning_queue.types import Span, SpanCoreFields

from .spans import emit_span, flatten_attributes

_LITERALS: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


def encode_object(value: Any) -> dict[str, Any]:
    """The object attributes of `value` (a TypeError naming the type if it is not JSON serialisable)."""
    if isinstance(value, bytes):
        return {semconv.OBJECT_TYPE: "bytes", semconv.OBJECT_LITERAL: base64.b64encode(value).decode()}
    if type(value).__name__ in _LITERALS and isinstance(value, str | int | float | bool):
        return {semconv.OBJECT_TYPE: type(value).__name__, semconv.OBJECT_LITERAL: str(value)}
    try:
        encoded = json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"emit_object needs a JSON-serialisable value, got {type(value).__name__}: {exc}") from exc
    kind = f"{type(value).__module__}.{type(value).__qualname__}".removeprefix("builtins.")
    return {semconv.OBJECT_TYPE: kind, semconv.OBJECT_JSON: encoded}


def emit_object(object: Any, attributes: dict[str, Any] | None = None, propagate: bool = True) -> SpanCoreFields:
    """Record an object span in the current rollout (and return it); `object` is v0.3's parameter name."""
    attrs = {**encode_object(object), **flatten_attributes(attributes or {})}
    return emit_span("emit_object", semconv.SPAN_OBJECT, attrs, propagate=propagate)


def get_object_value(span: Span | SpanCoreFields) -> Any:
    """The value an object span holds, or None if it holds none."""
    attrs = span.attributes
    if semconv.OBJECT_JSON in attrs:
        return json.loads(attrs[semconv.OBJECT_JSON])
    if semconv.OBJECT_LITERAL not in attrs:
        return None
    literal, kind = attrs[semconv.OBJECT_LITERAL], attrs.get(semconv.OBJECT_TYPE, "str")
    if kind == "bytes":
        return base64.b64decode(literal)
    if kind == "bool":
        return literal == "True"
    if kind not in _LITERALS:
        raise ValueError(f"object span has literal type {kind!r}; expected one of bytes, {', '.join(_LITERALS)}")
    return _LITERALS[kind](literal)
