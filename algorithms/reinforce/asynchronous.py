"""Asynchronous REINFORCE: workers keep rolling out while the policy trains, at most S versions behind.

python -m algorithms.reinforce --async --max-staleness S

The synchronous loop leaves every worker slot idle while it updates, saves and reloads, and most of
them idle while the last rollouts of an iteration finish. Here:

- **Producer.** Train rollouts go to the store ahead of need, one group per task (`samples_per_task`
  rollouts, whose mean reward is the task's baseline), all pinned to one resources id that every
  weight sync updates, so a rollout claimed later runs under the newest policy. The producer keeps
  (S + v + 2)·B rollouts enqueued at version v (B = tasks_per_iteration × samples_per_task): one batch
  more than may be admitted, so a worker never waits for an enqueue.
- **Staleness bound.** The store admits (claims for the first time) at most (S + v + 1)·B train
  rollouts by version v (AReaL's rule, v counted from the first train snapshot), in the claim script
  (`store.set_staleness`); a failed or cancelled rollout gives its slot back.
- **Consumer.** Each step trains on the first B rollouts to finish, whole groups in the order the
  groups complete (a partial group would lose its baseline). A sample's staleness is the version
  being trained minus the version it was generated under (the later of its triplet's, recorded by
  the proxy, and its attempt's); one staler than S is not trained on, only counted (`dropped_stale`): a rollout
  admitted in bound can still finish late. Failed rollouts count as consumed and wrong, as in the
  synchronous loop. No importance correction: plain REINFORCE on slightly off-policy samples.
- **Weight sync.** After the step: pause claims, drain the proxy (in-flight LLM calls finish on the
  old weights, new ones get 503 + Retry-After), load the checkpoint into the server, publish the
  snapshot (policy version + 1), resume. Rollouts already claimed keep running through it: their calls after the sync
  use the new weights, and their triplets say so.
- **Shutdown** (budget spent, iterations done, or an error): stop producing, cancel what is still
  queued, let the running rollouts finish (bounded, then cancel), lift the staleness bound; claims
  are resumed even when the sync raised.

Per iteration the metrics file gets the staleness histogram of the consumed samples; the summary
record has the run's histogram and the workers' idle fraction (algorithms/worker_idle.py).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_queue import LLMProxy
from lightning_queue.algorithm import batch_iter_over_dataset
from lightning_queue.llm_proxy import DrainTimeout
from lightning_queue.store.base import LightningStore
from lightning_queue.types import AttemptedRollout, EnqueueRolloutRequest, Rollout, Triplet

from ..evaluation import HeldOut, Scored, score_rollout
from ..progress import Progress
from .algorithm import Reinforce
from .policy import PolicyTrainer, Sample, samples_from_triplets

logger = logging.getLogger(__name__)

TRAIN_RESOURCES = "policy-train"
TERMINAL = ("succeeded", "failed", "cancelled")
QUEUED = ("queuing", "requeuing")
# At shutdown, how long rollouts already running may take to finish before they are cancelled.
_FINISH_SECONDS = 60.0


def check_staleness_options(max_staleness: object, batch_size: object) -> None:
    """Bad values are named: S is a whole number ≥ 0, B ≥ 1."""
    if isinstance(max_staleness, bool) or not isinstance(max_staleness, int) or max_staleness < 0:
        raise ValueError(f"max_staleness must be a whole number of policy versions >= 0, got {max_staleness!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive whole number of rollouts, got {batch_size!r}")


def admitted_limit(max_staleness: int, batch_size: int, steps: int) -> int:
    """AReaL's bound: rollouts that may have been admitted once `steps` updates are done."""
    return (max_staleness + steps + 1) * batch_size


def sample_version(triplet: Triplet, attempt_version: int | None) -> int | None:
    """The policy version a call was generated under: the later of the proxy's label and the attempt's.

    A call cannot run on weights older than those its attempt was claimed under, but the proxy reads
    the namespace's version every `pause_poll` seconds, so its label can lag a publish; a sync during
    the rollout makes the label the later one.
    """
    value = triplet.metadata.get("policy_version")
    label = value if isinstance(value, int) and not isinstance(value, bool) else None
    known = [v for v in (label, attempt_version) if v is not None]
    return max(known) if known else None


def histogram(staleness: Sequence[int]) -> dict[str, int]:
    """Samples per staleness, keys as strings (JSON), every value from 0 to the largest present."""
    counts = collections.Counter(staleness)
    return {str(k): counts.get(k, 0) for k in range(max(counts, default=-1) + 1)}


async def drain_proxy(llm_proxy: LLMProxy, timeout: float) -> float:
    """Wait for the proxy's in-flight calls; the seconds waited.

    A drain that times out is logged and the sync goes on: the calls still running keep the weights
    they started with on `lq serve-model`, so the reload is safe, only their version label is late.
    """
    try:
        return await llm_proxy.drain(timeout)
    except DrainTimeout as exc:
        logger.warning("weight sync: the proxy did not drain within %.0fs (%s); reloading anyway", timeout, exc)
        return timeout


@dataclass
class Group:
    """The rollouts of one task, enqueued together; complete when all of them ended (or were given up on)."""

    task: Any
    rollout_ids: list[str]
    ended: dict[str, str] = field(default_factory=dict)  # rollout id -> terminal status
    # Resolves when every rollout of the group ended, or `rollout_timeout` after the enqueue.
    waiter: asyncio.Task[list[Rollout]] | None = None

    @property
    def complete(self) -> bool:
        return len(self.ended) == len(self.rollout_ids)

    def pending(self) -> list[str]:
        return [i for i in self.rollout_ids if i not in self.ended]


class AsyncReinforce(Reinforce):
    """REINFORCE whose workers keep rolling out while it trains; samples at most `max_staleness` versions old."""

    mode = "async"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        if cfg.max_staleness is None:
            raise ValueError("AsyncReinforce needs ReinforceConfig.max_staleness (S >= 0); use Reinforce without it")
        check_staleness_options(cfg.max_staleness, self.batch_size)
        self.max_staleness: int = cfg.max_staleness
        self.groups: dict[str, Group] = {}  # unconsumed groups by their first rollout id, in enqueue order
        self.completed: list[Group] = []  # complete, unconsumed, in completion order
        self.enqueued = 0

    @property
    def batch_size(self) -> int:
        return self.config.tasks_per_iteration * self.config.samples_per_task

    async def _check_ready(self, store: LightningStore, llm_proxy: LLMProxy | None) -> None:
        await super()._check_ready(store, llm_proxy)
        if llm_proxy is None:
            raise ValueError(
                "--async drains the LLM proxy at each weight sync, so it needs the proxy in this process: "
                "drop --proxy-url (ReinforceConfig.proxy_url) and let the run start its own"
            )
        missing = []
        try:
            await store.policy_version()
            await store.claims_paused()
            await store.get_staleness()
        except NotImplementedError:
            missing.append("policy versions, pause_claims/resume_claims and set_staleness")
        if missing:
            raise ValueError(
                f"--async needs a store with {' and '.join(missing)} (issue 17); {type(store).__name__} lacks "
                "them: use RedisLightningStore, or drop --async"
            )

    async def _train(
        self, store: LightningStore, llm_proxy: LLMProxy | None, trainer: PolicyTrainer, train: list[Any]
    ) -> tuple[float, dict[str, Any]]:
        cfg, s, b = self.config, self.max_staleness, self.batch_size
        started = time.monotonic()
        version = await self._publish_train(store, llm_proxy)
        # Counted from this version: the first train snapshot's.
        bound = await store.set_staleness(s, b, modes=("train",))
        logger.info("async REINFORCE: %s", bound.describe() if bound is not None else "no bound")
        batches = batch_iter_over_dataset(train, cfg.tasks_per_iteration, seed=cfg.seed)
        tasks = (task for batch in batches for task in batch)
        staleness: list[int] = []
        dropped = 0
        window_end = time.time()
        try:
            with Progress(cfg.iterations, "async REINFORCE") as progress:
                for step in range(cfg.iterations):
                    if self._out_of_time(started, step):
                        break
                    # Topped up after each sync; the spare batch queued before it is admitted at once.
                    await self._produce(store, tasks, step)
                    record, versions, stale = await self._step(store, llm_proxy, trainer, step, version)
                    version = record["policy_version_after"]
                    staleness += versions
                    dropped += stale
                    window_end = time.time()
                    self._log(record)
                    progress.advance(f"iteration {step + 1}: mean reward {record['reward_mean']:.3f}")
        finally:
            cleanup = await self._shut_down(store)
        return window_end, {
            "training_seconds": round(time.monotonic() - started, 2),
            "max_staleness": s,
            "batch_size": b,
            "staleness": histogram(staleness),
            "dropped_stale": dropped,
            **cleanup,
        }

    async def _publish_train(self, store: LightningStore, llm_proxy: LLMProxy | None) -> int:
        """Publish the current weights as the train snapshot; its policy version."""
        sampling = {"temperature": self.config.temperature, "max_tokens": self.config.max_tokens}
        update = await store.update_resources(TRAIN_RESOURCES, {"main_llm": self._resource(llm_proxy, sampling)})
        if update.policy_version is None:
            raise RuntimeError(f"{type(store).__name__}.update_resources returned no policy_version")
        return update.policy_version

    async def _produce(self, store: LightningStore, tasks: Iterator[Any], steps: int) -> None:
        """Enqueue groups until the bound's target for `steps` updates done is reached."""
        cfg = self.config
        # One batch more than the claim-time bound admits: it waits in the queue for the next version.
        target = admitted_limit(self.max_staleness, self.batch_size, steps) + self.batch_size
        while self.enqueued + cfg.samples_per_task <= target:
            task = next(tasks)
            requests = [
                EnqueueRolloutRequest(input=task, mode="train", resources_id=TRAIN_RESOURCES, config=cfg.retry)
                for _ in range(cfg.samples_per_task)
            ]
            ids = [r.rollout_id for r in await store.enqueue_many_rollouts(requests)]
            waiter = asyncio.create_task(store.wait_for_rollouts(rollout_ids=ids, timeout=cfg.rollout_timeout))
            self.groups[ids[0]] = Group(task, ids, waiter=waiter)
            self.enqueued += len(ids)

    async def _next_batch(self, store: LightningStore) -> list[Group]:
        """Block until B rollouts' worth of groups have completed; take them, in completion order."""
        b = self.batch_size
        while sum(len(g.rollout_ids) for g in self.completed) < b:
            waiting = {g.waiter: g for g in self.groups.values() if not g.complete and g.waiter is not None}
            if not waiting:
                raise RuntimeError(f"waiting for {b} rollouts but none is in flight: the producer fell behind")
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for waiter in done:
                await self._ended(store, waiting[waiter], waiter.result())
        batch: list[Group] = []
        while sum(len(g.rollout_ids) for g in batch) < b:
            group = self.completed.pop(0)
            del self.groups[group.rollout_ids[0]]
            batch.append(group)
        return batch

    async def _ended(self, store: LightningStore, group: Group, finished: Sequence[Rollout]) -> None:
        """Record a group's end; rollouts unfinished after `rollout_timeout` are given up on and count as failed."""
        for rollout in finished:
            group.ended[rollout.rollout_id] = rollout.status
        stragglers = group.pending()
        if stragglers:
            logger.warning("giving up on %d rollouts of task %r after %.0fs", len(stragglers), group.task,
                           self.config.rollout_timeout)  # fmt: skip
            await self._cancel_queued(store, stragglers)
            group.ended.update(dict.fromkeys(stragglers, "failed"))
        self.completed.append(group)

    async def _step(
        self,
        store: LightningStore,
        llm_proxy: LLMProxy | None,
        trainer: PolicyTrainer,
        step: int,
        version: int,
    ) -> tuple[dict[str, Any], list[int], int]:
        """Consume a batch, update, sync the weights; the record, the samples' staleness, how many were dropped."""
        cfg = self.config
        started = time.monotonic()
        batch = await self._next_batch(store)
        waited = time.monotonic()
        samples, staleness, stale, scored = await self._samples(store, batch, version)
        if not samples:
            raise RuntimeError(
                f"iteration {step}: none of {self.batch_size} rollouts produced a triplet with token ids, a reward "
                f"and a policy version within {self.max_staleness} of {version}; does the upstream return "
                "token ids, and does the agent return a reward?"
            )
        metrics = await asyncio.to_thread(trainer.step, samples)
        checkpoint = await asyncio.to_thread(trainer.save, Path(cfg.checkpoint_dir) / f"iter-{step + 1}")
        updated = time.monotonic()
        in_flight = await self._count(store, ("preparing", "running"))
        new_version, drained = await self._sync(store, llm_proxy, checkpoint)
        train = HeldOut(scored, checked=self.checker is not None)
        record = {
            "iteration": step + 1,
            "policy_version": version,
            "policy_version_after": new_version,
            "rollouts": sum(len(g.rollout_ids) for g in batch),
            "succeeded": sum(status == "succeeded" for g in batch for status in g.ended.values()),
            **{k: v for k, v in metrics.items() if k != "samples"},
            "samples": len(samples),
            "dropped_stale": stale,
            "staleness": histogram(staleness),
            "in_flight_during_sync": in_flight,
            "train_accuracy": train.accuracy,
            "train_parts": train.parts(),
            "train_replies": train.samples(3),
            "rollout_seconds": round(waited - started, 2),
            "update_seconds": round(updated - waited, 2),
            "sync_seconds": round(time.monotonic() - updated, 2),
            "drain_seconds": round(drained, 2),
            "checkpoint": str(checkpoint),
        }
        return record, staleness, stale

    async def _samples(
        self, store: LightningStore, batch: Sequence[Group], version: int
    ) -> tuple[list[Sample], list[int], int, list[Scored]]:
        """The batch's trainable samples within the bound, their staleness, how many were too stale, the scores."""
        adapter = self._adapter()
        samples: list[Sample] = []
        staleness: list[int] = []
        stale = 0
        scored: list[Scored] = []
        for group in batch:
            key = json.dumps(group.task, sort_keys=True, default=str)
            for rollout_id in group.rollout_ids:
                if group.ended[rollout_id] != "succeeded":  # wrong, as in the held-out evaluation
                    scored.append(score_rollout(group.task, None, None))
                    continue
                spans = (await store.query_spans(rollout_id, "latest")).items
                scored.append(score_rollout(group.task, spans, self.checker))
                attempt = await store.get_latest_attempt(rollout_id)
                for triplet in adapter.adapt(spans):
                    made = sample_version(triplet, attempt.policy_version if attempt is not None else None)
                    if made is None:
                        raise RuntimeError(f"rollout {rollout_id} has no policy version on its triplet or attempt")
                    for sample in samples_from_triplets([triplet], group=key):
                        if version - made > self.max_staleness:
                            stale += 1
                            continue
                        samples.append(sample)
                        staleness.append(version - made)
        return samples, staleness, stale, scored

    async def _sync(self, store: LightningStore, llm_proxy: LLMProxy | None, checkpoint: Path) -> tuple[int, float]:
        """The weight-sync barrier: pause claims, drain the proxy, reload, publish the next version, resume.

        Returns the new policy version and the seconds the drain waited.
        """
        async with store.claims_pause(ttl=max(60.0, 3 * self.config.drain_timeout)):
            # _check_ready refused to run without a proxy; the test keeps the type narrow.
            drained = await drain_proxy(llm_proxy, self.config.drain_timeout) if llm_proxy is not None else 0.0
            await self.reloader.load(checkpoint)
            return await self._publish_train(store, llm_proxy), drained

    async def _count(self, store: LightningStore, statuses: Sequence[str]) -> int:
        ids = [i for g in self.groups.values() for i in g.pending()]
        if not ids:
            return 0
        rollouts = (await store.query_rollouts(rollout_id_in=ids)).items
        return sum(r.status in statuses for r in rollouts)

    async def _cancel_queued(self, store: LightningStore, ids: Sequence[str]) -> int:
        """Cancel those of `ids` no worker holds; a running one would overwrite the cancel when it ends."""
        if not ids:
            return 0
        queued = [r for r in (await store.query_rollouts(rollout_id_in=list(ids))).items if r.status in QUEUED]
        for rollout in queued:
            await store.update_rollout(rollout.rollout_id, status="cancelled")
        return len(queued)

    async def _shut_down(self, store: LightningStore) -> dict[str, Any]:
        """Leave nothing queued or running, the bound lifted and claims resumed; what was left over."""
        ids = [i for g in self.groups.values() for i in g.rollout_ids]
        if await store.claims_paused():  # a sync that died between pause and resume, past the context manager
            logger.warning("claims were still paused after training: resuming them")
            await store.resume_claims(None)
        cancelled, late = 0, []
        deadline = time.monotonic() + _FINISH_SECONDS
        # Claims stay paused while queued rollouts are cancelled: a worker claiming one between the status
        # read and the cancel would run it, and its attempt's end would move it out of `cancelled` again
        # (the contract's rule). A running rollout whose attempt fails is requeued by the retry rule, not
        # ended, so the queued ones are cancelled again after each short wait until nothing is unended.
        async with store.claims_pause(ttl=30.0):
            while True:
                cancelled += await self._cancel_queued(store, ids)
                running = [r.rollout_id for r in await self._unended(store, ids)]
                left = deadline - time.monotonic()
                if not running or left <= 0:
                    late = running
                    break
                await store.wait_for_rollouts(rollout_ids=running, timeout=min(left, 1.0))
            for rollout_id in late:
                logger.warning("rollout %s still running %.0fs after training ended: cancelling it", rollout_id,
                               _FINISH_SECONDS)  # fmt: skip
                await store.update_rollout(rollout_id, status="cancelled")
        # Every rollout has ended or was cancelled, so the groups' waiters return now.
        waiters = [g.waiter for g in self.groups.values() if g.waiter is not None]
        if waiters:
            _, stuck = await asyncio.wait(waiters, timeout=_FINISH_SECONDS)
            for waiter in stuck:
                waiter.cancel()
        await store.set_staleness(None)  # the held-out evaluation after must not be gated
        return {
            "enqueued": self.enqueued,
            # Enqueued, never trained on: cancelled before (or while) running, or rolled out for nothing.
            "unconsumed_at_end": len(ids),
            "cancelled_at_end": cancelled + len(late),
            "rolled_out_unused": len(ids) - cancelled - len(late),
        }

    async def _unended(self, store: LightningStore, ids: Sequence[str]) -> list[Rollout | AttemptedRollout]:
        if not ids:
            return []
        return [r for r in (await store.query_rollouts(rollout_id_in=list(ids))).items if r.status not in TERMINAL]
