"""One worker's loop: claim rollouts, run the agent, store spans, end attempts, keep leases alive."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import functools
import logging
import os
import re
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from redis.exceptions import BusyLoadingError, ReadOnlyError, RedisError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from lightning_queue.litagent import Hook, LitAgent, RolloutRawResult
from lightning_queue.litagent import results as agent_results
from lightning_queue.resilience import Backoff
from lightning_queue.store import RedisLightningStore
from lightning_queue.store.errors import NotFound
from lightning_queue.store.leases import Claim, Finish
from lightning_queue.tracer import AgentOpsTracer, AttemptTrace, OtelTracer
from lightning_queue.types import AttemptedRollout, AttemptStatus, NamedResources, ResourcesUpdate, Span

from . import forks, metrics, results
from .finisher import Finisher
from .health import REDIS_ERRORS, Health
from .leases import LeaseKeeper
from .resources_cache import ResourcesCache
from .settings import check_recycling, default
from .telemetry import ProcessProbe

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Redis is unreachable, slow, loading, or failing over (a replica answers READONLY, a cluster TRYAGAIN):
# retry. Anything else from Redis is a real error.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    BusyLoadingError,
    ReadOnlyError,
    TryAgainError,
)
# How long shutdown waits for background Redis calls (redis-py's own retries can take seconds).
_SHUTDOWN_WAIT = 2.0
# How long a worker with free slots waits for more of its rollouts to end before claiming: rollouts
# claimed together tend to end together, and one claim call then serves them all.
# Small next to any agent's run and to a claim's own block time.
_GATHER_SECONDS = 0.002
_INVALID_ID_CHARS = re.compile(r"[^A-Za-z0-9_.@=+-]")


def default_worker_id(pid: int | None = None) -> str:
    """`<host>-<pid>` (this process by default), made a valid store id (no ':' or spaces)."""
    return _INVALID_ID_CHARS.sub("-", f"{socket.gethostname()}-{os.getpid() if pid is None else pid}")[:128]


class LeaseLost(Exception):
    """The worker no longer holds an attempt's stream entry: someone else ended or reclaimed it."""


class AgentTimeout(Exception):
    """The agent ran past its rollout's `timeout_seconds`."""


class _Interrupted(Exception):
    """The worker gave the attempt up (lost its lease, or shutting down): stop working on it."""


@dataclass
class WorkerTotals:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    timeout: int = 0
    lost: int = 0
    released: int = 0

    @property
    def completed(self) -> int:
        return self.succeeded + self.failed + self.timeout


@dataclass(eq=False)
class _Running:
    """One claimed attempt and the task running it."""

    claim: Claim
    task: asyncio.Task[None] | None = None
    agent_call: asyncio.Future[Any] | None = None
    thread: concurrent.futures.Future[Any] | None = None
    finishing: bool = False
    # The resources snapshot it runs with: kept by the worker, or a read shared by the rollouts naming it.
    resources: asyncio.Future[ResourcesUpdate | None] | None = None
    ended: AttemptStatus | None = None  # the status this worker ended the attempt with
    lost: str | None = None
    release_reason: str | None = None

    def interrupt(self) -> None:
        # Only the agent call is cancelled, never a Redis command midway: the task notices the flags.
        if self.agent_call is not None and not self.agent_call.done():
            self.agent_call.cancel()

    def check(self) -> None:
        if self.lost is not None or self.release_reason is not None:
            raise _Interrupted()

    @property
    def rollout(self) -> AttemptedRollout:
        return self.claim.rollout

    @property
    def entry_id(self) -> str:
        return self.claim.entry_id

    def __str__(self) -> str:
        return f"rollout {self.rollout.rollout_id} attempt {self.rollout.attempt.attempt_id}"


class Worker:
    """Runs `agent` on rollouts claimed from `store`, up to `concurrency` at a time.

    Async agents run as tasks on this loop; sync agents in a thread pool of `concurrency` threads.
    Each agent call runs under `tracer` (default `AgentOpsTracer()`): the spans it makes with the
    OpenTelemetry API, `emit_*` or the instrumented OpenAI client are stored with its attempt.
    The lease of every held stream entry is renewed every `lease_seconds / 3` and the watchdog sweep
    runs every `min(5, lease_seconds / 2)`, both from a thread of their own (`leases.LeaseKeeper`),
    so an agent blocking this loop does not lose its lease. `stop()` stops claiming at once and lets in-flight
    rollouts finish for `grace_seconds`; the rest (or all, with `stop(now=True)`) are released
    back to the queue for another worker.

    Recycling (as Celery's max-tasks/max-memory-per-child): after claiming `max_rollouts_per_process`
    rollouts, or when its RSS is above `max_memory_mb` once a rollout ended, the worker stops claiming,
    lets its in-flight rollouts finish and returns with `recycle_reason` set (`lq worker` then exits
    its process with `EXIT_RECYCLE` and the pool starts a fresh one).
    """

    def __init__(
        self,
        agent: LitAgent[Any],
        store: RedisLightningStore,
        *,
        worker_id: str | None = None,
        concurrency: int = default("concurrency"),
        max_rollouts: int | None = default("max_rollouts"),
        max_rollouts_per_process: int | None = default("max_rollouts_per_process"),
        max_memory_mb: int | None = default("max_memory_mb"),
        hooks: Sequence[Hook] = (),
        tracer: OtelTracer | None = None,
        grace_seconds: float = default("grace_seconds"),
        heartbeat_seconds: float = default("heartbeat_seconds"),
        claim_block_ms: int = 500,
    ) -> None:
        if not isinstance(agent, LitAgent):
            raise TypeError(f"agent must be a LitAgent (use @workers.rollout on a function), got {agent!r:.100}")
        if store.lease_seconds is None:
            raise ValueError("a worker needs a store with lease_seconds set: its claims are kept alive by leases")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency!r}")
        if max_rollouts is not None and max_rollouts < 1:
            raise ValueError(f"max_rollouts must be at least 1 or None, got {max_rollouts!r}")
        check_recycling(max_rollouts_per_process, max_memory_mb)
        if tracer is not None and not isinstance(tracer, OtelTracer):
            raise TypeError(f"tracer must be an OtelTracer or AgentOpsTracer, got {tracer!r:.100}")
        self.agent = agent
        # Agent-Lightning's default: OpenTelemetry with the OpenAI client instrumented.
        self.tracer: OtelTracer = tracer if tracer is not None else AgentOpsTracer()
        self.store = store
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.max_rollouts = max_rollouts
        self.max_rollouts_per_process = max_rollouts_per_process
        self.max_memory_mb = max_memory_mb
        # Why this worker stopped claiming so that a fresh process replaces it (None: it was not recycled).
        self.recycle_reason: str | None = None
        # Set when the worker had to stop because it can no longer keep leases: its process exits 1.
        self.failure: str | None = None
        self.hooks = list(hooks)
        self.grace_seconds = grace_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.claim_block_ms = claim_block_ms
        self.lease_seconds = float(store.lease_seconds)
        self.renew_seconds = self.lease_seconds / 3
        self.sweep_seconds = min(5.0, self.lease_seconds / 2)
        self.totals = WorkerTotals()
        self.state = "starting"
        self._inflight: dict[str, _Running] = {}
        self._busy_with: str | None = None  # entry of the attempt the store shows this worker busy with
        self._free = concurrency
        self._abandoned_threads = 0
        self._capacity = asyncio.Event()
        self._stop = asyncio.Event()
        self._hard_stop = asyncio.Event()
        self._closing = asyncio.Event()
        self._report_soon = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="lq-agent")
        self._probe = ProcessProbe()
        self._pid = os.getpid()  # an agent's forked child must not run on as this worker
        self._leases = self._lease_keeper()
        # Rollouts that end together store their results in one round trip.
        self._finisher = Finisher(self.store.leases.finish_many)
        # A snapshot the worker holds is not read again.
        self._resources = ResourcesCache(self.store)
        # A no-op or misconfigured agent misses its reward on every rollout: warn of a few, then summarize.
        self._no_reward = agent_results.NoRewardWarnings()

    def _lease_keeper(self) -> LeaseKeeper:
        return LeaseKeeper(
            self.store,
            self.worker_id,
            lease_seconds=self.lease_seconds,
            renew_seconds=self.renew_seconds,
            sweep_seconds=self.sweep_seconds,
            on_lost=self._lease_lost,
            on_failed=self._lease_thread_failed,
            agent=repr(self.agent),
        )

    def _lease_thread_failed(self) -> None:
        # Without renewals every claim would be reclaimed and rerun: stop and let the pool replace us.
        self.failure = "its lease thread failed"
        logger.error("worker %s: stopping, %s (the traceback is logged above)", self.worker_id, self.failure)
        self.stop(now=True)

    # --- control ----------------------------------------------------------------------------------
    def stop(self, *, now: bool = False) -> None:
        """Stop claiming; with `now`, also release in-flight rollouts without waiting (call on the loop)."""
        if not self._stop.is_set():
            logger.info("worker %s: stopping; no new claims", self.worker_id)
        self._stop.set()
        if now and not self._hard_stop.is_set():
            logger.info("worker %s: releasing %d in-flight rollouts now", self.worker_id, len(self._inflight))
            self._hard_stop.set()

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def abandoned_threads(self) -> int:
        """Sync agent calls still running in a thread after their rollout was given up (timeout, lost)."""
        return self._abandoned_threads

    async def run(self) -> WorkerTotals:
        """Claim and run rollouts until `stop()`, `max_rollouts` or a recycle; then drain and return the totals."""
        self.agent.set_runner(self)
        self.tracer.init_worker(self.worker_id)
        self.state = "running"
        rss = self._probe.rss_mb()
        if self.max_memory_mb is not None and rss > self.max_memory_mb:
            logger.warning(
                "worker %s: uses %.0f MB at start, above max_memory_mb=%d: it will recycle after every rollout",
                self.worker_id,
                rss,
                self.max_memory_mb,
            )
        # Built now: the periods may have been changed since __init__.
        self._leases = self._lease_keeper()
        self._leases.start()
        background = [asyncio.create_task(self._heartbeat_loop(), name="lq-heartbeat")]
        logger.info(
            "worker %s: agent %r, concurrency %d, lease %.1fs, namespace %r",
            self.worker_id,
            self.agent,
            self.concurrency,
            self.lease_seconds,
            self.store.namespace,
        )
        claimer = asyncio.create_task(self._claim_loop(), name="lq-claim")
        try:
            await _wait_any(self._stop, tasks=[claimer])
            # A claim in progress returns within its block time, unless Redis is unreachable: then a
            # stopping worker does not wait for it (an entry it read meanwhile is reclaimed, not lost).
            await _settle([claimer], self.claim_block_ms / 1000 + 1.0, "claim")
            error = claimer.exception() if claimer.done() and not claimer.cancelled() else None
            if error is not None:
                raise error
            self.state = "draining"
            await self._drain()
        finally:
            self.state = "stopped"
            self._no_reward.flush()
            # The loops end at their next tick; cancelling one inside a Redis call could wedge its client.
            self._closing.set()
            await _settle(background, _SHUTDOWN_WAIT, "background")
            await _settle([asyncio.create_task(self._final_report())], _SHUTDOWN_WAIT, "final telemetry")
            if not await asyncio.get_running_loop().run_in_executor(None, self._leases.stop, _SHUTDOWN_WAIT):
                logger.warning("worker %s: the lease thread is still in a Redis call; not waiting", self.worker_id)
            self._executor.shutdown(wait=False, cancel_futures=True)
        logger.info("worker %s: stopped; %s", self.worker_id, asdict(self.totals))
        return self.totals

    async def _final_report(self) -> None:
        try:
            await self._report()
        except REDIS_ERRORS as exc:
            logger.warning("worker %s: final telemetry not sent: %s", self.worker_id, exc)

    # --- claiming ---------------------------------------------------------------------------------
    def _quota_left(self) -> int | None:
        limits = [n - self.totals.claimed for n in (self.max_rollouts, self.max_rollouts_per_process) if n is not None]
        return min(limits) if limits else None

    def _recycle_due(self) -> str | None:
        """Why this process should make way for a fresh one now, if it should."""
        claimed = self.totals.claimed
        if self.max_rollouts_per_process is not None and claimed >= self.max_rollouts_per_process:
            return f"it claimed max_rollouts_per_process={self.max_rollouts_per_process} rollouts"
        # Only once a rollout ended: a process starting above the limit still does some work.
        if self.max_memory_mb is not None and claimed > len(self._inflight):
            rss = self._probe.rss_mb()
            if rss > self.max_memory_mb:
                return f"its memory ({rss:.0f} MB RSS) is above max_memory_mb={self.max_memory_mb}"
        return None

    async def _claim_loop(self) -> None:
        backoff = Backoff(first=0.5, cap=10.0)
        while not self._stop.is_set():
            if self.max_rollouts is not None and self.totals.claimed >= self.max_rollouts:
                logger.info("worker %s: claimed max_rollouts=%s; finishing", self.worker_id, self.max_rollouts)
                return
            if (why := self._recycle_due()) is not None:
                self.recycle_reason = why
                logger.info(
                    "worker %s: recycling, as %s: no new claims; %d in-flight rollouts finish first",
                    self.worker_id,
                    why,
                    len(self._inflight),
                )
                return
            quota = self._quota_left()
            if self._free == 0:
                self._capacity.clear()
                await _wait_any(self._capacity, self._stop)
                continue
            if self._inflight and self._free < self.concurrency:
                await self._gather_slots()
            count = self._free if quota is None else min(self._free, quota)
            try:
                claims = await self.store.leases.claim(
                    consumer=self.worker_id, worker_id=self.worker_id, count=count, block_ms=self.claim_block_ms
                )
            except REDIS_ERRORS as exc:
                metrics.redis_error("claim")
                delay = backoff.next()
                logger.warning("worker %s: claiming failed (%s); retrying in %.1fs", self.worker_id, exc, delay)
                await _wait_any(self._stop, timeout=delay)
                continue
            backoff.reset()
            if claims:
                self._busy_with = claims[-1].entry_id  # the claim makes the worker busy with its last rollout
            for claim in claims:
                if self._stop.is_set():
                    # Claimed while the stop request arrived: give it straight back rather than start it.
                    await self._release(_Running(claim), "the worker was stopping when it claimed")
                else:
                    self._start(claim, self._resources.for_claim(claim))

    async def _gather_slots(self) -> None:
        deadline = time.monotonic() + _GATHER_SECONDS
        while self._inflight and self._free < self.concurrency and not self._stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self._capacity.clear()
            await _wait_any(self._capacity, self._stop, timeout=left)

    def _start(self, claim: Claim, resources: asyncio.Future[ResourcesUpdate | None] | None = None) -> None:
        run = _Running(claim, resources=resources)
        self._free -= 1
        self.totals.claimed += 1
        metrics.rollout_started()
        self._inflight[claim.entry_id] = run
        self._leases.hold(claim.entry_id)
        run.task = asyncio.create_task(self._execute(run), name=f"lq {run}")

    def _free_slot(self) -> None:
        self._free += 1
        self._capacity.set()

    # --- one rollout ------------------------------------------------------------------------------
    async def _execute(self, run: _Running) -> None:
        ar = run.rollout
        try:
            spans: list[Span] = []
            try:
                spans, status, metadata = await self._outcome(run)
                run.check()
            finally:
                await self._call_hooks("on_rollout_end", rollout=ar, spans=spans)
            await self._finish(run, spans, status, metadata)
        except _Interrupted:
            if run.release_reason is not None:
                await self._release(run, run.release_reason)
            else:
                await self._explain_loss(run)
        except LeaseLost as exc:
            self._lose(run, str(exc))
            await self._explain_loss(run)
        except results.UNSTORABLE as exc:
            # Not even the failure could be stored; say so here rather than in an unretrieved task.
            logger.error("%s: could not end its attempt: %s: %s", run, type(exc).__name__, exc)
        except Exception as exc:
            # An error no rule above expects (a BUSY Redis, a script's unknown reply): the finish script is
            # atomic, so nothing or all of it was written. Give the attempt back (a no-op if it ended) rather
            # than drop the result without a word and leave the rollout waiting for its lease to lapse.
            logger.error("%s: storing its result failed: %s: %s", run, type(exc).__name__, exc)
            await self._release(run, f"storing its result failed: {type(exc).__name__}: {exc}")
        finally:
            self._inflight.pop(run.entry_id, None)
            metrics.rollout_left()
            self._leases.forget(run.entry_id)
            if not self._inflight:
                self._report_soon.set()  # so `lq status` shows an idle worker's totals without waiting
            if run.thread is not None and not run.thread.done():
                # The agent's thread cannot be interrupted: its slot stays taken until it returns.
                self._abandoned_threads += 1
                loop = asyncio.get_running_loop()
                run.thread.add_done_callback(lambda _: loop.call_soon_threadsafe(self._thread_returned))
            else:
                self._free_slot()
        # Ending one attempt marks the worker idle only if it was the one the store has it busy with
        # (an attempt that timed out or was given up marks it unknown): then point it at another, unless
        # all the others are storing their results already (often in the same round trip as this one).
        running = any(not r.finishing for r in self._inflight.values())
        if running and (run.ended not in ("succeeded", "failed") or run.entry_id == self._busy_with):
            await self._keep_busy()

    def _thread_returned(self) -> None:
        self._abandoned_threads -= 1
        self._free_slot()

    async def _outcome(self, run: _Running) -> tuple[list[Span], AttemptStatus, dict[str, Any] | None]:
        """Run the agent under its attempt's trace; turn what it traced and returned into (spans, status, metadata)."""
        ar = run.rollout
        trace: AttemptTrace | None = None
        try:
            resources = await self._retry(run, "reading resources", self._resources_op(run))
            await self._call_hooks("on_rollout_start", rollout=ar)
            with self.tracer.attempt_trace(
                f"rollout {ar.rollout_id}", rollout_id=ar.rollout_id, attempt_id=ar.attempt.attempt_id
            ) as trace:
                await self._call_hooks("on_trace_start", tracer=self.tracer, rollout=ar)
                try:
                    raw = await self._call_agent(run, resources)
                finally:
                    await self._call_hooks("on_trace_end", tracer=self.tracer, rollout=ar)
            result = agent_results.check_result(raw)
            spans = await self._retry(
                run,
                "reserving sequence ids",
                functools.partial(agent_results.spans_for, self.store, ar, result, trace, self._reserve()),
            )
            agent_results.warn_if_no_reward(ar, spans, self._no_reward)
            return spans, "succeeded", None
        except (_Interrupted, LeaseLost):
            raise
        except Exception as exc:
            status: AttemptStatus = "timeout" if isinstance(exc, AgentTimeout) else "failed"
            logger.warning("%s: %s: %s: %s", run, status, type(exc).__name__, exc)
            # What the agent traced before failing is kept: it says how far it got.
            spans = await self._retry(
                run,
                "recording the error",
                functools.partial(agent_results.failure_spans, self.store, ar, exc, trace, self._reserve()),
            )
            return spans, status, {"error": agent_results.error_record(exc)}

    def _reserve(self) -> agent_results.Reserve | None:
        """Sequence ids for the spans that lack one: the finish script assigns them (negative ids mark
        them), unless hooks see the spans first (then they are reserved now, one round trip)."""
        if self.hooks:
            return None

        async def placeholders(count: int) -> list[int]:
            return list(range(-1, -count - 1, -1))

        return placeholders

    def _resources_op(self, run: _Running) -> Callable[[], Awaitable[NamedResources]]:
        """`run`'s resources: the snapshot its claim named (kept, or read once for the rollouts naming it);
        on a retry after a failed read, read again."""
        ar = run.rollout
        shared, run.resources = run.resources, None

        async def op() -> NamedResources:
            nonlocal shared
            task, shared = (shared, None) if shared is not None else (self._resources.for_claim(run.claim), None)
            update = await asyncio.shield(task)
            if update is None:
                if ar.resources_id is not None:
                    raise ValueError(
                        f"resources {ar.resources_id!r} of rollout {ar.rollout_id} not found "
                        f"in namespace {self.store.namespace!r}"
                    )
                return {}
            # Rollouts sharing one read must not see each other's changes to a resource.
            return copy.deepcopy(dict(update.resources))

        return op

    async def _call_agent(self, run: _Running, resources: NamedResources) -> RolloutRawResult:
        ar = run.rollout
        train = ar.mode == "train"
        inner: asyncio.Future[RolloutRawResult]
        if self.agent.is_async():
            method = self.agent.training_rollout_async if train else self.agent.validation_rollout_async
            # Named after the rollout: the lease thread names it when it blocks the loop.
            call = forks.guard_async(method(ar.input, resources, ar), self._pid)
            inner = asyncio.create_task(call, name=f"lq {run}")
        else:
            sync = self.agent.training_rollout if train else self.agent.validation_rollout
            context = contextvars.copy_context()
            agent_call = functools.partial(context.run, sync, ar.input, resources, ar)
            run.thread = self._executor.submit(forks.guard_sync, agent_call, self._pid)
            inner = asyncio.wrap_future(run.thread)
        run.agent_call = inner
        metrics.time_agent(inner)
        timeout = ar.config.timeout_seconds
        remaining = None
        if timeout is not None:
            # Act a moment before the watchdog would: the worker can record why, the watchdog only the status.
            remaining = max(0.0, ar.attempt.start_time + timeout - time.time() - min(0.25, timeout / 10))
        try:
            done, _ = await asyncio.wait({inner}, timeout=remaining)
        except asyncio.CancelledError:
            inner.cancel()
            raise
        run.check()
        if not done:
            inner.cancel()
            raise AgentTimeout(
                f"agent ran past the rollout's timeout_seconds={timeout} and was cancelled"
                + ("" if run.thread is None else " (its thread keeps running: sync agents cannot be interrupted)")
            )
        result: RolloutRawResult = inner.result()
        return result

    async def _finish(
        self, run: _Running, spans: list[Span], status: AttemptStatus, metadata: dict[str, Any] | None
    ) -> None:
        run.finishing = True
        # One script checks the lease, stores the spans and ends the attempt: a late result from a
        # reclaimed attempt writes nothing.
        finish = Finish(self.worker_id, run.claim, status, spans, metadata)
        store_result = functools.partial(self._finisher.finish, finish)
        try:
            outcome = await self._retry(run, "storing the result", store_result)
        except NotFound as exc:
            # Ended by someone else and deleted (retention, a purge): there is no attempt left to fail.
            raise LeaseLost(f"its rollout or attempt no longer exists: {exc}") from exc
        except results.UNSTORABLE as exc:
            # Left to the watchdog, the attempt would end `unresponsive` with no reason at all.
            logger.error("%s: its result cannot be stored, failing the attempt: %s: %s", run, type(exc).__name__, exc)
            status, spans = "failed", []
            failure = Finish(self.worker_id, run.claim, status, (), {"error": agent_results.error_record(exc)})
            end = functools.partial(self._finisher.finish, failure)
            outcome = await self._retry(
                run, "ending the attempt", lambda: results.through_oom(end, seconds=self.lease_seconds)
            )
        if not outcome.held:
            raise LeaseLost("its stream entry was reclaimed before the result could be stored")
        if outcome.duplicates:
            logger.warning(
                "%s: %d of its spans were not stored: their span ids were stored already", run, outcome.duplicates
            )
        run.ended = status
        setattr(self.totals, status, getattr(self.totals, status) + 1)
        metrics.rollout_ended(status)
        logger.debug("%s: %s with %d spans", run, status, len(spans))

    async def _retry(self, run: _Running, what: str, op: Callable[[], Awaitable[T]]) -> T:
        """Run `op`, retrying while Redis is unreachable, until the lease could have lapsed."""
        backoff = Backoff(first=0.1, cap=5.0)
        while True:
            try:
                return await op()
            except TRANSIENT_ERRORS as exc:
                metrics.redis_error("store")
                run.check()
                if self._leases.since_renewed(run.entry_id) > self.lease_seconds:
                    raise LeaseLost(f"{what} kept failing for longer than the lease: {exc}") from exc
                delay = backoff.next()
                logger.warning("%s: %s failed (%s); retrying in %.1fs", run, what, exc, delay)
                await asyncio.sleep(delay)

    async def _release(self, run: _Running, reason: str) -> None:
        metadata = {"released": {"worker_id": self.worker_id, "reason": reason}}
        try:
            released = await self.store.leases.release(run.rollout.rollout_id, run.rollout.attempt.attempt_id, metadata)
        except REDIS_ERRORS as exc:
            metrics.redis_error("release")
            # Nothing is lost: the unrenewed lease lapses and the watchdog reclaims the entry.
            logger.warning("%s: release failed (%s); the watchdog will reclaim it", run, exc)
            return
        if released:
            self.totals.released += 1
            metrics.rollout_ended("released")
            logger.info("%s: released back to the queue (%s)", run, reason)

    async def _explain_loss(self, run: _Running) -> None:
        status = "?"
        try:
            for attempt in await self.store.query_attempts(run.rollout.rollout_id):
                if attempt.attempt_id == run.rollout.attempt.attempt_id:
                    status = attempt.status
        except REDIS_ERRORS:
            status = "unknown (Redis unreachable)"
        logger.warning("%s: no longer held by this worker (%s; attempt is %s); result dropped", run, run.lost, status)

    async def _keep_busy(self) -> None:
        # The worker still runs others: the store shows it busy with the newest, likely the last to end.
        run = next(r for r in reversed(self._inflight.values()) if not r.finishing)
        ar = run.rollout
        self._busy_with = run.entry_id
        try:
            await self.store.update_attempt(ar.rollout_id, ar.attempt.attempt_id, worker_id=self.worker_id)
        except (RedisError, OSError, ValueError) as exc:
            logger.debug("worker %s: could not mark itself busy: %s", self.worker_id, exc)

    async def _call_hooks(self, name: str, **kwargs: Any) -> None:
        for hook in self.hooks:
            try:
                await getattr(hook, name)(agent=self.agent, runner=self, **kwargs)
            except Exception:
                logger.exception("hook %s.%s raised; ignored", type(hook).__name__, name)

    # --- shutdown ---------------------------------------------------------------------------------
    async def _drain(self) -> None:
        """Wait for in-flight rollouts (bounded by the grace period once stopping), then release the rest."""
        deadline: float | None = None
        while self._inflight and not self._hard_stop.is_set():
            if self._stop.is_set() and deadline is None:
                deadline = time.monotonic() + self.grace_seconds
                logger.info(
                    "worker %s: waiting up to %.1fs for %d in-flight rollouts",
                    self.worker_id,
                    self.grace_seconds,
                    len(self._inflight),
                )
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            tasks = [r.task for r in self._inflight.values() if r.task is not None]
            await _wait_any(self._hard_stop, *([] if deadline else [self._stop]), tasks=tasks, timeout=timeout)
        left = [r for r in self._inflight.values() if r.task is not None and not r.task.done()]
        for run in left:
            # A run already storing its result is left to finish: its result is worth more than a retry.
            if not run.finishing:
                run.release_reason = "the worker shut down before the rollout finished"
                run.interrupt()
        await asyncio.gather(*(r.task for r in left if r.task is not None), return_exceptions=True)

    # --- background loops -------------------------------------------------------------------------
    async def _tick(self, seconds: float) -> bool:
        """Sleep `seconds`; False once the worker is closing (then the loop ends)."""
        await _wait_any(self._closing, timeout=seconds)
        return not self._closing.is_set()

    def _lease_lost(self, entry_id: str, why: str) -> None:
        # Called by the lease thread. A run storing its result or being released gave its entry up itself.
        run = self._inflight.get(entry_id)
        if run is not None and not run.finishing and run.release_reason is None:
            self._lose(run, why)

    def _lose(self, run: _Running, why: str) -> None:
        # Both the renew loop and a failing write may find out; the first one counts.
        if run.lost is None:
            run.lost = why
            self.totals.lost += 1
            metrics.rollout_ended("lost")
        run.interrupt()

    async def _heartbeat_loop(self) -> None:
        health = Health(f"worker {self.worker_id}: telemetry", logger)
        while True:
            self._report_soon.clear()
            try:
                await self._report()
            except REDIS_ERRORS as exc:
                metrics.redis_error("telemetry")
                health.failed(exc)
            else:
                health.ok()
            # At most one report a second, however often the worker falls idle.
            if not await self._tick(min(1.0, self.heartbeat_seconds)):
                return
            await _wait_any(self._closing, self._report_soon, timeout=max(0.0, self.heartbeat_seconds - 1.0))
            if self._closing.is_set():
                return

    def telemetry(self) -> dict[str, Any]:
        return {
            **self._probe.sample(),
            **asdict(self.totals),
            "completed": self.totals.completed,
            "in_flight": len(self._inflight),
            "abandoned_threads": self._abandoned_threads,
            "concurrency": self.concurrency,
            "state": self.state,
            "agent": repr(self.agent)[:200],
        }

    async def _report(self) -> None:
        await self.store.update_worker(self.worker_id, self.telemetry())


async def _settle(tasks: Sequence[asyncio.Task[Any]], timeout: float, what: str) -> None:
    """Give `tasks` up to `timeout` to end; leave the rest running (never cancel a Redis call midway)."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=timeout)
    if pending:
        logger.warning("not waiting for %d %s call(s) still pending: is Redis unreachable?", len(pending), what)


async def _wait_any(
    *events: asyncio.Event, tasks: Sequence[asyncio.Future[Any]] = (), timeout: float | None = None
) -> None:
    """Return when any event is set or any task is done, or after `timeout`."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait([*waiters, *tasks], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
