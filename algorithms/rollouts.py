"""Enqueue tasks pinned to a resources snapshot and wait for them: the rollout step every ready algorithm shares."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from lightning_queue.store.base import LightningStore
from lightning_queue.types import EnqueueRolloutRequest, Rollout, RolloutConfig, RolloutMode

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

    async def show(_: list[Rollout], finished: int) -> None:
        if progress is not None:
            progress.rollouts(finished, len(ids))

    done = await wait_all(store, ids, timeout=timeout, on_finished=show)
    if len(done) < len(ids):
        logger.warning("%d of %d rollouts did not finish within %.0fs", len(ids) - len(done), len(ids), timeout)
    return [(task, i if done.get(i) == "succeeded" else None) for task, i in zip(tasks, ids, strict=True)]


async def wait_all(
    store: LightningStore,
    ids: Sequence[str],
    *,
    timeout: float,
    on_finished: Callable[[list[Rollout], int], Awaitable[None]] | None = None,
    poll: float = _WAIT_SLICE_SECONDS,
) -> dict[str, str]:
    """Wait until every rollout of `ids` finished or `timeout` seconds passed; id -> status of the finished.

    `on_finished(fresh, finished)` is awaited after every slice of at most `poll` seconds, with the
    rollouts that finished in it (possibly none) and how many have finished so far.
    """
    done: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while len(done) < len(ids):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        pending = [i for i in ids if i not in done]
        finished = await store.wait_for_rollouts(rollout_ids=pending, timeout=min(poll, remaining))
        fresh = [r for r in finished if r.rollout_id not in done]
        for rollout in fresh:
            done[rollout.rollout_id] = rollout.status
        if on_finished is not None:
            await on_finished(fresh, len(done))
        if not fresh:
            # The wait returns at once for rollouts the store does not know; don't spin on them.
            await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    return done
