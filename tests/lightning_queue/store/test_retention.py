"""Retention: each rule deletes what it says, oldest first, and never live or unread rollouts."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.store import reads, retention
from lightning_queue.store.memory import MemoryInfo
from lightning_queue.store.reads import WAIT_LEASE
from lightning_queue.store.retention import (
    RetentionPolicy,
    apply,
    apply_step,
    read_policy,
    retention_warnings,
    write_policy,
)
from lightning_queue.types import Span
from tests.support.pools import eventually


async def _ended(store: RedisLightningStore, n: int) -> list[str]:
    """n succeeded rollouts whose index end_times are 1000, 1001, ... (oldest first)."""
    ids = []
    for i in range(n):
        rollout = await store.start_rollout(i)
        await store.update_attempt(rollout.rollout_id, "latest", status="succeeded")
        ids.append(rollout.rollout_id)
    await store._redis.zadd(store.keys.ended_rollouts, {rid: 1000.0 + i for i, rid in enumerate(ids)})
    return ids


async def _left(store: RedisLightningStore, ids: list[str]) -> list[str]:
    return [rid for rid in ids if await store.get_rollout_by_id(rid) is not None]


async def test_without_a_policy_everything_is_kept(store: RedisLightningStore) -> None:
    ids = await _ended(store, 3)
    assert await read_policy(store) is None
    assert await apply(store, now=1e12) == 0
    assert await _left(store, ids) == ids


async def test_max_age_deletes_the_older_ones_oldest_first(store: RedisLightningStore) -> None:
    ids = await _ended(store, 6)
    await write_policy(store, RetentionPolicy(max_age=7, min_age=0))
    assert await apply_step(store, now=1010.0, step=2) == (2, 2)  # bounded: the two oldest only
    assert await _left(store, ids) == ids[2:]
    assert await apply(store, now=1010.0, step=2) == 1  # 1002 < 1003; 1003 is not older than 7 s
    assert await _left(store, ids) == ids[3:]


async def test_keep_newest_keeps_exactly_n(store: RedisLightningStore) -> None:
    ids = await _ended(store, 5)
    await write_policy(store, RetentionPolicy(keep_newest=2, min_age=0))
    assert await apply(store, now=5000.0, step=2) == 3
    assert await _left(store, ids) == ids[3:]
    assert await apply(store, now=5000.0) == 0


async def test_rollouts_younger_than_min_age_are_never_deleted(store: RedisLightningStore) -> None:
    ids = await _ended(store, 3)
    await write_policy(store, RetentionPolicy(keep_newest=0, max_age=1, min_age=600))
    assert await apply(store, now=1001.5 + 600) == 2  # 1002 ended less than 600 s before
    assert await _left(store, ids) == ids[2:]
    # Real clocks: rollouts that just ended are unread, whatever the rules say.
    fresh = await store.start_rollout("fresh")
    await store.update_attempt(fresh.rollout_id, "latest", status="failed")
    assert await apply(store) == 1
    assert await _left(store, [*ids, fresh.rollout_id]) == [fresh.rollout_id]


async def test_live_rollouts_survive_and_do_not_block_the_rest(store: RedisLightningStore) -> None:
    ids = await _ended(store, 4)
    live = await store.start_rollout("live")
    await store.update_rollout(live.rollout_id, status="cancelled")  # terminal, attempt still running
    queued = await store.enqueue_rollout("queued")
    await store._redis.zadd(store.keys.ended_rollouts, {live.rollout_id: 999.0})  # the oldest of all
    await write_policy(store, RetentionPolicy(keep_newest=0, min_age=0))
    assert await apply(store, now=1e12, step=1) == 4
    assert await _left(store, [*ids, live.rollout_id, queued.rollout_id]) == [live.rollout_id, queued.rollout_id]


def test_policies_are_checked() -> None:
    with pytest.raises(ValueError, match="--max-age, --keep-newest or --memory-budget-mb"):
        RetentionPolicy()
    with pytest.raises(ValueError, match="max_age"):
        RetentionPolicy(max_age=-1)
    with pytest.raises(ValueError, match="keep_newest"):
        RetentionPolicy(keep_newest=-3)
    with pytest.raises(ValueError, match=r"auto_every must be 0 \(off\) or at least 0\.1 s, got 0\.001"):
        RetentionPolicy(keep_newest=3, auto_every=0.001)
    with pytest.raises(ValueError, match="memory_budget"):
        RetentionPolicy(memory_budget=0)
    assert RetentionPolicy(keep_newest=3, auto_every=0).auto_every == 0


async def test_a_policy_round_trips_and_clears(store: RedisLightningStore) -> None:
    policy = RetentionPolicy(max_age=3600, keep_newest=10, min_age=60)
    await write_policy(store, policy)
    assert await read_policy(store) == policy
    await write_policy(store, None)
    assert await read_policy(store) is None


def test_status_warns_only_when_a_namespace_grows_without_a_policy() -> None:
    small, full = MemoryInfo("noeviction", 10, 100), MemoryInfo("noeviction", 90, 100)
    assert retention_warnings(None, small, 5) == []
    assert "kept forever" in retention_warnings(None, full, 5)[0]
    assert "20000 finished" in retention_warnings(None, small, 20_000)[0]
    assert retention_warnings(RetentionPolicy(keep_newest=1), full, 20_000) == []


def test_the_cli_sets_shows_runs_and_clears_on_real_redis(redis_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    where = ["--redis-url", redis_url, "--namespace", "cli-retention"]
    assert "keep everything" in runner.invoke(main, ["retention", "show", *where]).output
    bad = runner.invoke(main, ["retention", "set", *where])
    assert bad.exit_code == 2 and "--max-age, --keep-newest or --memory-budget-mb" in bad.output
    out = runner.invoke(main, ["retention", "set", *where, "--keep-newest", "5", "--min-age", "0"])
    assert out.exit_code == 0, out.output
    assert "'keep_newest': 5" in runner.invoke(main, ["retention", "show", *where]).output
    ran = runner.invoke(main, ["retention", "run", *where])
    assert ran.exit_code == 0 and "deleted 0" in ran.output
    status = runner.invoke(main, ["status", *where])
    assert status.exit_code == 0 and "keep_newest" in status.output, status.output
    archived = runner.invoke(main, ["retention", "set", *where, "--keep-newest", "0", "--archive", str(tmp_path)])
    assert archived.exit_code == 0 and str(tmp_path) in archived.output
    ran = runner.invoke(main, ["retention", "run", *where])
    assert ran.exit_code == 0 and (tmp_path / "manifest.json").exists(), ran.output
    runner.invoke(main, ["retention", "clear", *where])
    dead = runner.invoke(main, ["retention", "show", "--redis-url", "redis://127.0.0.1:1/0"])
    assert dead.exit_code == 1 and "no Redis answers" in dead.output
    assert "keep everything" in runner.invoke(main, ["retention", "show", *where]).output


class CountingMemory:
    """A Redis whose used_memory is `base` plus `each` per finished rollout of the namespace."""

    def __init__(self, store: RedisLightningStore, base: int, each: int) -> None:
        self.store, self.base, self.each = store, base, each
        self.readings = 0

    async def __call__(self, client: Any) -> MemoryInfo:
        self.readings += 1
        ended = int(await self.store._redis.zcard(self.store.keys.ended_rollouts))
        return MemoryInfo("noeviction", self.base + self.each * ended, 0)


async def test_memory_budget_deletes_oldest_first_down_to_the_budget_and_never_past_it(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _ended(store, 8)
    live = await store.start_rollout("running")
    queued = await store.enqueue_rollout("queued")
    memory = CountingMemory(store, base=1_000_000, each=10_000)
    monkeypatch.setattr(retention, "read_memory_info", memory)
    await write_policy(store, RetentionPolicy(memory_budget=1_000_000 + 3 * 10_000, min_age=0))
    # used/total overstates a rollout's share: each step deletes too few, never too many, and measures again.
    assert await apply_step(store, now=1e12) == (1, 1)
    assert await apply(store, now=1e12) == 4
    assert await _left(store, [*ids, live.rollout_id, queued.rollout_id]) == [
        *ids[5:],
        live.rollout_id,
        queued.rollout_id,
    ]
    readings = memory.readings
    assert await apply(store, now=1e12) == 0  # within budget: nothing more
    assert memory.readings == readings + 1


async def test_memory_budget_keeps_unread_rollouts_even_over_budget(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _ended(store, 3)
    monkeypatch.setattr(retention, "read_memory_info", CountingMemory(store, base=10**9, each=1))
    await write_policy(store, RetentionPolicy(memory_budget=1, min_age=600))
    assert await apply(store, now=1001.5 + 600) == 2  # the one that ended at 1002 is younger than min_age
    assert await _left(store, ids) == ids[2:]


async def test_memory_budget_without_a_used_memory_reading_deletes_nothing_and_says_so(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    ids = await _ended(store, 3)

    async def refused(client: Any) -> MemoryInfo:
        return MemoryInfo(None, None, None)

    monkeypatch.setattr(retention, "read_memory_info", refused)
    monkeypatch.setattr(retention, "_warned_unmeasured", False)
    await write_policy(store, RetentionPolicy(memory_budget=1, keep_newest=2, min_age=0))
    with caplog.at_level(logging.WARNING, logger="lightning_queue.store.retention"):
        assert await apply(store, now=1e12) == 1  # keep_newest still applies
    assert "does not report used_memory" in caplog.text
    assert await _left(store, ids) == ids[1:]


async def test_memory_budget_on_a_real_redis_ends_under_the_budget_keeping_the_newest(redis_url: str) -> None:
    store = RedisLightningStore(redis_url, namespace="retention-memory")
    try:
        await store.purge()
        ids = []
        for i in range(20):
            started = await store.start_rollout(i)
            big = {"gen_ai.completion": f"{i}" + "x" * 100_000}
            await store.add_span(
                Span.from_attributes(
                    attributes=big, rollout_id=started.rollout_id, attempt_id=started.attempt.attempt_id, name="llm"
                )
            )
            await store.update_attempt(started.rollout_id, "latest", status="succeeded")
            ids.append(started.rollout_id)
        used = int((await store._redis.info("memory"))["used_memory"])
        budget = used - 6 * 100_000
        await write_policy(store, RetentionPolicy(memory_budget=budget, min_age=0))
        deleted = await apply(store)
        assert int((await store._redis.info("memory"))["used_memory"]) <= budget
        assert 6 <= deleted < 20
        assert await _left(store, ids) == ids[deleted:]
    finally:
        await store.purge()
        await store.aclose()


async def test_a_rollout_an_algorithm_waits_for_survives_until_min_age_after_the_wait(
    store: RedisLightningStore,
) -> None:
    (old,) = await _ended(store, 1)  # ended long before the policy's min_age
    running = await store.start_rollout("slow")
    await write_policy(store, RetentionPolicy(keep_newest=0, min_age=30))
    waiter = asyncio.create_task(store.wait_for_rollouts(rollout_ids=[old, running.rollout_id], timeout=20))

    async def marked() -> float | None:
        score = await store._redis.zscore(store.keys.reads, old)
        return None if score is None else float(score)

    await eventually(marked, 5, "the wait to mark its rollouts")
    assert await apply(store) == 0  # the wait holds it
    assert await _left(store, [old]) == [old]
    await store.update_attempt(running.rollout_id, "latest", status="succeeded")
    done = await asyncio.wait_for(waiter, 10)
    assert {r.rollout_id for r in done} == {old, running.rollout_id}
    assert await apply(store) == 0  # handed over just now: the algorithm has min_age to read them
    later = time.time() + WAIT_LEASE + 31
    assert await apply(store, now=later) == 2
    assert await _left(store, [old, running.rollout_id]) == []
    assert await store._redis.zcard(store.keys.reads) == 0  # stale marks are trimmed


async def test_a_wait_renews_its_marks_while_it_lasts(
    store: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reads, "WAIT_LEASE", 2.5)
    running = await store.start_rollout("slow")
    waiter = asyncio.create_task(store.wait_for_rollouts(rollout_ids=[running.rollout_id], timeout=4))
    await asyncio.sleep(3.2)  # past the first lease: only a renewal keeps it marked
    score = await store._redis.zscore(store.keys.reads, running.rollout_id)
    assert score is not None and float(score) > time.time()
    assert await asyncio.wait_for(waiter, 5) == []


async def test_the_delete_script_itself_spares_a_marked_rollout(store: RedisLightningStore) -> None:
    (rid,) = await _ended(store, 1)
    marked = time.time()
    await reads.mark(store._redis, store.keys.reads, [rid], marked)
    assert await store.delete_rollouts([rid], spare_read_since=marked) == 0
    assert await store.delete_rollouts([rid], spare_read_since=marked + 1) == 1


async def test_a_step_trims_old_wake_ups_but_keeps_recent_ones(store: RedisLightningStore) -> None:
    await write_policy(store, RetentionPolicy(keep_newest=10, min_age=0))
    for i in range(300):  # ended long ago: three stream nodes of old entries
        await store._redis.xadd(store.keys.done, {"rid": f"ro-old{i}", "status": "succeeded"}, id=f"{1000 + i}-0")
    (recent,) = await _ended(store, 1)
    assert await store._redis.xlen(store.keys.done) == 301
    await apply_step(store)
    left = await store._redis.xrange(store.keys.done)
    assert len(left) <= 101  # whole nodes go (approximate trim); at most one partial node of old ones stays
    assert left[-1][1][b"rid"] == recent.encode()
