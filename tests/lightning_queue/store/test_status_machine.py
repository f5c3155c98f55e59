"""The rollout status machine: creation, claiming, spans, manual updates and the retry rule."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import AttemptedRollout, Rollout, RolloutConfig, Span

UNSUCCESSFUL = ["failed", "timeout", "unresponsive"]
ALL_STATUSES = ["queuing", "preparing", "running", "requeuing", "succeeded", "failed", "cancelled"]


async def test_enqueued_rollout_is_queuing_with_start_time_and_no_attempt(store: RedisLightningStore) -> None:
    before = time.time()
    created = await store.enqueue_rollout("task")
    stored = await store.get_rollout_by_id(created.rollout_id)

    for rollout in (created, stored):
        assert type(rollout) is Rollout
        assert rollout.status == "queuing"
        assert rollout.start_time >= before
        assert rollout.end_time is None
    assert await store.get_latest_attempt(created.rollout_id) is None


async def test_started_rollout_is_preparing_with_first_attempt_preparing(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    stored = await store.get_rollout_by_id(started.rollout_id)

    for rollout in (started, stored):
        assert type(rollout) is AttemptedRollout
        assert rollout.status == "preparing"
        assert rollout.attempt.status == "preparing"
        assert rollout.attempt.sequence_id == 1
        assert rollout.attempt.rollout_id == started.rollout_id
    assert stored.attempt.attempt_id == started.attempt.attempt_id


async def test_started_rollout_never_enters_the_queue(store: RedisLightningStore) -> None:
    await store.start_rollout("task")

    assert await store.queue_depth() == 0
    assert await store.dequeue_rollout() is None


async def test_dequeue_moves_rollout_to_preparing_with_a_new_attempt(store: RedisLightningStore) -> None:
    queued = await store.enqueue_rollout("task")

    claimed = await store.dequeue_rollout()
    stored = await store.get_rollout_by_id(queued.rollout_id)

    assert claimed is not None
    for rollout in (claimed, stored):
        assert type(rollout) is AttemptedRollout
        assert rollout.rollout_id == queued.rollout_id
        assert rollout.status == "preparing"
        assert rollout.attempt.status == "preparing"
        assert rollout.attempt.sequence_id == 1
    assert stored.attempt.attempt_id == claimed.attempt.attempt_id


@pytest.mark.parametrize("status_before", ["preparing", "requeuing"])
async def test_first_span_on_latest_attempt_moves_rollout_to_running(
    store: RedisLightningStore, make_span: Callable[..., Span], status_before: str
) -> None:
    started = await store.start_rollout("task")
    if status_before != "preparing":
        await store.update_rollout(started.rollout_id, status=status_before)

    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))

    stored = await store.get_rollout_by_id(started.rollout_id)
    assert stored.status == "running"
    assert stored.attempt.status == "running"


@pytest.mark.parametrize("new_status", ALL_STATUSES)
async def test_update_rollout_accepts_any_status_without_transition_check(
    store: RedisLightningStore, new_status: str
) -> None:
    queued = await store.enqueue_rollout("task")

    updated = await store.update_rollout(queued.rollout_id, status=new_status)
    stored = await store.get_rollout_by_id(queued.rollout_id)

    assert updated.status == new_status
    assert stored.status == new_status


@pytest.mark.parametrize("terminal", ["succeeded", "failed", "cancelled"])
async def test_terminal_status_stamps_end_time_after_start_time(store: RedisLightningStore, terminal: str) -> None:
    queued = await store.enqueue_rollout("task")

    updated = await store.update_rollout(queued.rollout_id, status=terminal)
    stored = await store.get_rollout_by_id(queued.rollout_id)

    for rollout in (updated, stored):
        assert rollout.end_time is not None
        assert rollout.end_time > rollout.start_time


async def test_start_attempt_puts_a_succeeded_rollout_back_to_preparing(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")
    await store.update_attempt(started.rollout_id, started.attempt.attempt_id, status="succeeded")
    assert (await store.get_rollout_by_id(started.rollout_id)).status == "succeeded"

    retried = await store.start_attempt(started.rollout_id)

    stored = await store.get_rollout_by_id(started.rollout_id)
    assert retried.status == "preparing"
    assert stored.status == "preparing"
    assert stored.attempt.sequence_id == 2
    assert stored.attempt.status == "preparing"


@pytest.mark.parametrize("old_attempt_status", ["running", "succeeded", "failed", "timeout", "unresponsive"])
async def test_updates_to_an_older_attempt_never_change_the_rollout(
    store: RedisLightningStore, old_attempt_status: str
) -> None:
    config = RolloutConfig(max_attempts=5, retry_condition=["failed", "timeout", "unresponsive"])
    first = await store.start_rollout("task", config=config)
    await store.start_attempt(first.rollout_id)

    await store.update_attempt(first.rollout_id, first.attempt.attempt_id, status=old_attempt_status)

    stored = await store.get_rollout_by_id(first.rollout_id)
    assert stored.status == "preparing"
    assert stored.attempt.sequence_id == 2


@pytest.mark.parametrize(
    ("attempt_status", "rollout_before"),
    [("preparing", "running"), ("running", "preparing"), ("succeeded", "preparing")],
)
async def test_latest_attempt_status_is_copied_to_the_rollout(
    store: RedisLightningStore, attempt_status: str, rollout_before: str
) -> None:
    started = await store.start_rollout("task")
    if rollout_before != "preparing":
        await store.update_rollout(started.rollout_id, status=rollout_before)

    await store.update_attempt(started.rollout_id, "latest", status=attempt_status)

    assert (await store.get_rollout_by_id(started.rollout_id)).status == attempt_status


@pytest.mark.parametrize("attempt_status", UNSUCCESSFUL)
async def test_unsuccessful_attempt_requeues_rollout_when_retry_allowed(
    store: RedisLightningStore, attempt_status: str
) -> None:
    config = RolloutConfig(max_attempts=2, retry_condition=[attempt_status])
    started = await store.start_rollout("task", config=config)

    await store.update_attempt(started.rollout_id, "latest", status=attempt_status)

    stored = await store.get_rollout_by_id(started.rollout_id)
    assert stored.status == "requeuing"
    assert stored.attempt.status == attempt_status


@pytest.mark.parametrize("attempt_status", UNSUCCESSFUL)
async def test_unsuccessful_attempt_fails_rollout_when_status_not_in_retry_condition(
    store: RedisLightningStore, attempt_status: str
) -> None:
    others = [status for status in UNSUCCESSFUL if status != attempt_status]
    config = RolloutConfig(max_attempts=5, retry_condition=others)
    started = await store.start_rollout("task", config=config)

    await store.update_attempt(started.rollout_id, "latest", status=attempt_status)

    assert (await store.get_rollout_by_id(started.rollout_id)).status == "failed"


@pytest.mark.parametrize("attempt_status", UNSUCCESSFUL)
async def test_unsuccessful_attempt_fails_rollout_with_default_config(
    store: RedisLightningStore, attempt_status: str
) -> None:
    started = await store.start_rollout("task")

    await store.update_attempt(started.rollout_id, "latest", status=attempt_status)

    assert (await store.get_rollout_by_id(started.rollout_id)).status == "failed"


@pytest.mark.parametrize(("max_attempts", "attempts"), [(1, 1), (2, 2), (2, 3)])
@pytest.mark.parametrize("attempt_status", UNSUCCESSFUL)
async def test_unsuccessful_attempt_fails_rollout_once_max_attempts_is_reached(
    store: RedisLightningStore, attempt_status: str, max_attempts: int, attempts: int
) -> None:
    config = RolloutConfig(max_attempts=max_attempts, retry_condition=list(UNSUCCESSFUL))
    started = await store.start_rollout("task", config=config)
    for _ in range(attempts - 1):
        await store.start_attempt(started.rollout_id)

    await store.update_attempt(started.rollout_id, "latest", status=attempt_status)

    assert (await store.get_rollout_by_id(started.rollout_id)).status == "failed"


async def test_failed_rollout_end_time_is_not_before_its_attempt_end_time(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task")

    attempt = await store.update_attempt(started.rollout_id, "latest", status="failed")

    stored = await store.get_rollout_by_id(started.rollout_id)
    assert stored.status == "failed"
    assert attempt.end_time is not None
    assert stored.end_time is not None
    assert stored.end_time >= attempt.end_time


async def test_late_success_on_the_latest_attempt_turns_a_failed_rollout_succeeded(
    store: RedisLightningStore,
) -> None:
    started = await store.start_rollout("task")
    await store.update_attempt(started.rollout_id, "latest", status="timeout")
    assert (await store.get_rollout_by_id(started.rollout_id)).status == "failed"

    await store.update_attempt(started.rollout_id, "latest", status="succeeded")

    assert (await store.get_rollout_by_id(started.rollout_id)).status == "succeeded"
