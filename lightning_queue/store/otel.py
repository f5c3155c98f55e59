"""Convert an OpenTelemetry SDK `ReadableSpan` into a stored `Span`, without importing the SDK."""

from __future__ import annotations

from typing import Any

from ..types import Event, Link, OtelResource, Span, SpanContext, SpanCoreFields, TraceStatus


def _hex(value: Any, width: int) -> str:
    return format(value, f"0{width}x") if isinstance(value, int) else str(value)


def _context(ctx: Any) -> SpanContext | None:
    if ctx is None:
        return None
    state = getattr(ctx, "trace_state", None) or {}
    return SpanContext(
        trace_id=_hex(ctx.trace_id, 32),
        span_id=_hex(ctx.span_id, 16),
        is_remote=bool(getattr(ctx, "is_remote", False)),
        trace_state={str(k): str(v) for k, v in dict(state).items()},
    )


def attributes_of(source: Any) -> dict[str, Any]:
    """A plain dict of OTel attributes; the SDK keeps sequences as tuples, stored spans hold lists."""
    return {
        str(k): list(v) if isinstance(v, tuple) else v
        for k, v in dict(getattr(source, "attributes", None) or {}).items()
    }


def _status_code(status: Any) -> str:
    code = getattr(status, "status_code", None)
    name = getattr(code, "name", code)
    return str(name) if name in ("UNSET", "OK", "ERROR") else "UNSET"


def span_from_otel(readable: Any, rollout_id: str, attempt_id: str, sequence_id: int) -> Span:
    """Duck-typed on the SDK's ReadableSpan: name, context, parent, attributes, events, links, times."""
    if not hasattr(readable, "name") or (
        not hasattr(readable, "get_span_context") and not hasattr(readable, "context")
    ):
        raise TypeError(
            f"add_otel_span expects an OpenTelemetry ReadableSpan, a Span or SpanCoreFields, "
            f"got {type(readable).__name__}"
        )
    ctx = _context(readable.get_span_context() if hasattr(readable, "get_span_context") else readable.context)
    parent = _context(getattr(readable, "parent", None))
    status = getattr(readable, "status", None)
    resource = getattr(readable, "resource", None)
    return Span(
        rollout_id=rollout_id,
        attempt_id=attempt_id,
        sequence_id=sequence_id,
        trace_id=ctx.trace_id if ctx else "",
        span_id=ctx.span_id if ctx else "",
        parent_id=parent.span_id if parent else None,
        name=str(readable.name),
        status=TraceStatus(status_code=_status_code(status), description=getattr(status, "description", None)),
        attributes=attributes_of(readable),
        events=[
            Event(name=e.name, attributes=dict(e.attributes or {}), timestamp=getattr(e, "timestamp", None))
            for e in getattr(readable, "events", None) or []
        ],
        links=[
            Link(context=_context(link.context), attributes=dict(link.attributes or {}))
            for link in getattr(readable, "links", None) or []
        ],
        start_time=getattr(readable, "start_time", None),
        end_time=getattr(readable, "end_time", None),
        context=ctx,
        parent=parent,
        resource=OtelResource(
            attributes=dict(getattr(resource, "attributes", None) or {}),
            schema_url=getattr(resource, "schema_url", "") or "",
        ),
    )


def span_for_attempt(value: Any, rollout_id: str, attempt_id: str, sequence_id: int) -> Span:
    """What `add_otel_span` stores: a `Span` re-addressed, `SpanCoreFields` given ids, or an SDK span converted."""
    if isinstance(value, Span):
        return value.model_copy(update={"rollout_id": rollout_id, "attempt_id": attempt_id, "sequence_id": sequence_id})
    if isinstance(value, SpanCoreFields):
        return Span.from_core_fields(value, rollout_id=rollout_id, attempt_id=attempt_id, sequence_id=sequence_id)
    return span_from_otel(value, rollout_id, attempt_id, sequence_id)
