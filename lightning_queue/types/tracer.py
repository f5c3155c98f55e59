"""Spans in the OpenTelemetry shape the v0.3 contract stores, plus the light `SpanCoreFields`."""

from __future__ import annotations

import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

AttributeValue = str | bool | int | float | list[str] | list[bool] | list[int] | list[float]
Attributes = dict[str, Any]
StatusCode = Literal["UNSET", "OK", "ERROR"]


def _otel_time(value: Any) -> float | None:
    """Seconds since the epoch; OTel nanosecond stamps are scaled down, falsy values become None."""
    if not value:
        return None
    seconds = float(value)
    return seconds / 1e9 if seconds > 1e12 else seconds


class SpanContext(BaseModel):
    model_config = ConfigDict(extra="allow")

    trace_id: str
    span_id: str
    is_remote: bool
    trace_state: dict[str, str]


class TraceStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    status_code: StatusCode
    description: str | None = None


class Event(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str
    attributes: Attributes
    timestamp: float | None = None


class Link(BaseModel):
    model_config = ConfigDict(extra="allow")

    context: SpanContext
    attributes: Attributes | None = None


class OtelResource(BaseModel):
    model_config = ConfigDict(extra="allow")

    attributes: Attributes
    schema_url: str = ""


class SpanCoreFields(BaseModel):
    """What an emitter or an agent hands back before the store gives it ids."""

    model_config = ConfigDict(extra="allow")

    name: str
    status: TraceStatus = Field(default_factory=lambda: TraceStatus(status_code="OK"))
    attributes: Attributes = Field(default_factory=dict)
    start_time: float | None = None
    end_time: float | None = None


def new_trace_id() -> str:
    return secrets.token_hex(16)


def new_span_id() -> str:
    return secrets.token_hex(8)


class Span(BaseModel):
    model_config = ConfigDict(extra="allow")

    rollout_id: str
    attempt_id: str
    sequence_id: int
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    status: TraceStatus
    attributes: Attributes
    events: list[Event]
    links: list[Link]
    start_time: float | None
    end_time: float | None
    context: SpanContext | None
    parent: SpanContext | None
    resource: OtelResource

    @field_validator("start_time", "end_time", mode="before")
    @classmethod
    def _normalise_time(cls, value: Any) -> float | None:
        return _otel_time(value)

    @classmethod
    def from_attributes(
        cls,
        *,
        attributes: Attributes,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
        sequence_id: int | None = None,
        name: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        parent_id: str | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        resource: OtelResource | None = None,
        status: TraceStatus | None = None,
    ) -> Span:
        trace_id = trace_id or new_trace_id()
        span_id = span_id or new_span_id()
        parent = (
            SpanContext(trace_id=trace_id, span_id=parent_id, is_remote=False, trace_state={}) if parent_id else None
        )
        return cls(
            rollout_id=rollout_id or "",
            attempt_id=attempt_id or "",
            sequence_id=sequence_id or 0,
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent_id,
            name=name or "agentlightning.virtual",
            status=status or TraceStatus(status_code="OK"),
            attributes=dict(attributes),
            events=[],
            links=[],
            start_time=start_time,
            end_time=end_time,
            context=SpanContext(trace_id=trace_id, span_id=span_id, is_remote=False, trace_state={}),
            parent=parent,
            resource=resource or OtelResource(attributes={}, schema_url=""),
        )

    @classmethod
    def from_core_fields(
        cls,
        core: SpanCoreFields,
        *,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
        sequence_id: int | None = None,
    ) -> Span:
        return cls.from_attributes(
            attributes=core.attributes,
            rollout_id=rollout_id,
            attempt_id=attempt_id,
            sequence_id=sequence_id,
            name=core.name,
            status=core.status,
            start_time=core.start_time or time.time(),
            end_time=core.end_time,
        )


class Triplet(BaseModel):
    """One LLM call made trainable: what went in, what came out, and the reward it earned."""

    model_config = ConfigDict(extra="allow")

    prompt: Any
    response: Any
    reward: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
