"""`LitAgentRunner`: run an agent in this process on any `LightningStore`, one rollout at a time (debugging).

Agent-Lightning's debug flow (`runner.run_context(agent=, store=)`, then `await runner.step(task)` or
`await runner.iter()`): no worker process, no pool, the agent's exceptions reach the caller of `step`.
It uses only the store contract, so it runs on `InMemoryLightningStore` and on Redis alike. For training
runs use the worker runtime (`lq worker`, `workers.Worker`): leases, concurrency, timeouts and recycling
live there, not here.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, Protocol, TypeVar

from ..litagent import LitAgent, RolloutRawResult, results
from ..reward import find_final_reward
from ..store.base import LightningStore
from ..tracer import AgentOpsTracer, AttemptTrace, OtelTracer
from ..types import UNSET, AttemptedRollout, AttemptStatus, Hook, NamedResources, Rollout, RolloutMode, Span

logger = logging.getLogger(__name__)

T_task = TypeVar("T_task")


def trace_of(traces: list[AttemptTrace]) -> AttemptTrace | None:
    return traces[0] if traces else None


class StopEvent(Protocol):
    """`threading.Event`, `multiprocessing.Event` or anything with `is_set()`."""

    def is_set(self) -> bool: ...


class LitAgentRunner(Generic[T_task]):
    """Runs one `LitAgent` in-process against a store: `step(task)` for one task, `iter()` to drain the queue.

    Args:
        tracer: an `OtelTracer` (default `AgentOpsTracer()`, as the worker's): its lifecycle is called as
            Agent-Lightning's runner does (`init`, `init_worker`, one trace per rollout, `teardown_worker`,
            `teardown`); what it traced plus what the agent returned become the attempt's spans by the same
            rules as under `lq worker` (`lightning_queue.litagent.results`). Hooks receive it.
        max_rollouts: how many rollouts `iter()` runs before returning (None: until its event is set).
        poll_interval: seconds `iter()` waits, ± `interval_jitter`, when the queue is empty.
    """

    def __init__(
        self,
        tracer: OtelTracer | None = None,
        max_rollouts: int | None = None,
        poll_interval: float = 5.0,
        interval_jitter: float = 0.5,
    ) -> None:
        if max_rollouts is not None and (isinstance(max_rollouts, bool) or max_rollouts < 1):
            raise ValueError(f"max_rollouts must be at least 1 or None, got {max_rollouts!r}")
        if poll_interval <= 0 or interval_jitter < 0:
            raise ValueError(
                f"poll_interval must be positive and interval_jitter >= 0, got {poll_interval!r}, {interval_jitter!r}"
            )
        if tracer is not None and not isinstance(tracer, OtelTracer):
            raise TypeError(f"tracer must be an OtelTracer or AgentOpsTracer, got {tracer!r:.100}")
        self._tracer: OtelTracer = tracer if tracer is not None else AgentOpsTracer()
        self._max_rollouts = max_rollouts
        self._poll_interval = poll_interval
        self._interval_jitter = interval_jitter
        self._random = random.Random()
        self._agent: LitAgent[T_task] | None = None
        self._store: LightningStore | None = None
        self._hooks: list[Hook] = []
        self.worker_id: int | None = None

    def __repr__(self) -> str:
        return f"<LitAgentRunner {self.get_worker_id()} agent={self._agent!r}>"

    # --- lifecycle --------------------------------------------------------------------------------
    def init(self, agent: LitAgent[T_task], *, hooks: Sequence[Hook] | None = None, **kwargs: Any) -> None:
        """Bind the agent (and hooks) to this runner."""
        if not isinstance(agent, LitAgent):
            raise TypeError(f"agent must be a LitAgent (use @rollout on a function), got {agent!r:.100}")
        bad = [h for h in hooks or () if not isinstance(h, Hook)]
        if bad:
            raise TypeError(f"hooks must be Hook instances, got {bad[0]!r:.100}")
        self._agent = agent
        agent.set_runner(self)
        self._hooks = list(hooks or ())
        self._tracer.init()

    def init_worker(self, worker_id: int, store: LightningStore, **kwargs: Any) -> None:
        """Bind the store; `worker_id` names this runner in the store as `Worker-<id>`."""
        if not isinstance(store, LightningStore):
            raise TypeError(f"store must be a LightningStore, got {store!r:.100}")
        self._store = store
        self.worker_id = worker_id
        self._tracer.init_worker(worker_id, store)

    def teardown_worker(self, worker_id: int, *args: Any, **kwargs: Any) -> None:
        self.worker_id = None
        self._tracer.teardown_worker(worker_id)

    def teardown(self, *args: Any, **kwargs: Any) -> None:
        self._agent = None
        self._store = None
        self._hooks = []
        self._tracer.teardown()

    @contextmanager
    def run_context(
        self,
        *,
        agent: LitAgent[T_task],
        store: LightningStore,
        hooks: Sequence[Hook] | None = None,
        worker_id: int | None = None,
    ) -> Iterator[LitAgentRunner[T_task]]:
        """`init` + `init_worker` on entry, their teardowns on exit (errors in teardown are logged, not raised)."""
        wid = 0 if worker_id is None else worker_id
        initialized = worker_initialized = False
        try:
            self.init(agent, hooks=hooks)
            initialized = True
            self.init_worker(wid, store)
            worker_initialized = True
            yield self
        finally:
            if worker_initialized:
                try:
                    self.teardown_worker(wid)
                except Exception:
                    logger.exception("%s: worker teardown failed", self.get_worker_id())
            if initialized:
                try:
                    self.teardown()
                except Exception:
                    logger.exception("runner teardown failed")

    @property
    def tracer(self) -> OtelTracer:
        return self._tracer

    def get_agent(self) -> LitAgent[T_task]:
        if self._agent is None:
            raise ValueError(
                "the runner has no agent: call init() or use `with runner.run_context(agent=..., store=...)`"
            )
        return self._agent

    def get_store(self) -> LightningStore:
        if self._store is None:
            raise ValueError(
                "the runner has no store: call init_worker() or use `with runner.run_context(agent=..., store=...)`"
            )
        return self._store

    def get_worker_id(self) -> str:
        return f"Worker-{self.worker_id}" if self.worker_id is not None else "Worker-Unknown"

    # --- running ----------------------------------------------------------------------------------
    async def step(
        self,
        input: T_task,
        *,
        resources: NamedResources | None = None,
        mode: RolloutMode | None = None,
        event: StopEvent | None = None,
    ) -> Rollout:
        """Run `input` now, outside the queue, and return its finished rollout.

        `resources` are stored as a new snapshot for this rollout; without them the latest snapshot is used.
        An exception of the agent fails the attempt (recorded as an exception span) and is raised here.
        """
        store = self.get_store()
        resources_id = (await store.add_resources(resources)).resources_id if resources is not None else None
        rollout = await store.start_rollout(
            input=input, mode=mode, resources_id=resources_id, worker_id=self.get_worker_id()
        )
        await self._run(rollout, raise_errors=True)
        finished = await store.get_rollout_by_id(rollout.rollout_id)
        if finished is None:
            raise RuntimeError(f"rollout {rollout.rollout_id!r} vanished from the store while {self} ran it")
        return finished

    async def iter(self, *, event: StopEvent | None = None, n: int | None = None) -> int:
        """Claim and run queued rollouts one by one; return how many ran.

        Stops once `event` is set, or after `n` rollouts (default: the runner's `max_rollouts`); with neither
        it runs until cancelled. Agent errors fail their attempt and are logged; the loop goes on.
        """
        if n is not None and (isinstance(n, bool) or n < 1):
            raise ValueError(f"n must be at least 1 or None, got {n!r}")
        limit = n if n is not None else self._max_rollouts
        store = self.get_store()
        done = 0
        while (limit is None or done < limit) and not (event is not None and event.is_set()):
            rollout = await store.dequeue_rollout(worker_id=self.get_worker_id())
            if rollout is None:
                await self._sleep(event)
                continue
            await self._run(rollout, raise_errors=False)
            done += 1
        logger.info("%s: ran %d rollout(s)", self.get_worker_id(), done)
        return done

    async def _sleep(self, event: StopEvent | None) -> None:
        deadline = time.monotonic() + max(
            0.01, self._poll_interval + self._random.uniform(-self._interval_jitter, self._interval_jitter)
        )
        # The event may be a threading/multiprocessing one (no awaitable wait): it is checked every 0.1 s.
        while time.monotonic() < deadline and not (event is not None and event.is_set()):  # noqa: ASYNC110
            await asyncio.sleep(min(0.1, max(0.0, deadline - time.monotonic())))

    async def _resources(self, rollout: AttemptedRollout) -> NamedResources:
        store = self.get_store()
        if rollout.resources_id is not None:
            update = await store.get_resources_by_id(rollout.resources_id)
            if update is None:
                raise ValueError(f"resources {rollout.resources_id!r} of rollout {rollout.rollout_id} not found")
        else:
            update = await store.get_latest_resources()
        return dict(update.resources) if update is not None else {}

    async def _call_agent(self, rollout: AttemptedRollout, resources: NamedResources) -> RolloutRawResult:
        agent = self.get_agent()
        train = rollout.mode == "train"
        if agent.is_async():
            method = agent.training_rollout_async if train else agent.validation_rollout_async
            return await method(rollout.input, resources, rollout)
        sync = agent.training_rollout if train else agent.validation_rollout
        # A thread (with this context copied, so a tracer's context reaches the agent) keeps the loop free.
        return await asyncio.to_thread(sync, rollout.input, resources, rollout)

    async def _hook(self, name: str, **kwargs: Any) -> None:
        for hook in self._hooks:
            try:
                await getattr(hook, name)(agent=self.get_agent(), runner=self, **kwargs)
            except Exception:
                logger.exception("%s: hook %s.%s raised; ignored", self.get_worker_id(), type(hook).__name__, name)

    async def _traced_call(
        self, rollout: AttemptedRollout, resources: NamedResources, traces: list[AttemptTrace]
    ) -> RolloutRawResult:
        rid, aid = rollout.rollout_id, rollout.attempt.attempt_id
        with self._tracer.attempt_trace(rid, rollout_id=rid, attempt_id=aid) as trace:
            traces.append(trace)
            await self._hook("on_trace_start", tracer=self._tracer, rollout=rollout)
            try:
                return await self._call_agent(rollout, resources)
            finally:
                await self._hook("on_trace_end", tracer=self._tracer, rollout=rollout)

    async def _run(self, rollout: AttemptedRollout, *, raise_errors: bool) -> None:
        """Run one attempt to its end: spans stored, status written, hooks called."""
        store = self.get_store()
        rid, aid = rollout.rollout_id, rollout.attempt.attempt_id
        started = time.monotonic()
        spans: list[Span] = []
        status: AttemptStatus = "succeeded"
        metadata: dict[str, Any] | None = None
        error: Exception | None = None
        traces: list[AttemptTrace] = []  # the attempt's trace, once it is open
        await self._hook("on_rollout_start", rollout=rollout)
        try:
            resources = await self._resources(rollout)
            raw = await self._traced_call(rollout, resources, traces)
            spans = await results.spans_for(store, rollout, results.check_result(raw), trace_of(traces))
            results.warn_if_no_reward(rollout, spans)
        except Exception as exc:
            logger.warning("%s: rollout %s failed: %s: %s", self.get_worker_id(), rid, type(exc).__name__, exc)
            error, status, metadata = exc, "failed", {"error": results.error_record(exc)}
            spans = await results.failure_spans(store, rollout, exc, trace_of(traces))
        await self._hook("on_rollout_end", rollout=rollout, spans=spans)
        try:
            if spans:
                await store.add_many_spans(spans)
        except (ValueError, TypeError) as exc:
            # The store refused the result (too large, not serialisable): fail the attempt saying why,
            # rather than leave it running. A Redis error is not caught: it reaches the caller.
            logger.warning("%s: rollout %s: its spans cannot be stored: %s", self.get_worker_id(), rid, exc)
            error, status, metadata = exc, "failed", {"error": results.error_record(exc)}
        await store.update_attempt(rid, aid, status=status, metadata=UNSET if metadata is None else metadata)
        stored = await store.query_spans(rid, aid)
        logger.info(
            "%s: rollout %s %s in %.2fs with %d span(s), final reward %s",
            self.get_worker_id(),
            rid,
            status,
            time.monotonic() - started,
            len(stored.items),
            find_final_reward(stored.items),
        )
        if error is not None and raise_errors:
            raise error
