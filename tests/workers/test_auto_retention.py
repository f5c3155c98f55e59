"""A running worker applies the namespace's retention policy by itself, and spares what a wait holds."""

from __future__ import annotations

import asyncio
from typing import Any

from lightning_queue import RedisLightningStore
from lightning_queue.litagent import rollout
from lightning_queue.store.retention import RetentionPolicy, write_policy
from tests.support.pools import eventually
from workers import Worker

LEASE = 0.6


async def test_a_worker_deletes_old_finished_rollouts_but_not_those_an_algorithm_waits_for(
    redis_url: str, namespace: str, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any) -> float:
        return 1.0

    worker_store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=LEASE, scan_debounce_seconds=0.3)
    worker = Worker(agent, worker_store, heartbeat_seconds=0.2, claim_block_ms=100)
    await write_policy(observer, RetentionPolicy(keep_newest=0, min_age=0, auto_every=0.2))
    task = asyncio.create_task(worker.run())
    try:
        held = await observer.enqueue_rollout("held")
        # An algorithm waiting on `held` and a rollout that never finishes.
        never = await observer.start_rollout("never")  # running outside the worker: never terminal here
        waiter = asyncio.create_task(
            observer.wait_for_rollouts(rollout_ids=[held.rollout_id, never.rollout_id], timeout=4)
        )
        others = [(await observer.enqueue_rollout(i)).rollout_id for i in range(5)]

        async def others_gone() -> bool:
            return all([await observer.get_rollout_by_id(r) is None for r in others])

        await eventually(others_gone, 20, "the worker's retention steps to delete the finished rollouts")
        assert (await observer.get_rollout_by_id(held.rollout_id)).status == "succeeded"  # type: ignore[union-attr]
        assert (await observer.get_rollout_by_id(never.rollout_id)).status == "preparing"  # type: ignore[union-attr]
        done = await asyncio.wait_for(waiter, 10)
        assert [r.rollout_id for r in done] == [held.rollout_id]
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await worker_store.aclose()
