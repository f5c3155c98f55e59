"""Score a prompt template through rollouts: publish it as its own resources snapshot, run tasks, read rewards."""

from __future__ import annotations

import logging
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lightning_queue import TraceAdapter, TraceToMessages, find_final_reward
from lightning_queue.store.base import LightningStore
from lightning_queue.types import EnqueueRolloutRequest, NamedResources, PromptTemplate, Rollout, RolloutMode

from ..evaluation import Checker, HeldOut, Scored, last_answer
from ..progress import Progress
from ..rollouts import wait_all

logger = logging.getLogger(__name__)

# How long one wait_for_rollouts call blocks: short enough for live progress, long enough to stay cheap.
_POLL_SECONDS = 1.0


@dataclass
class Candidate:
    """A prompt template under consideration, published as resources snapshot `version`."""

    version: str
    template: str
    parent: str | None = None
    critique: str | None = None
    # Mean reward on the whole validation set, once measured (the score `best` is chosen by).
    val_score: float | None = None
    # That evaluation as a record (accuracy by the task's checker, reward parts, replies).
    val_record: dict[str, Any] | None = None


@dataclass(frozen=True)
class RolloutResult:
    """One rollout of a candidate: its task, final reward (None if none), status and recorded conversations."""

    task: Any
    reward: float | None
    status: str
    conversations: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Evaluation:
    results: list[RolloutResult]

    def held_out(self, checker: Checker | None) -> HeldOut:
        """The results judged by the task's checker on each rollout's last reply."""
        scored = []
        for r in self.results:
            reply = last_answer(r.conversations) if r.status == "succeeded" else None
            verdict = checker(r.task, reply) if checker is not None and reply is not None else None
            scored.append(Scored(r.task, reply, r.reward if reply is not None else None, verdict))
        return HeldOut(scored, checked=checker is not None)

    @property
    def score(self) -> float:
        """Mean reward; a rollout without a reward (failed, timed out) counts as 0: the prompt did not deliver."""
        if not self.results:
            return 0.0
        return statistics.fmean(r.reward if r.reward is not None else 0.0 for r in self.results)


class PromptEvaluator:
    """Runs tasks with a candidate template in place of resource `template_name`, and collects the outcome.

    Every other resource of `base_resources` (typically the LLM) is published unchanged next to it,
    so an agent that takes `llm` and `prompt_template` finds both. Rollouts that have not finished
    `rollout_timeout` seconds after they were enqueued are counted as reward 0.
    """

    def __init__(
        self,
        store: LightningStore,
        base_resources: NamedResources,
        template_name: str,
        *,
        adapter: TraceAdapter[Any] | None = None,
        rollout_timeout: float = 600.0,
        progress: Progress | None = None,
    ) -> None:
        self.store = store
        self.base_resources = dict(base_resources)
        self.template_name = template_name
        self.adapter: TraceAdapter[Any] = adapter or TraceToMessages()
        self.rollout_timeout = rollout_timeout
        self.progress = progress
        self.rollouts_total = 0
        self._published: set[str] = set()
        # Counters of the current phase (a batch of concurrent evaluations), for the progress bar.
        self._phase_enqueued = 0
        self._phase_done = 0

    def begin_phase(self) -> None:
        self._phase_enqueued = self._phase_done = 0

    async def publish(self, candidate: Candidate) -> str:
        """Store the candidate's snapshot once; its version is the resources id rollouts pin."""
        if candidate.version not in self._published:
            resources: NamedResources = {
                **self.base_resources,
                self.template_name: PromptTemplate(template=candidate.template, engine="f-string"),
            }
            await self.store.update_resources(candidate.version, resources)
            self._published.add(candidate.version)
        return candidate.version

    async def evaluate(self, candidate: Candidate, tasks: Sequence[Any], mode: RolloutMode) -> Evaluation:
        resources_id = await self.publish(candidate)
        queued = await self.store.enqueue_many_rollouts(
            [EnqueueRolloutRequest(input=task, mode=mode, resources_id=resources_id) for task in tasks]
        )
        ids = [r.rollout_id for r in queued]
        self.rollouts_total += len(ids)
        self._phase_enqueued += len(ids)
        self._show()
        statuses = await self._wait(ids)
        results = []
        for rollout_id, task in zip(ids, tasks, strict=True):
            status = statuses.get(rollout_id)
            if status is None:
                results.append(RolloutResult(task, None, "unfinished"))
                continue
            spans = (await self.store.query_spans(rollout_id, "latest")).items
            results.append(RolloutResult(task, find_final_reward(spans), status, self._conversations(spans)))
        return Evaluation(results)

    async def _wait(self, ids: list[str]) -> dict[str, str]:
        async def show(fresh: list[Rollout], _: int) -> None:
            self._phase_done += len(fresh)
            self._show()

        done = await wait_all(self.store, ids, timeout=self.rollout_timeout, on_finished=show, poll=_POLL_SECONDS)
        if len(done) < len(ids):
            logger.warning(
                "%d of %d rollouts did not finish within %.0fs; they count as reward 0",
                len(ids) - len(done),
                len(ids),
                self.rollout_timeout,
            )
        return done

    def _conversations(self, spans: Sequence[Any]) -> list[dict[str, Any]]:
        try:
            return list(self.adapter.adapt(spans))
        except ValueError as exc:
            # A malformed span costs the critic one example, not the whole search.
            logger.warning("could not read the LLM calls of a rollout: %s", exc)
            return []

    def _show(self) -> None:
        if self.progress is not None:
            self.progress.rollouts(self._phase_done, max(1, self._phase_enqueued))
