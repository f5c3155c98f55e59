"""Enqueue tasks pinned to a resources snapshot and wait for them: the rollout step every ready algorithm shares."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from lightning_queue.store.base import LightningStore
from lightning_queue.types import EnqueueRolloutRequest, RolloutConfig, RolloutMode

from .progress import Progress

logger = logging.getLogger(__name__)

# How long one wait_for_rollouts call blocks: short enough for live progress, long enough to stay cheap.
_WAIT_SLICE_SECONDS = 2.0


async def run_tasks(
    store: LightningStore,
    tasks: Sequence[Any],
    *,
    resources_id: str,
    mode: RolloutMode,
    timeout: float,
    config: RolloutConfig | None = None,
    progress: Progress | None = None,
) -> list[tuple[Any, str | None]]:
    """Roll out every task once; return (task, rollout id if it succeeded else None), in task order.

    A rollout still unfinished `timeout` seconds after the enqueue is given up on (and logged).
    """
    requests = [EnqueueRolloutRequest(input=t, mode=mode, resources_id=resources_id, config=config) for t in tasks]
    ids = [r.rollout_id for r in await store.enqueue_many_rollouts(requests)]
    done: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids) and time.monotonic() < deadline:
        pending = [i for i in ids if i not in done]
        for rollout in await store.wait_for_rollouts(
            rollout_ids=pending, timeout=min(_WAIT_SLICE_SECONDS, max(0.0, deadline - time.monotonic()))
        ):
            done[rollout.rollout_id] = rollout.status
        if progress is not None:
            progress.rollouts(len(done), len(ids))
    if len(done) < len(ids):
        logger.warning("%d of %d rollouts did not finish within %.0fs", len(ids) - len(done), len(ids), timeout)
    return [(task, i if done.get(i) == "succeeded" else None) for task, i in zip(tasks, ids, strict=True)]
