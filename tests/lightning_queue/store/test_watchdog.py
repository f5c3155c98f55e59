"""The watchdog: timed-out and unresponsive attempts are noticed by the next listed store call.

Deadlines are 0.2 s and each test sleeps once just past one (the store fixture has no scan debounce).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.types import RolloutConfig, Span

DEADLINE = 0.2
PAST_DEADLINE = 0.3
SpanFactory = Callable[..., Span]


async def verdict_seen_by(store: RedisLightningStore, reader: str, rollout_id: str) -> tuple[str, str]:
    """(rollout status, attempt status) as reported by the first call after the deadline."""
    if reader == "get_rollout_by_id":
        rollout = await store.get_rollout_by_id(rollout_id)
        return rollout.status, rollout.attempt.status
    if reader == "query_rollouts":
        [rollout] = await store.query_rollouts(rollout_id_in=[rollout_id])
        return rollout.status, rollout.attempt.status  # type: ignore[attr-defined]
    if reader == "wait_for_rollouts":
        [rollout] = await store.wait_for_rollouts(rollout_ids=[rollout_id], timeout=0)
        return rollout.status, rollout.attempt.status  # type: ignore[attr-defined]
    if reader == "get_latest_attempt":
        attempt = await store.get_latest_attempt(rollout_id)
    else:
        [attempt] = await store.query_attempts(rollout_id)
    rollout = await store.get_rollout_by_id(rollout_id)
    return rollout.status, attempt.status


@pytest.mark.parametrize(
    "reader",
    ["get_rollout_by_id", "query_rollouts", "wait_for_rollouts", "get_latest_attempt", "query_attempts"],
)
async def test_attempt_past_its_timeout_is_marked_timeout_by_the_next_call(
    store: RedisLightningStore, reader: str
) -> None:
    started = await store.start_rollout("task", config=RolloutConfig(timeout_seconds=DEADLINE))

    await asyncio.sleep(PAST_DEADLINE)

    assert await verdict_seen_by(store, reader, started.rollout_id) == ("failed", "timeout")


async def test_attempt_silent_past_unresponsive_seconds_is_marked_unresponsive(
    store: RedisLightningStore, make_span: SpanFactory
) -> None:
    started = await store.start_rollout("task", config=RolloutConfig(unresponsive_seconds=DEADLINE))
    await store.add_span(make_span(started.rollout_id, started.attempt.attempt_id))

    await asyncio.sleep(PAST_DEADLINE)

    rollout = await store.get_rollout_by_id(started.rollout_id)
    assert (rollout.status, rollout.attempt.status) == ("failed", "unresponsive")


async def test_attempt_without_any_heartbeat_past_unresponsive_seconds_is_marked_unresponsive(
    store: RedisLightningStore,
) -> None:
    await store.enqueue_rollout("task", config=RolloutConfig(unresponsive_seconds=DEADLINE))
    claimed = await store.dequeue_rollout(worker_id="worker-lost")

    await asyncio.sleep(PAST_DEADLINE)

    rollout = await store.get_rollout_by_id(claimed.rollout_id)
    assert (rollout.status, rollout.attempt.status) == ("failed", "unresponsive")


async def test_fresh_heartbeats_keep_an_attempt_responsive(store: RedisLightningStore, make_span: SpanFactory) -> None:
    started = await store.start_rollout("task", config=RolloutConfig(unresponsive_seconds=0.4))
    rid, aid = started.rollout_id, started.attempt.attempt_id

    await asyncio.sleep(0.25)
    await store.add_span(make_span(rid, aid, 1))
    await asyncio.sleep(0.25)

    # 0.5 s since the attempt started, but only 0.25 s since its last span.
    rollout = await store.get_rollout_by_id(rid)
    assert (rollout.status, rollout.attempt.status) == ("running", "running")


@pytest.mark.parametrize(
    ("verdict", "config"),
    [
        ("timeout", RolloutConfig(timeout_seconds=DEADLINE, max_attempts=2, retry_condition=["timeout"])),
        (
            "unresponsive",
            RolloutConfig(unresponsive_seconds=DEADLINE, max_attempts=2, retry_condition=["unresponsive"]),
        ),
    ],
)
async def test_watchdog_verdict_requeues_the_rollout_when_retry_allowed(
    store: RedisLightningStore, verdict: str, config: RolloutConfig
) -> None:
    started = await store.start_rollout("task", config=config)

    await asyncio.sleep(PAST_DEADLINE)

    rollout = await store.get_rollout_by_id(started.rollout_id)
    assert (rollout.status, rollout.attempt.status) == ("requeuing", verdict)
    retry = await store.dequeue_rollout()
    assert retry is not None and retry.rollout_id == started.rollout_id
    assert retry.attempt.sequence_id == 2


async def test_timeout_is_checked_before_unresponsive(store: RedisLightningStore) -> None:
    config = RolloutConfig(timeout_seconds=DEADLINE, unresponsive_seconds=DEADLINE)
    started = await store.start_rollout("task", config=config)

    await asyncio.sleep(PAST_DEADLINE)

    assert (await store.get_latest_attempt(started.rollout_id)).status == "timeout"


async def test_watchdog_verdict_marks_the_worker_unknown(store: RedisLightningStore) -> None:
    started = await store.start_rollout("task", config=RolloutConfig(timeout_seconds=DEADLINE), worker_id="worker-slow")
    await store.update_worker("worker-slow", heartbeat_stats={"gpu": 1})

    await asyncio.sleep(PAST_DEADLINE)
    assert (await store.get_rollout_by_id(started.rollout_id)).status == "failed"

    worker = await store.get_worker_by_id("worker-slow")
    assert worker.status == "unknown"
    assert (worker.current_rollout_id, worker.current_attempt_id) == (None, None)
    assert worker.heartbeat_stats == {"gpu": 1}


async def test_running_rollout_without_attempts_does_not_break_the_scan(store: RedisLightningStore) -> None:
    config = RolloutConfig(timeout_seconds=DEADLINE, unresponsive_seconds=DEADLINE)
    orphan = await store.enqueue_rollout("no attempts", config=config)
    await store.update_rollout(orphan.rollout_id, status="running")
    timed = await store.start_rollout("task", config=config)

    await asyncio.sleep(PAST_DEADLINE)

    assert (await store.get_rollout_by_id(timed.rollout_id)).status == "failed"
    assert (await store.get_rollout_by_id(orphan.rollout_id)).status == "running"


async def test_finished_attempt_is_left_alone_by_the_watchdog(store: RedisLightningStore) -> None:
    config = RolloutConfig(timeout_seconds=DEADLINE, unresponsive_seconds=DEADLINE)
    started = await store.start_rollout("task", config=config)
    await store.update_attempt(started.rollout_id, "latest", status="succeeded")

    await asyncio.sleep(PAST_DEADLINE)

    rollout = await store.get_rollout_by_id(started.rollout_id)
    assert (rollout.status, rollout.attempt.status) == ("succeeded", "succeeded")


async def test_sweep_applies_the_verdicts_at_once(make_store: Callable[..., RedisLightningStore]) -> None:
    store = make_store(scan_debounce_seconds=3600.0)
    started = await store.start_rollout("task", config=RolloutConfig(timeout_seconds=DEADLINE))

    await asyncio.sleep(PAST_DEADLINE)
    await store.sweep()

    assert (await store.get_latest_attempt(started.rollout_id)).status == "timeout"
