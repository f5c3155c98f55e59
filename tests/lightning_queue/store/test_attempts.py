"""Attempts: sequence ids, `update_attempt` / `update_rollout` field semantics, attempt reads."""

from __future__ import annotations

import time

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import RolloutConfig


async def test_attempt_sequence_id_counts_existing_attempts(store: RedisLightningStore) -> None:
    config = RolloutConfig(max_attempts=3, retry_condition=["failed"])
    queued = await store.enqueue_rollout("task", config=config)

    first = await store.dequeue_rollout()
    await store.update_attempt(queued.rollout_id, first.attempt.attempt_id, status="failed")
    second = await store.dequeue_rollout()
    third = await store.start_attempt(queued.rollout_id)

    assert second is not None and second.rollout_id == queued.rollout_id
    assert [first.attempt.sequence_id, second.attempt.sequence_id, third.attempt.sequence_id] == [1, 2, 3]
    attempts = await store.query_attempts(queued.rollout_id)
    assert [attempt.sequence_id for attempt in attempts] == [1, 2, 3]
    assert len({attempt.attempt_id for attempt in attempts}) == 3


async def test_start_attempt_ignores_max_attempts(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task", config=RolloutConfig(max_attempts=2))
    await store.start_attempt(started.rollout_id)

    third = await store.start_attempt(started.rollout_id)

    assert third.attempt.sequence_id == 3
    assert third.status == "preparing"
    assert (await store.get_latest_attempt(started.rollout_id)).sequence_id == 3


async def test_start_attempt_on_a_never_dequeued_rollout_creates_attempt_one(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")

    started = await store.start_attempt(queued.rollout_id)

    assert started.attempt.sequence_id == 1
    assert started.attempt.status == "preparing"
    assert (await store.get_rollout_by_id(queued.rollout_id)).status == "preparing"


async def test_update_attempt_latest_targets_the_highest_sequence_id(store: RedisLightningStore) -> None:
    first = await store.start_rollout("task")
    second = await store.start_attempt(first.rollout_id)

    updated = await store.update_attempt(first.rollout_id, "latest", metadata={"marked": True})

    attempts = await store.query_attempts(first.rollout_id)
    assert updated.attempt_id == second.attempt.attempt_id
    assert attempts[1].metadata == {"marked": True}
    assert attempts[0].metadata != {"marked": True}


@pytest.mark.parametrize("status", ["succeeded", "failed"])
async def test_finished_attempt_gets_an_end_time(store: RedisLightningStore, status: str) -> None:
    started = await store.start_rollout("task")
    before = time.time()

    updated = await store.update_attempt(started.rollout_id, started.attempt.attempt_id, status=status)

    stored = await store.get_latest_attempt(started.rollout_id)
    for attempt in (updated, stored):
        assert attempt.end_time is not None
        assert attempt.end_time >= attempt.start_time
        assert attempt.end_time >= before


async def test_running_attempt_has_no_end_time(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")

    updated = await store.update_attempt(started.rollout_id, started.attempt.attempt_id, status="running")

    assert updated.end_time is None
    assert (await store.get_latest_attempt(started.rollout_id)).end_time is None


async def test_update_attempt_replaces_metadata_wholesale(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    await store.update_attempt(started.rollout_id, "latest", metadata={"a": 1, "b": 2})

    await store.update_attempt(started.rollout_id, "latest", metadata={"c": 3})

    assert (await store.get_latest_attempt(started.rollout_id)).metadata == {"c": 3}


async def test_update_attempt_stores_an_empty_worker_id_as_is(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task", worker_id="worker-1")

    updated = await store.update_attempt(started.rollout_id, "latest", worker_id="")

    assert updated.worker_id == ""
    assert (await store.get_latest_attempt(started.rollout_id)).worker_id == ""


async def test_update_attempt_sets_the_given_heartbeat_time(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")

    await store.update_attempt(started.rollout_id, "latest", last_heartbeat_time=1234.5)

    assert (await store.get_latest_attempt(started.rollout_id)).last_heartbeat_time == 1234.5


async def test_update_attempt_leaves_unset_fields_alone(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    await store.update_attempt(
        started.rollout_id, "latest", worker_id="worker-1", last_heartbeat_time=1234.5, metadata={"k": "v"}
    )

    await store.update_attempt(started.rollout_id, "latest", status="running")

    stored = await store.get_latest_attempt(started.rollout_id)
    assert stored.status == "running"
    assert stored.worker_id == "worker-1"
    assert stored.last_heartbeat_time == 1234.5
    assert stored.metadata == {"k": "v"}
    assert stored.start_time == started.attempt.start_time


async def test_update_rollout_with_none_clears_mode_and_metadata(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task", mode="train", metadata={"k": "v"})

    await store.update_rollout(queued.rollout_id, mode=None, metadata=None)

    stored = await store.get_rollout_by_id(queued.rollout_id)
    assert stored.mode is None
    assert not stored.metadata


async def test_update_rollout_leaves_unset_fields_alone(store: RedisLightningStore) -> None:
    config = RolloutConfig(max_attempts=3, retry_condition=["failed"])
    queued = await store.enqueue_rollout(
        {"q": 1}, mode="val", resources_id="rs-kept", config=config, metadata={"k": "v"}
    )

    await store.update_rollout(queued.rollout_id, status="running")

    stored = await store.get_rollout_by_id(queued.rollout_id)
    assert stored.status == "running"
    assert (stored.input, stored.mode, stored.resources_id) == ({"q": 1}, "val", "rs-kept")
    assert stored.config == config
    assert stored.metadata == {"k": "v"}
    assert stored.start_time == queued.start_time


async def test_update_rollout_replaces_metadata_rather_than_merging(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task", metadata={"a": 1, "b": 2})

    updated = await store.update_rollout(queued.rollout_id, metadata={"c": 3})

    assert updated.metadata == {"c": 3}
    assert (await store.get_rollout_by_id(queued.rollout_id)).metadata == {"c": 3}


async def test_update_rollout_sets_the_given_fields(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")
    config = RolloutConfig(timeout_seconds=9.0, max_attempts=2, retry_condition=["timeout"])

    await store.update_rollout(
        queued.rollout_id, input={"new": True}, mode="test", resources_id="rs-new", config=config
    )

    stored = await store.get_rollout_by_id(queued.rollout_id)
    assert (stored.input, stored.mode, stored.resources_id) == ({"new": True}, "test", "rs-new")
    assert stored.config == config


async def test_query_attempts_orders_by_sequence_id_ascending_by_default(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    for _ in range(3):
        await store.start_attempt(started.rollout_id)

    attempts = await store.query_attempts(started.rollout_id)

    assert [attempt.sequence_id for attempt in attempts] == [1, 2, 3, 4]
    assert attempts.total == 4


async def test_query_attempts_is_empty_for_a_rollout_without_attempts(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")

    attempts = await store.query_attempts(queued.rollout_id)

    assert list(attempts) == []
    assert attempts.total == 0


async def test_get_latest_attempt_is_none_without_attempts(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")

    assert await store.get_latest_attempt(queued.rollout_id) is None


async def test_get_latest_attempt_returns_the_highest_sequence_id(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    newest = await store.start_attempt(started.rollout_id)

    latest = await store.get_latest_attempt(started.rollout_id)

    assert latest.attempt_id == newest.attempt.attempt_id
    assert latest.sequence_id == 2
