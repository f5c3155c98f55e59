"""Several OS processes claiming from one queue on a real redis-server: every rollout once, none twice."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import queue
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import EnqueueRolloutRequest

PROCESSES = 4
ROLLOUTS = 200

pytestmark = pytest.mark.slow


def claim_until_empty(url: str, namespace: str, worker_id: str, start: Any, results: Any) -> None:
    """Child process: its own store; dequeue until two empty answers in a row, report what it claimed."""

    async def run() -> list[str]:
        store = RedisLightningStore(url, namespace=namespace)
        claimed: list[str] = []
        empty_in_a_row = 0
        try:
            start.wait(timeout=60)
            while empty_in_a_row < 2:
                rollout = await store.dequeue_rollout(worker_id=worker_id)
                if rollout is None:
                    empty_in_a_row += 1
                else:
                    empty_in_a_row = 0
                    claimed.append(rollout.rollout_id)
        finally:
            await store.aclose()
        return claimed

    try:
        results.put((worker_id, os.getpid(), asyncio.run(run()), None))
    except BaseException as error:
        results.put((worker_id, os.getpid(), [], repr(error)))


@pytest.fixture
def namespace() -> str:
    return f"mp-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def real_store(redis_url: str, namespace: str) -> AsyncIterator[RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=namespace)
    yield store
    try:
        await store.purge()
    finally:
        await store.aclose()


def run_claimers(url: str, namespace: str) -> list[tuple[str, int, list[str], str | None]]:
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(PROCESSES)
    results = context.Queue()
    processes = [
        context.Process(
            target=claim_until_empty,
            args=(url, namespace, f"Worker-{index}", start, results),
            name=f"claimer-{index}",
        )
        for index in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    try:
        reports = [results.get(timeout=90) for _ in processes]
    except queue.Empty:
        pytest.fail("a claimer process did not report within 90 s")
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
    return reports


async def test_processes_together_claim_every_rollout_exactly_once(
    real_store: RedisLightningStore, redis_url: str, namespace: str
) -> None:
    queued = await real_store.enqueue_many_rollouts(
        [EnqueueRolloutRequest(input={"index": index}) for index in range(ROLLOUTS)]
    )

    reports = await asyncio.to_thread(run_claimers, redis_url, namespace)

    assert [error for *_, error in reports] == [None] * PROCESSES
    assert len({pid for _, pid, _, _ in reports}) == PROCESSES
    claimed = [rollout_id for _, _, ids, _ in reports for rollout_id in ids]
    assert len(claimed) == ROLLOUTS
    assert set(claimed) == {rollout.rollout_id for rollout in queued}
    assert sum(1 for _, _, ids, _ in reports if ids) >= 2, "the processes did not share the work"
    stats = await real_store.statistics()
    assert stats["total_attempts"] == ROLLOUTS
    assert await real_store.queue_depth() == 0
