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
        self._trainer_ref: weakref.ReferenceType[Any] | None = None

    def set_runner(self, runner: Any) -> None:
        self._runner_ref = weakref.ref(runner)

    @property
    def runner(self) -> Any:
        """The worker running this agent (held weakly), or None before it starts."""
        return None if self._runner_ref is None else self._runner_ref()

    def get_runner(self) -> Any:
        """The worker running this agent; ValueError if none was set or it is gone (v0.3's contract)."""
        return self._referent(getattr(self, "_runner_ref", None), "runner", "the worker or LitAgentRunner running it")

    def set_trainer(self, trainer: Any) -> None:
        """Called by `Trainer.fit` / `dev` on the agent object it was given (held weakly).

        The Trainer's worker processes run a copy of the agent (forked or imported), so there the trainer
        is not set: only the object in the Trainer's own process knows it.
        """
        self._trainer_ref = weakref.ref(trainer)

    def get_trainer(self) -> Any:
        """The Trainer this agent was given to; ValueError if none was set or it is gone (v0.3's contract)."""
        return self._referent(getattr(self, "_trainer_ref", None), "trainer", "Trainer.fit / Trainer.dev")

    @property
    def trainer(self) -> Any:
        return self.get_trainer()

    def _referent(self, ref: weakref.ReferenceType[Any] | None, what: str, setter: str) -> Any:
        if ref is None:
            raise ValueError(f"{type(self).__name__} has no {what}: it is set by {setter}")
        referent = ref()
        if referent is None:
            raise ValueError(f"{type(self).__name__}'s {what} no longer exists (it was garbage collected)")
        return referent

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
