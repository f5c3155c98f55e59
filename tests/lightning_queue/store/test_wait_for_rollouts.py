"""wait_for_rollouts: returns the finished rollouts, promptly, within its timeout, for every waiter."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest

from lightning_queue import RedisLightningStore

StoreFactory = Callable[..., RedisLightningStore]
QUICK = 0.05


async def finish(store: RedisLightningStore, rollout_id: str, how: str) -> None:
    """Make a rollout terminal the way an algorithm or a worker would."""
    if how == "update_rollout":
        await store.update_rollout(rollout_id, status="cancelled")
    else:
        await store.update_attempt(rollout_id, "latest", status="succeeded" if how == "succeeded" else "failed")


async def test_returns_only_the_rollouts_that_are_terminal(store: RedisLightningStore) -> None:
    done = await store.start_rollout("done")
    cancelled = await store.enqueue_rollout("cancelled")
    pending = await store.start_rollout("pending")
    await store.update_attempt(done.rollout_id, "latest", status="succeeded")
    await store.update_rollout(cancelled.rollout_id, status="cancelled")

    finished = await store.wait_for_rollouts(
        rollout_ids=[done.rollout_id, pending.rollout_id, cancelled.rollout_id], timeout=0.1
    )

    assert {rollout.rollout_id: rollout.status for rollout in finished} == {
        done.rollout_id: "succeeded",
        cancelled.rollout_id: "cancelled",
    }


async def test_already_terminal_rollouts_return_at_once(store: RedisLightningStore) -> None:
    rollouts = [await store.enqueue_rollout({"index": index}) for index in range(3)]
    for rollout in rollouts:
        await store.update_rollout(rollout.rollout_id, status="succeeded")

    started = time.monotonic()
    finished = await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id for rollout in rollouts], timeout=None)

    assert time.monotonic() - started < QUICK
    assert len(finished) == 3


async def test_zero_timeout_returns_at_once(store: RedisLightningStore) -> None:
    pending = await store.start_rollout("pending")

    started = time.monotonic()
    finished = await store.wait_for_rollouts(rollout_ids=[pending.rollout_id], timeout=0)

    assert time.monotonic() - started < QUICK
    assert finished == []


async def test_finite_timeout_returns_the_partial_set_in_time(store: RedisLightningStore) -> None:
    done = await store.start_rollout("done")
    pending = await store.start_rollout("pending")
    await store.update_attempt(done.rollout_id, "latest", status="succeeded")

    started = time.monotonic()
    finished = await store.wait_for_rollouts(rollout_ids=[done.rollout_id, pending.rollout_id], timeout=0.1)

    assert time.monotonic() - started < 0.2
    assert [rollout.rollout_id for rollout in finished] == [done.rollout_id]


async def test_unknown_ids_are_ignored(store: RedisLightningStore) -> None:
    done = await store.start_rollout("done")
    await store.update_attempt(done.rollout_id, "latest", status="succeeded")

    finished = await asyncio.wait_for(
        store.wait_for_rollouts(rollout_ids=["ro-missing", done.rollout_id], timeout=None), 2
    )

    assert [rollout.rollout_id for rollout in finished] == [done.rollout_id]


async def test_only_unknown_ids_return_without_waiting(store: RedisLightningStore) -> None:
    finished = await asyncio.wait_for(store.wait_for_rollouts(rollout_ids=["ro-a", "ro-b"], timeout=None), 2)

    assert finished == []


@pytest.mark.parametrize("how", ["succeeded", "failed", "update_rollout"])
async def test_no_timeout_waits_until_the_rollout_finishes(store: RedisLightningStore, how: str) -> None:
    started = await store.start_rollout("task")
    waiter = asyncio.create_task(store.wait_for_rollouts(rollout_ids=[started.rollout_id], timeout=None))
    await asyncio.sleep(0.05)
    assert not waiter.done()

    await finish(store, started.rollout_id, how)
    finished = await asyncio.wait_for(waiter, 11)

    assert [rollout.rollout_id for rollout in finished] == [started.rollout_id]
    assert finished[0].status == {"succeeded": "succeeded", "failed": "failed"}.get(how, "cancelled")


async def test_waiter_wakes_when_another_store_instance_finishes_the_rollout(make_store: StoreFactory) -> None:
    waiting, working = make_store(), make_store()
    queued = await waiting.enqueue_rollout("task")
    claimed = await working.dequeue_rollout()
    waiter = asyncio.create_task(waiting.wait_for_rollouts(rollout_ids=[queued.rollout_id], timeout=5))
    await asyncio.sleep(0.05)

    await working.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="succeeded")
    started = time.monotonic()
    finished = await asyncio.wait_for(waiter, 11)

    assert [rollout.status for rollout in finished] == ["succeeded"]
    assert time.monotonic() - started < 2


async def test_no_timeout_wait_is_cancellable(store: RedisLightningStore) -> None:
    pending = await store.start_rollout("pending")
    waiter = asyncio.create_task(store.wait_for_rollouts(rollout_ids=[pending.rollout_id], timeout=None))
    await asyncio.sleep(0.05)

    waiter.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiter, 2)
    # The store stays usable after a cancelled wait.
    assert (await store.get_rollout_by_id(pending.rollout_id)).status == "preparing"


async def test_concurrent_waiters_on_one_rollout_all_get_it(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    waiters = [
        asyncio.create_task(store.wait_for_rollouts(rollout_ids=[started.rollout_id], timeout=5)) for _ in range(5)
    ]
    await asyncio.sleep(0.05)

    await store.update_attempt(started.rollout_id, "latest", status="succeeded")
    results = await asyncio.wait_for(asyncio.gather(*waiters), 11)

    assert [[rollout.rollout_id for rollout in result] for result in results] == [[started.rollout_id]] * 5
