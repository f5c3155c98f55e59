"""The rollout queue: FIFO claiming, skipping stale entries, requeuing and concurrent claims."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import EnqueueRolloutRequest, RolloutConfig, Span

StoreFactory = Callable[..., RedisLightningStore]


async def test_dequeue_hands_out_rollouts_in_enqueue_order(store: RedisLightningStore) -> None:
    queued = [await store.enqueue_rollout({"index": index}) for index in range(5)]

    claimed = [await store.dequeue_rollout() for _ in range(5)]

    assert [rollout.rollout_id for rollout in claimed] == [rollout.rollout_id for rollout in queued]


async def test_enqueue_many_keeps_request_order_in_result_and_queue(store: RedisLightningStore) -> None:
    requests = [EnqueueRolloutRequest(input={"index": index}, mode="train") for index in range(5)]

    created = await store.enqueue_many_rollouts(requests)
    claimed = [await store.dequeue_rollout() for _ in range(5)]

    assert [rollout.input for rollout in created] == [{"index": index} for index in range(5)]
    assert all(rollout.status == "queuing" and rollout.mode == "train" for rollout in created)
    assert [rollout.rollout_id for rollout in claimed] == [rollout.rollout_id for rollout in created]


async def test_enqueue_many_and_enqueue_share_one_fifo(store: RedisLightningStore) -> None:
    single_first = await store.enqueue_rollout("a")
    batch = await store.enqueue_many_rollouts([EnqueueRolloutRequest(input="b"), EnqueueRolloutRequest(input="c")])
    single_last = await store.enqueue_rollout("d")

    claimed = await store.dequeue_many_rollouts(limit=10)

    expected = [single_first.rollout_id, *(rollout.rollout_id for rollout in batch), single_last.rollout_id]
    assert [rollout.rollout_id for rollout in claimed] == expected


async def test_dequeue_on_an_empty_queue_returns_none_at_once(store: RedisLightningStore) -> None:
    started = time.monotonic()

    assert await store.dequeue_rollout() is None
    assert time.monotonic() - started < 0.5


@pytest.mark.parametrize("status", ["preparing", "running", "succeeded", "failed", "cancelled"])
async def test_dequeue_skips_entries_whose_rollout_is_no_longer_queued(store: RedisLightningStore, status: str) -> None:
    skipped = await store.enqueue_rollout("skipped")
    eligible = await store.enqueue_rollout("eligible")
    await store.update_rollout(skipped.rollout_id, status=status)

    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == eligible.rollout_id
    assert await store.dequeue_rollout() is None
    assert await store.query_attempts(skipped.rollout_id) == []


async def test_rollout_set_to_requeuing_by_update_rollout_can_be_dequeued_again(
    store: RedisLightningStore,
) -> None:
    started = await store.start_rollout("task")

    await store.update_rollout(started.rollout_id, status="requeuing")
    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == started.rollout_id
    assert claimed.attempt.sequence_id == 2


async def test_rollout_requeued_by_the_retry_rule_can_be_dequeued_again(store: RedisLightningStore) -> None:
    config = RolloutConfig(max_attempts=2, retry_condition=["failed"])
    started = await store.start_rollout("task", config=config)

    await store.update_attempt(started.rollout_id, started.attempt.attempt_id, status="failed")
    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == started.rollout_id
    assert claimed.status == "preparing"
    assert claimed.attempt.sequence_id == 2


async def test_rollout_set_back_to_queuing_can_be_dequeued_again(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")

    await store.update_rollout(started.rollout_id, status="queuing")
    claimed = await store.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == started.rollout_id


async def test_requeuing_a_rollout_already_in_the_queue_does_not_queue_it_twice(
    store: RedisLightningStore,
) -> None:
    queued = await store.enqueue_rollout("task")

    await store.update_rollout(queued.rollout_id, status="requeuing")
    await store.update_rollout(queued.rollout_id, status="requeuing")
    assert await store.queue_depth() == 1
    first = await store.dequeue_rollout()
    second = await store.dequeue_rollout()

    assert first is not None and first.rollout_id == queued.rollout_id
    assert second is None
    assert len(await store.query_attempts(queued.rollout_id)) == 1


async def test_requeued_rollout_that_went_running_again_is_not_handed_out(
    store: RedisLightningStore, make_span: Callable[..., Span]
) -> None:
    config = RolloutConfig(max_attempts=2, retry_condition=["failed"])
    started = await store.start_rollout("task", config=config)
    await store.update_attempt(started.rollout_id, "latest", status="failed")
    assert (await store.get_rollout_by_id(started.rollout_id)).status == "requeuing"

    # A late span of the (still latest) failed attempt revives the rollout.
    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))

    assert (await store.get_rollout_by_id(started.rollout_id)).status == "running"
    assert await store.dequeue_rollout() is None


@pytest.mark.parametrize("terminal", ["succeeded", "failed", "cancelled"])
async def test_requeued_rollout_that_became_terminal_is_not_handed_out(
    store: RedisLightningStore, terminal: str
) -> None:
    started = await store.start_rollout("task")
    await store.update_rollout(started.rollout_id, status="requeuing")

    await store.update_rollout(started.rollout_id, status=terminal)

    assert await store.dequeue_rollout() is None
    assert len(await store.query_attempts(started.rollout_id)) == 1


async def test_dequeue_many_claims_up_to_limit_in_fifo_order(store: RedisLightningStore) -> None:
    queued = [await store.enqueue_rollout({"index": index}) for index in range(5)]

    first = await store.dequeue_many_rollouts(limit=3)
    rest = await store.dequeue_many_rollouts(limit=3)

    assert [rollout.rollout_id for rollout in first] == [rollout.rollout_id for rollout in queued[:3]]
    assert [rollout.rollout_id for rollout in rest] == [rollout.rollout_id for rollout in queued[3:]]
    assert all(rollout.status == "preparing" and rollout.attempt.sequence_id == 1 for rollout in first)


async def test_dequeue_many_on_an_empty_queue_returns_an_empty_list(store: RedisLightningStore) -> None:
    assert list(await store.dequeue_many_rollouts(limit=4)) == []


async def test_dequeue_many_stamps_the_worker_on_every_attempt(store: RedisLightningStore) -> None:
    for index in range(3):
        await store.enqueue_rollout({"index": index})

    claimed = await store.dequeue_many_rollouts(limit=3, worker_id="worker-7")

    assert len(claimed) == 3
    assert [rollout.attempt.worker_id for rollout in claimed] == ["worker-7"] * 3
    for rollout in claimed:
        assert (await store.get_latest_attempt(rollout.rollout_id)).worker_id == "worker-7"


async def test_dequeued_rollout_leaves_the_queue(store: RedisLightningStore) -> None:
    for index in range(3):
        await store.enqueue_rollout({"index": index})
    assert await store.queue_depth() == 3

    await store.dequeue_rollout()

    assert await store.queue_depth() == 2


async def test_store_instances_on_one_namespace_share_the_queue(make_store: StoreFactory) -> None:
    producer, consumer = make_store(), make_store()
    queued = await producer.enqueue_rollout("task")

    claimed = await consumer.dequeue_rollout()

    assert claimed is not None and claimed.rollout_id == queued.rollout_id
    assert (await producer.get_rollout_by_id(queued.rollout_id)).status == "preparing"


@pytest.mark.parametrize("instances", [1, 3])
async def test_concurrent_dequeues_claim_each_rollout_exactly_once(make_store: StoreFactory, instances: int) -> None:
    stores = [make_store() for _ in range(instances)]
    queued = await stores[0].enqueue_many_rollouts([EnqueueRolloutRequest(input=index) for index in range(20)])

    results: list[Any] = await asyncio.gather(
        *(stores[index % instances].dequeue_rollout(worker_id=f"worker-{index}") for index in range(30))
    )

    claimed = [result for result in results if result is not None]
    assert len(claimed) == 20
    assert results.count(None) == 10
    assert {rollout.rollout_id for rollout in claimed} == {rollout.rollout_id for rollout in queued}
    assert all(rollout.attempt.sequence_id == 1 for rollout in claimed)


async def test_concurrent_enqueues_get_unique_ids(store: RedisLightningStore) -> None:
    created = await asyncio.gather(*(store.enqueue_rollout({"index": index}) for index in range(50)))

    assert len({rollout.rollout_id for rollout in created}) == 50
    assert (await store.query_rollouts()).total == 50
    assert await store.queue_depth() == 50
