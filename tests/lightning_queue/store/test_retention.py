"""Retention: each rule deletes what it says, oldest first, and never live or unread rollouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.store.memory import MemoryInfo
from lightning_queue.store.retention import (
    RetentionPolicy,
    apply,
    apply_step,
    read_policy,
    retention_warnings,
    write_policy,
)


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
    with pytest.raises(ValueError, match="--max-age or --keep-newest"):
        RetentionPolicy()
    with pytest.raises(ValueError, match="max_age"):
        RetentionPolicy(max_age=-1)
    with pytest.raises(ValueError, match="keep_newest"):
        RetentionPolicy(keep_newest=-3)


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
    assert bad.exit_code == 2 and "--max-age or --keep-newest" in bad.output
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
