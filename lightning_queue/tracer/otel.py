"""`OtelTracer`: OpenTelemetry spans made during a rollout, routed to that rollout's attempt.

One SDK `TracerProvider` serves the whole process (OpenTelemetry allows one global provider, and
instrumentations bind to it): if the application installed its own, a routing processor is added
to it, so its exporters keep working; otherwise one is installed. The processor notes, when a span
starts, which attempt's trace is current in that context (a context variable, so rollouts running
concurrently on one event loop or in worker threads stay apart), and hands the span to that trace
when it ends. Spans started outside any trace are left to the provider's other processors.
"""

from __future__ import annotations

import contextvars
import importlib.util
import logging
import os
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import opentelemetry.trace as trace_api
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace import Span as SdkSpan

from lightning_queue import semconv
from lightning_queue.store.otel import attributes_of, span_from_otel
from lightning_queue.types import Span, SpanCoreFields, TraceStatus

from .base import Tracer, reset_active_tracer, set_active_tracer

logger = logging.getLogger(__name__)

INSTRUMENTATION_NAME = "lightning_queue.tracer"
# The openai-v2 instrumentation reads this once, when instrumenting: without it prompts and completions
# stay off the spans, and prompt optimisation or fine-tuning has nothing to learn from.
CAPTURE_CONTENT_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


class AttemptTrace:
    """The spans collected for one attempt, in the order they ended (thread-safe)."""

    def __init__(self, name: str | None, rollout_id: str, attempt_id: str) -> None:
        self.name = name
        self.rollout_id = rollout_id
        self.attempt_id = attempt_id
        self.closed = False
        self._lock = threading.Lock()
        self._spans: list[ReadableSpan] = []
        self._emitted: list[SpanCoreFields] = []

    def __repr__(self) -> str:
        return f"<AttemptTrace rollout {self.rollout_id!r} attempt {self.attempt_id!r}: {len(self._spans)} spans>"

    def add(self, span: ReadableSpan) -> None:
        with self._lock:
            if self.closed:
                # An agent thread that outlived its rollout (a timeout): its attempt is already stored.
                logger.debug("span %r ended after %r was stored; dropped", span.name, self)
                return
            self._spans.append(span)

    def note_emitted(self, core: SpanCoreFields) -> None:
        """Remember a span an emitter recorded, so the same span returned by the agent is not stored twice."""
        with self._lock:
            self._emitted.append(core)

    def close(self) -> None:
        with self._lock:
            self.closed = True

    def readable_spans(self) -> list[ReadableSpan]:
        with self._lock:
            return list(self._spans)

    def emitted(self) -> list[SpanCoreFields]:
        with self._lock:
            return list(self._emitted)

    def spans(self) -> list[Span]:
        """The collected spans as `Span`s of this attempt (sequence ids are given when they are stored)."""
        return [span_from_otel(s, self.rollout_id, self.attempt_id, 0) for s in self.readable_spans()]


_current: contextvars.ContextVar[AttemptTrace | None] = contextvars.ContextVar("lq_attempt_trace", default=None)


class _AttemptRouter(SpanProcessor):
    """Hands each span to the trace that was current where it started."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # By span context: on_end gets a new ReadableSpan, not the span on_start saw. A span that never
        # ends leaves its entry (a few bytes) behind.
        self._owners: dict[tuple[int, int], AttemptTrace] = {}

    @staticmethod
    def _key(span: ReadableSpan) -> tuple[int, int] | None:
        ctx = span.context
        return None if ctx is None else (ctx.trace_id, ctx.span_id)

    def on_start(self, span: SdkSpan, parent_context: Context | None = None) -> None:
        trace = _current.get()
        key = self._key(span)
        if trace is not None and key is not None:
            with self._lock:
                self._owners[key] = trace

    def on_end(self, span: ReadableSpan) -> None:
        key = self._key(span)
        with self._lock:
            trace = self._owners.pop(key, None) if key is not None else None
        if trace is not None:
            trace.add(span)

    def shutdown(self) -> None:
        with self._lock:
            self._owners.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


_install_lock = threading.Lock()
_provider: TracerProvider | None = None
_openai_instrumented = False


def tracer_provider() -> TracerProvider:
    """The process's SDK provider, with the attempt router on it (installed on first use)."""
    global _provider
    with _install_lock:
        if _provider is not None:
            return _provider
        current = trace_api.get_tracer_provider()
        if isinstance(current, TracerProvider):
            provider = current
            logger.info("tracing rollouts through the application's OpenTelemetry TracerProvider")
        elif isinstance(current, trace_api.ProxyTracerProvider):
            provider = TracerProvider(resource=Resource.create({semconv.RESOURCE_TRACER_NAME: "lightning_queue"}))
            trace_api.set_tracer_provider(provider)
        else:
            raise RuntimeError(
                f"the global OpenTelemetry TracerProvider is a {type(current).__module__}.{type(current).__name__}, "
                "not the SDK's opentelemetry.sdk.trace.TracerProvider: lightning_queue cannot add its span "
                "processor to it; install an SDK TracerProvider (or none) before running agents"
            )
        provider.add_span_processor(_AttemptRouter())
        _provider = provider
        return provider


def instrument_openai(provider: TracerProvider) -> bool:
    """Instrument the OpenAI client once per process (opentelemetry-instrumentation-openai-v2).

    Message content is captured on the spans unless the environment says otherwise. False when the
    `openai` package is not installed (nothing to instrument).
    """
    global _openai_instrumented
    with _install_lock:
        if _openai_instrumented:
            return True
        if importlib.util.find_spec("openai") is None:
            logger.info("openai is not installed: no OpenAI client calls to instrument")
            return False
        os.environ.setdefault(CAPTURE_CONTENT_ENV, "SPAN_ONLY")
        try:
            from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        except ImportError as exc:
            # Rollouts still run and store their other spans; the missing piece is named once.
            logger.warning(
                "the OpenAI client is not instrumented: %s (pip install opentelemetry-instrumentation-openai-v2)", exc
            )
            _openai_instrumented = True
            return False
        instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call]
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument(tracer_provider=provider)
        _openai_instrumented = True
        return True


def _seconds(ns: int | None) -> float | None:
    return None if ns is None else ns / 1e9


def _nanos(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1e9)


def _otel_status(status: TraceStatus) -> trace_api.Status:
    code = {"OK": trace_api.StatusCode.OK, "ERROR": trace_api.StatusCode.ERROR}.get(
        status.status_code, trace_api.StatusCode.UNSET
    )
    # The API refuses a description on anything but ERROR.
    return trace_api.Status(code, status.description if code is trace_api.StatusCode.ERROR else None)


def core_fields(span: ReadableSpan) -> SpanCoreFields:
    """What an emitter hands back for a recorded span."""
    status = span.status
    return SpanCoreFields(
        name=span.name,
        attributes=attributes_of(span),
        start_time=_seconds(span.start_time),
        end_time=_seconds(span.end_time),
        status=TraceStatus(status_code=status.status_code.name, description=status.description),
    )


class OperationRecorder:
    """The span of an `operation_context` block: add attributes, status or an exception to it."""

    def __init__(self, span: trace_api.Span) -> None:
        self.span = span

    def record_attributes(self, attributes: dict[str, Any]) -> None:
        self.span.set_attributes(attributes)

    def record_status(self, status_code: str, description: str | None = None) -> None:
        self.span.set_status(_otel_status(TraceStatus(status_code=status_code, description=description)))

    def record_exception(self, exception: BaseException) -> None:
        self.span.record_exception(exception)
        self.record_status("ERROR", str(exception))

    def get_recorded_span(self) -> SpanCoreFields:
        if not isinstance(self.span, ReadableSpan):
            raise TypeError(f"the operation's span is a {type(self.span).__name__}, not an SDK ReadableSpan")
        return core_fields(self.span)


class OtelTracer(Tracer):
    """Spans made with the OpenTelemetry API (and by `emit_*`) during a rollout become its attempt's spans.

    Agent-Lightning's OtelTracer instruments nothing; neither does this one by default. With
    `instrument_openai=True` (what `AgentOpsTracer` sets) the OpenAI client is instrumented too.
    """

    def __init__(self, *, instrument_openai: bool = False) -> None:
        self.instrument_openai = instrument_openai
        self._last: AttemptTrace | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(instrument_openai={self.instrument_openai})"

    def _provider(self) -> TracerProvider:
        provider = tracer_provider()
        if self.instrument_openai:
            instrument_openai(provider)
        return provider

    def _otel_tracer(self) -> trace_api.Tracer:
        return self._provider().get_tracer(INSTRUMENTATION_NAME)

    def init_worker(self, worker_id: int | str, store: Any = None) -> None:
        super().init_worker(worker_id, store)
        self._provider()

    @contextmanager
    def attempt_trace(self, name: str | None = None, *, rollout_id: str, attempt_id: str) -> Iterator[AttemptTrace]:
        """Collect the spans made in this context (and the tasks and threads it starts) for one attempt."""
        running = _current.get()
        if running is not None:
            raise RuntimeError(
                f"a trace is already running here ({running!r}); traces do not nest: emit spans "
                "or open OpenTelemetry spans inside the running one instead"
            )
        self._provider()
        trace = AttemptTrace(name, rollout_id, attempt_id)
        token = _current.set(trace)
        active = set_active_tracer(self)
        try:
            yield trace
        finally:
            reset_active_tracer(active)
            _current.reset(token)
            trace.close()
            self._last = trace

    @asynccontextmanager
    async def trace_context(
        self,
        name: str | None = None,
        *,
        store: Any = None,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
    ) -> AsyncIterator[trace_api.Tracer]:
        """Trace the `async with` block; yields an OpenTelemetry tracer (spans are read with `get_last_trace`).

        `store` is accepted for v0.3 signatures: a worker stores the spans itself when the attempt ends.
        """
        if (rollout_id is None) != (attempt_id is None):
            raise ValueError(
                "give both rollout_id and attempt_id or neither, "
                f"got rollout_id={rollout_id!r} attempt_id={attempt_id!r}"
            )
        with self.attempt_trace(name, rollout_id=rollout_id or "", attempt_id=attempt_id or ""):
            yield self._otel_tracer()

    def get_last_trace(self) -> list[Span]:
        trace = _current.get() or self._last
        return [] if trace is None else trace.spans()

    def create_span(
        self,
        name: str,
        attributes: dict[str, Any] | None = None,
        timestamp: float | None = None,
        status: TraceStatus | None = None,
    ) -> SpanCoreFields:
        span = self._otel_tracer().start_span(name, attributes=attributes, start_time=_nanos(timestamp))
        if status is not None:
            span.set_status(_otel_status(status))
        span.end(_nanos(timestamp))
        if not isinstance(span, ReadableSpan):
            raise TypeError(f"the tracer made a {type(span).__name__}, not an SDK ReadableSpan")
        core = core_fields(span)
        trace = _current.get()
        if trace is not None:
            trace.note_emitted(core)
        return core

    @contextmanager
    def operation_context(self, name: str, attributes: dict[str, Any] | None = None) -> Iterator[OperationRecorder]:
        with self._otel_tracer().start_as_current_span(
            name, attributes=attributes, record_exception=False, set_status_on_exception=False
        ) as span:
            recorder = OperationRecorder(span)
            try:
                yield recorder
            except Exception as exc:
                recorder.record_exception(exc)
                raise

    def get_langchain_handler(self) -> Any:
        """A LangChain callback handler whose runs become spans of the current rollout (needs langchain-core)."""
        from .langchain import langchain_handler

        return langchain_handler(self._otel_tracer())
