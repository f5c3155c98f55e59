"""`Baseline`: run every task through the workers once and report what came back (no learning)."""

from __future__ import annotations

import logging
import statistics
from typing import Any

from ..llm_proxy import LLMProxy
from ..reward import find_final_reward
from ..store.base import LightningStore
from ..types import EnqueueRolloutRequest, RolloutMode
from .base import Algorithm
from .decorators import with_llm_proxy, with_store

logger = logging.getLogger(__name__)


class Baseline(Algorithm):
    """Enqueue the train tasks then the val tasks, at most `max_queue_length` in flight, `n_epochs` times.

    Initial resources are published as snapshot `"default"`; with a proxy and no initial resources,
    the proxy itself is published as `main_llm`. Returns a summary per mode: rollouts, how many
    succeeded, and the mean final reward.
    """

    def __init__(self, *, n_epochs: int = 1, max_queue_length: int = 64, timeout: float | None = None) -> None:
        super().__init__()
        if n_epochs < 1 or max_queue_length < 1:
            raise ValueError(f"n_epochs and max_queue_length must be >= 1, got {n_epochs!r}, {max_queue_length!r}")
        self.n_epochs = n_epochs
        self.max_queue_length = max_queue_length
        self.timeout = timeout

    @with_llm_proxy()
    @with_store
    async def run(
        self, store: LightningStore, llm_proxy: LLMProxy | None, train_dataset: Any = None, val_dataset: Any = None
    ) -> dict[str, dict[str, float]]:
        if train_dataset is None and val_dataset is None:
            raise ValueError("Baseline needs a train_dataset or a val_dataset")
        resources = self.get_initial_resources()
        if resources is None and llm_proxy is not None:
            resources = {"main_llm": llm_proxy.as_resource()}
        resources_id = (await store.update_resources("default", resources)).resources_id if resources else None
        summary: dict[str, dict[str, float]] = {}
        for epoch in range(self.n_epochs):
            for mode, dataset in (("train", train_dataset), ("val", val_dataset)):
                if dataset is None:
                    continue
                rewards, succeeded, total = await self._run_mode(store, list(dataset), mode, resources_id)  # type: ignore[arg-type]
                known = [r for r in rewards if r is not None]
                summary[mode] = {
                    "rollouts": float(total),
                    "succeeded": float(succeeded),
                    "mean_reward": statistics.fmean(known) if known else float("nan"),
                }
                logger.info("baseline epoch %d %s: %s", epoch, mode, summary[mode])
        return summary

    async def _run_mode(
        self, store: LightningStore, tasks: list[Any], mode: RolloutMode, resources_id: str | None
    ) -> tuple[list[float | None], int, int]:
        rewards: list[float | None] = []
        succeeded = 0
        for start in range(0, len(tasks), self.max_queue_length):
            chunk = tasks[start : start + self.max_queue_length]
            queued = await store.enqueue_many_rollouts(
                [EnqueueRolloutRequest(input=t, mode=mode, resources_id=resources_id) for t in chunk]
            )
            ids = [r.rollout_id for r in queued]
            done = await store.wait_for_rollouts(rollout_ids=ids, timeout=self.timeout)
            for rollout in done:
                if rollout.status == "succeeded":
                    succeeded += 1
                spans = await store.query_spans(rollout.rollout_id, "latest")
                rewards.append(find_final_reward(spans.items))
        return rewards, succeeded, len(tasks)
