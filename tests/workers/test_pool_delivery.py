"""Delivery through real `lq worker` pools: exactly once per attempt, crashes, zombies and shutdown.

Each test runs real supervisor and worker processes against the session's redis-server, with a
1-2 s lease so a lapsed lease is noticed quickly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import pytest

from lightning_queue import EnqueueRolloutRequest, RedisLightningStore, RolloutConfig
from lightning_queue.types import AttemptedRollout
from tests.support.agents import MARK
from tests.support.pools import claimed_by, eventually
from workers.runner import default_worker_id

RETRY_UNRESPONSIVE = RolloutConfig(max_attempts=2, retry_condition=["unresponsive"])


async def one_child(pool: Any) -> int:
    async def probe() -> int | None:
        pids = pool.children()
        return pids[0] if len(pids) == 1 else None

    return await eventually(probe, 20, "the pool's worker process")


async def registered(store: RedisLightningStore, worker_ids: set[str]) -> bool:
    """True once every worker in `worker_ids` has sent telemetry (it is up and claiming)."""
    return worker_ids <= {w.worker_id for w in await store.query_workers()}


async def snapshot(store: RedisLightningStore, rollout_id: str) -> tuple[Any, ...]:
    rollout = await store.get_rollout_by_id(rollout_id)
    assert rollout is not None
    attempts = (await store.query_attempts(rollout_id)).items
    spans = (await store.query_spans(rollout_id)).items
    return rollout.model_dump(), [a.model_dump() for a in attempts], [s.model_dump() for s in spans]


@pytest.mark.slow
async def test_200_rollouts_through_two_pools_each_run_exactly_once(start_pool: Any, observer: Any) -> None:
    pools = [start_pool(processes=2, concurrency=4, lease=2.0) for _ in range(2)]

    async def four_workers_up() -> bool:
        ids = {wid for pool in pools for wid in pool.worker_ids()}
        return len(ids) == 4 and await registered(observer, ids)

    await eventually(four_workers_up, 30, "4 worker processes")
    requests = [EnqueueRolloutRequest(input={"sleep": 0.02, "mark": str(i)}) for i in range(200)]
    ids = [r.rollout_id for r in await observer.enqueue_many_rollouts(requests)]

    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=60)

    assert len(done) == 200 and {r.status for r in done} == {"succeeded"}
    ran_in: set[int] = set()
    for i, rid in enumerate(ids):
        [attempt] = (await observer.query_attempts(rid)).items
        assert attempt.status == "succeeded"
        spans = (await observer.query_spans(rid)).items
        assert [s.name for s in spans] == [MARK, "agentlightning.annotation"], rid
        mark = spans[0].attributes
        assert (mark["attempt_id"], mark["mark"]) == (attempt.attempt_id, str(i))
        assert {s.attempt_id for s in spans} == {attempt.attempt_id}
        ran_in.add(mark["pid"])
    assert all(ran_in & pool.seen for pool in pools), "both pools took part"
    assert await observer.pending_entries() == 0
    assert await observer.queue_depth() == 0


@pytest.mark.slow
async def test_sigkill_of_a_worker_holding_rollouts_ends_its_attempts_unresponsive_and_retries_them(
    start_pool: Any, observer: RedisLightningStore, record_property: Any
) -> None:
    lease = 1.0
    victim_pool = start_pool(processes=1, concurrency=4, lease=lease)
    retried = [await observer.enqueue_rollout({"sleep_first_attempt": 60}, config=RETRY_UNRESPONSIVE) for _ in "ab"]
    failing = [await observer.enqueue_rollout({"sleep_first_attempt": 60}) for _ in "ab"]
    ids = [r.rollout_id for r in retried + failing]
    victim = await one_child(victim_pool)
    await eventually(lambda: claimed_by(observer, ids, {default_worker_id(victim)}), 20, "the victim's claims")
    bystander_pool = start_pool(processes=1, concurrency=4, lease=lease)
    await eventually(lambda: registered(observer, set(bystander_pool.worker_ids())), 20, "a bystander worker")

    killed_at = time.monotonic()
    os.kill(victim, signal.SIGKILL)

    async def all_unresponsive() -> bool:
        firsts = [(await observer.query_attempts(rid)).items[0] for rid in ids]
        return all(a.status == "unresponsive" for a in firsts)

    await eventually(all_unresponsive, lease + 15, "the killed worker's attempts to be declared unresponsive")
    reclaim = time.monotonic() - killed_at
    record_property("reclaim_seconds", round(reclaim, 2))
    print(f"\nreclaim after SIGKILL took {reclaim:.2f}s (lease {lease}s, sweep every {min(5.0, lease / 2)}s)")
    # One lease and one sweep period, plus slack for a loaded 2-core machine (3.5-5.9 s were seen at load
    # 10-17 with a 2 s slack): a watchdog that did not reclaim would wait out `eventually` instead.
    assert reclaim < lease + min(5.0, lease / 2) + 6.0

    done = {r.rollout_id: r for r in await observer.wait_for_rollouts(rollout_ids=ids, timeout=30)}
    for r in retried:
        attempts = (await observer.query_attempts(r.rollout_id)).items
        assert (done[r.rollout_id].status, [a.status for a in attempts]) == ("succeeded", ["unresponsive", "succeeded"])
    for r in failing:
        attempts = (await observer.query_attempts(r.rollout_id)).items
        assert (done[r.rollout_id].status, [a.status for a in attempts]) == ("failed", ["unresponsive"])
    assert await observer.pending_entries() == 0

    async def restarted() -> bool:
        pids = victim_pool.children()
        return bool(pids) and victim not in pids and "restarting it in" in victim_pool.log()

    await eventually(restarted, 10, "the supervisor to restart the killed process")
    assert f"(pid {victim}) was killed by SIGKILL" in victim_pool.log()


@pytest.mark.slow
async def test_zombie_worker_resumed_after_its_rollout_was_rerun_changes_nothing(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    lease = 1.0
    zombie_pool = start_pool(processes=1, concurrency=1, lease=lease)
    queued = await observer.enqueue_rollout({"sleep_first_attempt": 2.0, "mark": "z"}, config=RETRY_UNRESPONSIVE)
    zombie = await one_child(zombie_pool)
    await eventually(lambda: claimed_by(observer, [queued.rollout_id], {default_worker_id(zombie)}), 20, "the claim")
    claimed_at = time.monotonic()

    os.kill(zombie, signal.SIGSTOP)
    try:
        rescuer_pool = start_pool(processes=1, concurrency=1, lease=lease)
        [done] = await observer.wait_for_rollouts(rollout_ids=[queued.rollout_id], timeout=30)
        assert isinstance(done, AttemptedRollout) and done.status == "succeeded"
        before = await snapshot(observer, queued.rollout_id)
        # Resume only once the zombie's 2 s agent call is over: it wakes up holding a finished result.
        await asyncio.sleep(max(0.0, claimed_at + 2.5 - time.monotonic()))
    finally:
        os.kill(zombie, signal.SIGCONT)
    await eventually(lambda: _async("result dropped" in zombie_pool.log()), 10, "the zombie to give up")
    after = await snapshot(observer, queued.rollout_id)

    assert after == before
    rollout, attempts, spans = after
    assert [a["status"] for a in attempts] == ["unresponsive", "succeeded"]
    assert rollout["attempt"]["attempt_id"] == attempts[1]["attempt_id"]
    rescuer = set(rescuer_pool.children())
    assert {s["attempt_id"] for s in spans} == {attempts[1]["attempt_id"]}
    assert {s["attributes"]["pid"] for s in spans if s["name"] == MARK} <= rescuer


async def _async(value: bool) -> bool:
    return value


@pytest.mark.slow
async def test_sigterm_lets_in_flight_rollouts_finish_and_claims_nothing_new(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    pool = start_pool(processes=1, concurrency=2, grace=10.0)
    ids = [(await observer.enqueue_rollout({"sleep": 1.0})).rollout_id for _ in "ab"]
    worker = await one_child(pool)
    await eventually(lambda: claimed_by(observer, ids, {default_worker_id(worker)}), 20, "both claims")

    pool.signal(signal.SIGTERM)
    late = await observer.enqueue_rollout({"mark": "late"})

    assert await pool.wait(15) == 0
    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=0)
    assert [r.status for r in done] == ["succeeded", "succeeded"]
    for rid in ids:
        assert len((await observer.query_attempts(rid)).items) == 1
    assert (await observer.get_rollout_by_id(late.rollout_id)).status == "queuing"
    assert await observer.pending_entries() == 0
    assert "finish in-flight rollouts" in pool.log()


@pytest.mark.slow
async def test_sigterm_past_the_grace_period_releases_rollouts_for_another_worker(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    pool = start_pool(processes=1, concurrency=2, grace=0.5)
    ids = [(await observer.enqueue_rollout({"sleep_first_attempt": 60})).rollout_id for _ in "ab"]
    worker = await one_child(pool)
    await eventually(lambda: claimed_by(observer, ids, {default_worker_id(worker)}), 20, "both claims")

    pool.signal(signal.SIGTERM)
    assert await pool.wait(10) == 0

    for rid in ids:
        rollout = await observer.get_rollout_by_id(rid)
        assert (rollout.status, rollout.attempt.status) == ("requeuing", "unresponsive")
        assert "shut down" in rollout.attempt.metadata["released"]["reason"]  # type: ignore[index]
    start_pool(processes=1, concurrency=2)
    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=30)
    assert [r.status for r in done] == ["succeeded", "succeeded"]
    for rid in ids:
        assert [a.status for a in (await observer.query_attempts(rid)).items] == ["unresponsive", "succeeded"]
    assert await observer.pending_entries() == 0


async def test_processes_exit_after_max_rollouts_and_the_pool_with_them(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    ids = [(await observer.enqueue_rollout({"sleep": 0.05})).rollout_id for _ in range(4)]
    pool = start_pool(processes=2, concurrency=1, extra=("--max-rollouts", "2"))

    assert await pool.wait(30) == 0
    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=0)
    assert [r.status for r in done] == ["succeeded"] * 4
    assert pool.log().count("done (max-rollouts reached)") == 2
    assert "restarting" not in pool.log()
