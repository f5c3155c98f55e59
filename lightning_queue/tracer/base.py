"""`Tracer`: the v0.3 tracer interface, and the tracer active in the current context."""

from __future__ import annotations

import contextvars
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from typing import Any

from lightning_queue.types import Span, SpanCoreFields, TraceStatus

logger = logging.getLogger(__name__)

# A context variable, not a process global as in Agent-Lightning: one worker runs many rollouts at once
# on one event loop, and each agent call must see its own attempt's tracer.
_active: contextvars.ContextVar[Tracer | None] = contextvars.ContextVar("lq_active_tracer", default=None)


class Tracer(ABC):
    """Collects the spans an agent produces while it runs one rollout.

    A worker opens `trace_context(rollout_id=..., attempt_id=...)` around each agent call and stores
    what was collected as that attempt's spans. Code that traces by hand does the same and reads
    `get_last_trace()` afterwards.
    """

    worker_id: int | str | None = None

    def init(self, *args: Any, **kwargs: Any) -> None:
        """Agent-Lightning's process-wide setup call, made once before any worker; nothing is needed here."""
        self.worker_id = None

    def teardown(self, *args: Any, **kwargs: Any) -> None:
        """Agent-Lightning's process-wide cleanup call, made once after the last worker."""
        self.worker_id = None

    def init_worker(self, worker_id: int | str, store: Any = None) -> None:
        """Remember which worker runs this tracer (the worker stores the spans, not the tracer)."""
        self.worker_id = worker_id

    def teardown_worker(self, worker_id: int | str) -> None:
        """Forget the worker; spans of rollouts still running keep their routing."""
        self.worker_id = None

    @contextmanager
    def lifespan(self, store: Any = None) -> Iterator[Tracer]:
        """`init_worker(0)` ... `teardown_worker(0)`, for tracing outside a worker."""
        self.init_worker(0, store)
        try:
            yield self
        finally:
            self.teardown_worker(0)

    @abstractmethod
    def trace_context(
        self,
        name: str | None = None,
        *,
        store: Any = None,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
    ) -> AbstractAsyncContextManager[Any]:
        """Collect the spans made inside the `async with` block (and make this tracer the active one)."""

    @abstractmethod
    def get_last_trace(self) -> list[Span]:
        """The spans of the trace running in this context, else of the last one that ended."""

    @abstractmethod
    def create_span(
        self,
        name: str,
        attributes: dict[str, Any] | None = None,
        timestamp: float | None = None,
        status: TraceStatus | None = None,
    ) -> SpanCoreFields:
        """Record a zero-length span in the current trace and return its core fields."""

    @abstractmethod
    def operation_context(self, name: str, attributes: dict[str, Any] | None = None) -> AbstractContextManager[Any]:
        """Record the enclosed block as one span (the current span while it runs)."""

    def get_langchain_handler(self) -> Any:
        """A LangChain callback handler recording into this tracer; this tracer has none."""
        raise NotImplementedError(f"{type(self).__name__} has no LangChain callback handler; use OtelTracer")


def get_active_tracer() -> Tracer | None:
    """The tracer of the rollout running in this context, or None outside a traced rollout."""
    return _active.get()


def set_active_tracer(tracer: Tracer | None) -> contextvars.Token[Tracer | None]:
    """Make `tracer` active in this context; pass the token to `reset_active_tracer` to undo it."""
    return _active.set(tracer)


def reset_active_tracer(token: contextvars.Token[Tracer | None]) -> None:
    _active.reset(token)


def get_last_trace() -> list[Span]:
    """The spans the active tracer collected so far in this rollout (a ValueError outside one)."""
    tracer = get_active_tracer()
    if tracer is None:
        raise ValueError("get_last_trace() needs an active tracer: call it inside a rollout or a trace_context")
    return tracer.get_last_trace()
