"""Agents that misbehave inside real `lq worker` processes: they block the event loop, fork, leak memory.

Each must cost only its own rollout (or nothing): no rollout runs twice, none of its neighbours on the
same worker fails, and the log says what happened.
"""

from __future__ import annotations

from typing import Any

import pytest

from lightning_queue import RedisLightningStore, RolloutConfig
from tests.support.agents import MARK
from tests.support.pools import eventually

RETRY_UNRESPONSIVE = RolloutConfig(max_attempts=3, retry_condition=["unresponsive"])


async def registered(store: RedisLightningStore, pool: Any, count: int) -> bool:
    ids = set(pool.worker_ids())
    return len(ids) == count and ids <= {w.worker_id for w in await store.query_workers()}


async def ran_once(store: RedisLightningStore, rollout_id: str) -> int:
    """Assert the rollout succeeded with one attempt and one result; return the pid that ran it."""
    attempts = (await store.query_attempts(rollout_id)).items
    assert [a.status for a in attempts] == ["succeeded"], (rollout_id, [a.status for a in attempts])
    marks = [s for s in (await store.query_spans(rollout_id)).items if s.name == MARK]
    assert len(marks) == 1 and marks[0].attributes["attempt_id"] == attempts[0].attempt_id
    return int(marks[0].attributes["pid"])


@pytest.mark.slow
async def test_async_agent_blocking_its_loop_past_the_lease_runs_once_and_the_block_is_logged(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    # Two processes: the other one's watchdog reclaims any lapsed lease at once.
    pool = start_pool(processes=2, concurrency=2, lease=1.0)
    await eventually(lambda: registered(observer, pool, 2), 30, "two worker processes")
    blocking = await observer.enqueue_rollout({"block": 3.5, "mark": "b"}, config=RETRY_UNRESPONSIVE)

    [done] = await observer.wait_for_rollouts(rollout_ids=[blocking.rollout_id], timeout=30)

    assert done.status == "succeeded"
    await ran_once(observer, blocking.rollout_id)
    assert await observer.pending_entries() == 0
    log = pool.log()
    assert "its event loop has been blocked for" in log
    blocked_line = next(line for line in log.splitlines() if "its event loop has been blocked" in line)
    assert f"rollout {blocking.rollout_id} attempt {done.attempt.attempt_id}" in blocked_line  # type: ignore[attr-defined]
    assert "<FunctionalLitAgent tests.support.agents.scripted>" in blocked_line and "support/agents.py" in blocked_line
    assert "no longer held" not in log


@pytest.mark.slow
async def test_timeout_still_ends_an_async_agent_that_blocks_the_only_workers_loop(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    pool = start_pool(processes=1, concurrency=1, lease=1.0)
    await eventually(lambda: registered(observer, pool, 1), 30, "the worker process")
    config = RolloutConfig(timeout_seconds=1.0, max_attempts=2, retry_condition=["unresponsive"])
    blocking = await observer.enqueue_rollout({"block": 4.0}, config=config)

    async def timed_out() -> bool:
        attempts = (await observer.query_attempts(blocking.rollout_id)).items
        return [a.status for a in attempts] == ["timeout"]

    # The watchdog ends the attempt while the agent still blocks the loop.
    await eventually(timed_out, 3.5, "the watchdog to time the attempt out")
    await eventually(lambda: _is("result dropped" in pool.log()), 15, "the worker to drop the late result")
    attempts = (await observer.query_attempts(blocking.rollout_id)).items
    assert [a.status for a in attempts] == ["timeout"]
    assert (await observer.get_rollout_by_id(blocking.rollout_id)).status == "failed"
    assert (await observer.query_spans(blocking.rollout_id)).items == []


async def _is(value: bool) -> bool:
    return value


@pytest.mark.slow
async def test_agent_forking_children_breaks_nothing_for_its_neighbours(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    pool = start_pool(processes=1, concurrency=4, lease=2.0)
    await eventually(lambda: registered(observer, pool, 1), 30, "the worker process")
    [worker_pid] = pool.children()
    # Each child: uses the worker's store then exits, exits at once, or returns into the worker's code.
    forking = [await observer.enqueue_rollout({"fork": how, "mark": how}) for how in ("store", "exit", "return")]
    neighbours = [await observer.enqueue_rollout({"sleep": 0.3, "mark": str(i)}) for i in range(12)]
    ids = [r.rollout_id for r in forking + neighbours]

    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=60)

    assert sorted(r.status for r in done) == ["succeeded"] * len(ids), pool.log()[-3000:]
    for rid in ids:
        assert await ran_once(observer, rid) == worker_pid
    assert await observer.pending_entries() == 0
    assert pool.children() == [worker_pid], "the worker process was replaced"
    log = pool.log()
    assert "Timeout reading" not in log and "restarting it in" not in log


async def run_to_the_end(observer: RedisLightningStore, tasks: list[dict[str, Any]]) -> set[int]:
    """Enqueue `tasks`, wait for all; each must succeed exactly once. Returns the pids that ran them."""
    ids = [(await observer.enqueue_rollout(task)).rollout_id for task in tasks]
    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=90)
    assert sorted(r.status for r in done) == ["succeeded"] * len(ids)
    pids = {await ran_once(observer, rid) for rid in ids}
    assert await observer.pending_entries() == 0
    return pids


@pytest.mark.slow
async def test_max_rollouts_per_process_recycles_processes_and_every_rollout_runs_once(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    pool = start_pool(processes=1, concurrency=2, extra=("--max-rollouts-per-process", "3"))

    pids = await run_to_the_end(observer, [{"sleep": 0.2, "mark": str(i)} for i in range(10)])

    assert len(pids) >= 4, pids
    log = pool.log()
    assert log.count("recycled itself") >= 3
    assert "max_rollouts_per_process=3" in log
    assert "restarting it in" not in log and "released back" not in log


@pytest.mark.slow
async def test_leaking_agent_is_recycled_above_max_memory_mb_and_every_rollout_runs_once(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    # A worker process starts at about 70 MB; each rollout keeps 60 MB more.
    pool = start_pool(processes=1, concurrency=1, extra=("--max-memory-mb", "200"))

    pids = await run_to_the_end(observer, [{"leak_mb": 60, "mark": str(i)} for i in range(7)])

    assert len(pids) >= 2, pids
    log = pool.log()
    assert "recycled itself" in log and "is above max_memory_mb=200" in log
    assert "restarting it in" not in log
