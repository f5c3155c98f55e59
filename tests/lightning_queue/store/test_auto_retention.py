"""Automatic retention: one bounded step per `auto_every` across processes, never an archiving policy."""

from __future__ import annotations

import logging

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.store import auto_retention, retention
from lightning_queue.store.auto_retention import AutoRetention
from lightning_queue.store.retention import RetentionPolicy, write_policy
from tests.lightning_queue.store.test_retention import _ended


async def _stored(store: RedisLightningStore) -> int:
    return int(await store._redis.zcard(store.keys.ended_rollouts))


async def test_one_tick_per_interval_across_processes_each_bounded(
    make_store: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = make_store()  # type: ignore[operator]
    second = make_store(namespace=first.namespace)  # type: ignore[operator]
    await _ended(first, 9)
    await write_policy(first, RetentionPolicy(keep_newest=0, min_age=0, auto_every=60))
    monkeypatch.setattr(auto_retention, "MAX_STEPS", 1)
    a, b = AutoRetention(first, step=2), AutoRetention(second, step=2)
    assert await a.tick() == 2  # won the lock: one step of at most `step` ids
    assert await b.tick() is None  # another process within the interval: no step
    assert await a.tick() is None  # and the winner waits out its interval too
    assert await _stored(first) == 7
    await first._redis.delete(first.keys.retention_lock)  # the interval is over
    b.next_tick = float("-inf")
    monkeypatch.setattr(auto_retention, "MAX_STEPS", 3)
    assert await b.tick() == 6  # full steps chain, up to MAX_STEPS
    assert await _stored(first) == 1


async def test_a_tick_stops_chaining_once_a_step_comes_back_short(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _ended(store, 3)
    await write_policy(store, RetentionPolicy(keep_newest=0, min_age=0))
    calls = []
    original = retention.apply_step

    async def counted(*args: object, **kwargs: object) -> tuple[int, int]:
        calls.append(kwargs["offset"])
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(auto_retention, "apply_step", counted)
    assert await AutoRetention(store, step=2).tick() == 3
    assert calls == [0, 0]  # 2 (full), then 1 (short): done


async def test_no_policy_or_auto_every_zero_deletes_nothing_until_a_policy_is_set(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auto_retention, "POLICY_CHECK_SECONDS", 0.0)
    await _ended(store, 3)
    runner = AutoRetention(store)
    assert await runner.tick() is None
    await write_policy(store, RetentionPolicy(keep_newest=0, min_age=0, auto_every=0))
    assert await runner.tick() is None
    assert await _stored(store) == 3
    await write_policy(store, RetentionPolicy(keep_newest=1, min_age=0, auto_every=0.1))
    assert await runner.tick() == 2  # a policy set later is picked up at the next check
    assert await _stored(store) == 1


async def test_an_archiving_policy_is_left_to_lq_retention_run_and_said_once(
    store: RedisLightningStore, caplog: pytest.LogCaptureFixture, tmp_path: object
) -> None:
    await _ended(store, 2)
    await write_policy(store, RetentionPolicy(keep_newest=0, min_age=0, auto_every=0.1, archive=str(tmp_path)))
    runner = AutoRetention(store)
    with caplog.at_level(logging.WARNING, logger="lightning_queue.store.auto_retention"):
        for _ in range(3):
            runner.next_tick = float("-inf")
            assert await runner.tick() is None
    assert caplog.text.count("lq retention run --every") == 1
    assert await _stored(store) == 2


async def test_a_corrupt_stored_policy_is_reported_not_applied(
    store: RedisLightningStore, caplog: pytest.LogCaptureFixture
) -> None:
    await _ended(store, 2)
    await store._redis.hset(store.keys.retention, mapping={"keep_newest": "-4"})
    with caplog.at_level(logging.WARNING, logger="lightning_queue.store.auto_retention"):
        assert await AutoRetention(store).tick() is None
    assert "invalid" in caplog.text and "keep_newest" in caplog.text
    assert await _stored(store) == 2
