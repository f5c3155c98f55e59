"""`LitAgent`: the class an agent subclasses; the worker runs it on each claimed rollout (v0.3 contract)."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from lightning_queue.tracer import Tracer, get_active_tracer
from lightning_queue.types import AttemptedRollout, NamedResources

T = TypeVar("T")

# What an agent may return: None, a float reward, or a list of Span / SpanCoreFields / OTel ReadableSpan.
RolloutRawResult = float | Sequence[Any] | None


class LitAgent(Generic[T]):
    """An agent the worker runs on each claimed rollout.

    Override `rollout` (sync, run in a thread) or `rollout_async` (run on the worker's event loop).
    Each receives the task (`rollout.input`), the rollout's resources and the `AttemptedRollout`.
    `training_rollout*` / `validation_rollout*` are called for mode "train" / anything else and
    delegate to `rollout*` unless overridden.
    """

    def __init__(self) -> None:
        self._runner_ref: weakref.ReferenceType[Any] | None = None

    def set_runner(self, runner: Any) -> None:
        self._runner_ref = weakref.ref(runner)

    @property
    def runner(self) -> Any:
        """The worker running this agent (held weakly), or None before it starts."""
        return None if self._runner_ref is None else self._runner_ref()

    def get_tracer(self) -> Tracer:
        """The tracer of the worker running this agent (or of the rollout traced in this context)."""
        tracer = getattr(self.runner, "tracer", None)
        if isinstance(tracer, Tracer):
            return tracer
        active = get_active_tracer()
        if active is not None:
            return active
        raise RuntimeError(
            f"{type(self).__name__}.tracer: no tracer yet; it is set by the worker running the agent "
            "(or open one with OtelTracer().trace_context() when calling the agent by hand)"
        )

    @property
    def tracer(self) -> Tracer:
        """The active tracer: `self.tracer.get_langchain_handler()`, `self.tracer.get_last_trace()`."""
        return self.get_tracer()

    def is_async(self) -> bool:
        cls = type(self)
        return any(
            getattr(cls, name) is not getattr(LitAgent, name)
            for name in ("rollout_async", "training_rollout_async", "validation_rollout_async")
        )

    def rollout(self, task: T, resources: NamedResources, rollout: AttemptedRollout) -> RolloutRawResult:
        raise NotImplementedError(f"{type(self).__name__} implements neither rollout nor rollout_async")

    async def rollout_async(self, task: T, resources: NamedResources, rollout: AttemptedRollout) -> RolloutRawResult:
        raise NotImplementedError(f"{type(self).__name__} implements neither rollout nor rollout_async")

    def training_rollout(self, task: T, resources: NamedResources, rollout: AttemptedRollout) -> RolloutRawResult:
        return self.rollout(task, resources, rollout)

    def validation_rollout(self, task: T, resources: NamedResources, rollout: AttemptedRollout) -> RolloutRawResult:
        return self.rollout(task, resources, rollout)

    async def training_rollout_async(
        self, task: T, resources: NamedResources, rollout: AttemptedRollout
    ) -> RolloutRawResult:
        return await self.rollout_async(task, resources, rollout)

    async def validation_rollout_async(
        self, task: T, resources: NamedResources, rollout: AttemptedRollout
    ) -> RolloutRawResult:
        return await self.rollout_async(task, resources, rollout)
