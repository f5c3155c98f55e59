"""Workers: heartbeats through `update_worker` and the status the attempts give them."""

from __future__ import annotations

import time

import pytest

from lightning_queue import RedisLightningStore

ATTEMPT_CREATORS = ["start_rollout", "dequeue_rollout", "start_attempt", "update_attempt"]


async def give_worker_an_attempt(store: RedisLightningStore, how: str, worker_id: str) -> tuple[str, str]:
    """Tie `worker_id` to a fresh attempt through the named API; returns (rollout id, attempt id)."""
    if how == "start_rollout":
        rollout = await store.start_rollout("task", worker_id=worker_id)
    elif how == "dequeue_rollout":
        await store.enqueue_rollout("task")
        rollout = await store.dequeue_rollout(worker_id=worker_id)  # type: ignore[assignment]
    elif how == "start_attempt":
        queued = await store.enqueue_rollout("task")
        rollout = await store.start_attempt(queued.rollout_id, worker_id=worker_id)
    else:
        rollout = await store.start_rollout("task")
        await store.update_attempt(rollout.rollout_id, rollout.attempt.attempt_id, worker_id=worker_id)
    return rollout.rollout_id, rollout.attempt.attempt_id


async def test_update_worker_creates_an_unknown_worker_with_heartbeat_and_stats(
    store: RedisLightningStore,
) -> None:
    before = time.time()

    worker = await store.update_worker("worker-1", heartbeat_stats={"cpu": 0.5, "gpus": [0, 1]})

    stored = await store.get_worker_by_id("worker-1")
    assert worker == stored
    assert stored.status == "unknown"
    assert stored.heartbeat_stats == {"cpu": 0.5, "gpus": [0, 1]}
    assert isinstance(stored.last_heartbeat_time, float)
    assert before <= stored.last_heartbeat_time <= time.time()


async def test_update_worker_replaces_the_stats(store: RedisLightningStore) -> None:
    await store.update_worker("worker-1", heartbeat_stats={"cpu": 0.5, "mem": 1})

    await store.update_worker("worker-1", heartbeat_stats={"cpu": 0.9})

    assert (await store.get_worker_by_id("worker-1")).heartbeat_stats == {"cpu": 0.9}


async def test_update_worker_without_stats_keeps_them_and_moves_the_heartbeat_on(
    store: RedisLightningStore,
) -> None:
    first = await store.update_worker("worker-1", heartbeat_stats={"cpu": 0.5})

    second = await store.update_worker("worker-1")

    assert second.heartbeat_stats == {"cpu": 0.5}
    assert second.last_heartbeat_time >= first.last_heartbeat_time
    assert (await store.get_worker_by_id("worker-1")).heartbeat_stats == {"cpu": 0.5}


async def test_update_worker_with_none_stats_raises_type_error(store: RedisLightningStore) -> None:
    with pytest.raises(TypeError, match="heartbeat_stats"):
        await store.update_worker("worker-1", heartbeat_stats=None)  # type: ignore[arg-type]

    assert await store.get_worker_by_id("worker-1") is None


@pytest.mark.parametrize("how", ATTEMPT_CREATORS)
async def test_attempt_with_a_worker_marks_the_worker_busy(store: RedisLightningStore, how: str) -> None:
    before = time.time()

    rollout_id, attempt_id = await give_worker_an_attempt(store, how, "worker-1")

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "busy"
    assert (worker.current_rollout_id, worker.current_attempt_id) == (rollout_id, attempt_id)
    assert worker.last_busy_time is not None and worker.last_busy_time >= before


@pytest.mark.parametrize("how", ATTEMPT_CREATORS)
async def test_worker_first_seen_through_an_attempt_is_created(store: RedisLightningStore, how: str) -> None:
    await give_worker_an_attempt(store, how, "worker-implicit")

    workers = await store.query_workers()

    assert [worker.worker_id for worker in workers] == ["worker-implicit"]


async def test_dequeue_with_a_worker_sets_its_last_dequeue_time(store: RedisLightningStore) -> None:
    await store.enqueue_rollout("task")
    before = time.time()

    await store.dequeue_rollout(worker_id="worker-1")

    worker = await store.get_worker_by_id("worker-1")
    assert worker.last_dequeue_time is not None
    assert before <= worker.last_dequeue_time <= time.time()


@pytest.mark.parametrize("status", ["succeeded", "failed"])
async def test_finished_attempt_makes_its_worker_idle(store: RedisLightningStore, status: str) -> None:
    started = await store.start_rollout("task", worker_id="worker-1")
    before = time.time()

    await store.update_attempt(started.rollout_id, "latest", status=status)

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "idle"
    assert (worker.current_rollout_id, worker.current_attempt_id) == (None, None)
    assert worker.last_idle_time is not None and worker.last_idle_time >= before


@pytest.mark.parametrize("status", ["timeout", "unresponsive"])
async def test_lost_attempt_makes_its_worker_unknown(store: RedisLightningStore, status: str) -> None:
    started = await store.start_rollout("task", worker_id="worker-1")

    await store.update_attempt(started.rollout_id, "latest", status=status)

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "unknown"
    assert (worker.current_rollout_id, worker.current_attempt_id) == (None, None)


async def test_status_syncs_keep_heartbeat_stats_and_time(store: RedisLightningStore) -> None:
    heartbeat = await store.update_worker("worker-1", heartbeat_stats={"cpu": 0.25})
    started = await store.start_rollout("task", worker_id="worker-1")

    await store.update_attempt(started.rollout_id, "latest", status="succeeded")

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "idle"
    assert worker.heartbeat_stats == {"cpu": 0.25}
    assert worker.last_heartbeat_time == heartbeat.last_heartbeat_time


async def test_heartbeat_keeps_the_status_given_by_attempts(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task", worker_id="worker-1")

    await store.update_worker("worker-1", heartbeat_stats={"cpu": 1.0})

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "busy"
    assert worker.current_rollout_id == started.rollout_id


async def test_get_worker_by_id_returns_none_for_an_unknown_worker(store: RedisLightningStore) -> None:
    assert await store.get_worker_by_id("worker-nobody") is None


async def test_empty_dequeue_with_a_worker_marks_it_idle(store: RedisLightningStore) -> None:
    before = time.time()

    assert await store.dequeue_rollout(worker_id="worker-1") is None

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "idle"
    assert worker.last_idle_time is not None and worker.last_idle_time >= before


async def test_dequeue_many_ties_the_worker_to_the_last_claimed_rollout(store: RedisLightningStore) -> None:
    for index in range(3):
        await store.enqueue_rollout({"index": index})

    claimed = await store.dequeue_many_rollouts(limit=3, worker_id="worker-1")

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "busy"
    assert (worker.current_rollout_id, worker.current_attempt_id) == (
        claimed[-1].rollout_id,
        claimed[-1].attempt.attempt_id,
    )


async def test_a_worker_stays_busy_until_the_attempt_it_is_busy_with_ends(store: RedisLightningStore) -> None:
    for index in range(2):
        await store.enqueue_rollout({"index": index})
    first, last = await store.dequeue_many_rollouts(limit=2, worker_id="worker-1")

    await store.update_attempt(first.rollout_id, first.attempt.attempt_id, status="succeeded")

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "busy"
    assert (worker.current_rollout_id, worker.current_attempt_id) == (last.rollout_id, last.attempt.attempt_id)

    await store.update_attempt(last.rollout_id, last.attempt.attempt_id, status="failed")

    worker = await store.get_worker_by_id("worker-1")
    assert worker.status == "idle"
    assert (worker.current_rollout_id, worker.current_attempt_id) == (None, None)
