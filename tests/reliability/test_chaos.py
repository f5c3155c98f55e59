"""1,000 rollouts through a worker pool while a chaos thread SIGKILLs a random worker process every few
seconds and the supervisor restarts it: delivery, fencing and clean-up hold for every rollout."""

from __future__ import annotations

import asyncio
import collections
import os
import random
import signal
import threading
import time
from typing import Any

import pytest
from lq_test_agents import MARK
from lq_test_support import Pool, eventually

from lightning_queue import EnqueueRolloutRequest, RedisLightningStore, RolloutConfig
from lightning_queue.store.redis import GROUP
from lightning_queue.types import TERMINAL_STATUSES, Attempt
from workers.runner import default_worker_id

ROLLOUTS = 1000
PROCESSES = 3
CONCURRENCY = 4
LEASE = 1.0
CHAOS_CONFIG = RolloutConfig(max_attempts=3, retry_condition=["unresponsive", "timeout"], timeout_seconds=10.0)
RETRYABLE = set(CHAOS_CONFIG.retry_condition)


class Chaos(threading.Thread):
    """SIGKILLs a random live worker process of `pool` every `interval` seconds until stopped."""

    def __init__(self, pool: Pool, rng: random.Random, interval: tuple[float, float]) -> None:
        super().__init__(name="chaos", daemon=True)
        self.pool = pool
        self.rng = rng
        self.interval = interval
        self.killed: dict[int, float] = {}  # pid -> when it was killed (wall clock, as attempt end times)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.rng.uniform(*self.interval)):
            pids = self.pool.children()
            if not pids:
                continue
            victim = self.rng.choice(sorted(pids))
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.killed[victim] = time.time()

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)


async def watch_reclaims(store: RedisLightningStore, chaos: Chaos, reclaims: dict[int, float]) -> None:
    """Record, per killed worker, how long after its kill no stream entry was pending on it any more."""
    while True:
        for pid, killed_at in list(chaos.killed.items()):
            if pid in reclaims:
                continue
            held = await store._redis.xpending_range(
                store.keys.queue, GROUP, min="-", max="+", count=1, consumername=default_worker_id(pid)
            )
            if not held:
                reclaims[pid] = time.time() - killed_at
        await asyncio.sleep(0.05)


async def check_rollout(store: RedisLightningStore, rollout: Any) -> tuple[list[Attempt], bool]:
    """Assert the invariants of one terminal rollout; return its attempts and whether a dead one left spans."""
    rid = rollout.rollout_id
    attempts = (await store.query_attempts(rid)).items
    latest = attempts[-1]
    assert [a.sequence_id for a in attempts] == list(range(1, len(attempts) + 1)), rid
    assert rollout.attempt.attempt_id == latest.attempt_id, f"{rid}: the rollout does not point at its latest attempt"
    # Only the latest attempt moved the rollout: every earlier one ended in a retryable status, and the
    # rollout's status is what its latest attempt's ending makes of it.
    assert all(a.status in RETRYABLE for a in attempts[:-1]), (rid, [a.status for a in attempts])
    if rollout.status == "succeeded":
        assert latest.status == "succeeded", rid
    else:
        assert rollout.status == "failed", rid
        assert latest.status in RETRYABLE and len(attempts) == CHAOS_CONFIG.max_attempts, (rid, latest.status)
    spans = (await store.query_spans(rid)).items
    latest_spans = [s for s in spans if s.attempt_id == latest.attempt_id]
    if rollout.status == "succeeded":
        # Exactly what the agent returned on the latest attempt: its mark naming that attempt, then the reward.
        assert [s.name for s in latest_spans] == [MARK, "agentlightning.annotation"], rid
        assert latest_spans[0].attributes["attempt_id"] == latest.attempt_id, rid
        assert [s.span_id for s in (await store.query_spans(rid, "latest")).items] == [
            s.span_id for s in latest_spans
        ], rid
    assert len({s.sequence_id for s in spans}) == len(spans), f"{rid}: a sequence id was issued twice"
    # A worker killed between storing its spans and ending its attempt leaves spans on that dead attempt;
    # the contract keeps them (query_spans(rid, "latest") never shows them).
    dead_spans = any(s.attempt_id != latest.attempt_id for s in spans)
    return attempts, dead_spans


@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_1000_rollouts_end_terminal_and_fenced_while_workers_are_sigkilled(
    start_pool: Any, redis_url: str, observer: RedisLightningStore, record_property: Any
) -> None:
    rng = random.Random(20240607)
    pool = start_pool(redis_url, processes=PROCESSES, concurrency=CONCURRENCY, lease=LEASE, heartbeat=1.0)

    async def all_up() -> bool:
        ids = set(pool.worker_ids())
        return len(ids) == PROCESSES and ids <= {w.worker_id for w in await observer.query_workers()}

    await eventually(all_up, 30, f"{PROCESSES} worker processes")
    # The stand-in agent works 0-200 ms per rollout (its `sleep`), then returns a mark span and a reward.
    requests = [
        EnqueueRolloutRequest(input={"sleep": round(rng.uniform(0.0, 0.2), 3), "mark": str(i)}, config=CHAOS_CONFIG)
        for i in range(ROLLOUTS)
    ]
    chaos = Chaos(pool, rng, interval=(1.0, 2.5))
    started = time.monotonic()
    chaos.start()
    reclaims: dict[int, float] = {}
    watching = asyncio.create_task(watch_reclaims(observer, chaos, reclaims))
    try:
        ids = [r.rollout_id for r in await observer.enqueue_many_rollouts(requests)]
        done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=180)
    finally:
        chaos.stop()
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
    took = time.monotonic() - started

    assert len(done) == ROLLOUTS, f"only {len(done)} of {ROLLOUTS} rollouts ended"
    assert {r.status for r in done} <= TERMINAL_STATUSES
    attempts_per_rollout: collections.Counter[int] = collections.Counter()
    with_dead_spans = 0
    for rollout in done:
        attempts, dead_spans = await check_rollout(observer, rollout)
        attempts_per_rollout[len(attempts)] += 1
        with_dead_spans += dead_spans
    # Each terminal transition notifies `done` once: a second entry would mean a stale attempt moved it again.
    notices = collections.Counter(
        fields[b"rid"].decode() for _id, fields in await observer._redis.xrange(observer.keys.done)
    )
    assert set(notices) == set(ids) and set(notices.values()) == {1}
    assert await observer.pending_entries() == 0
    assert await observer.queue_depth() == 0

    retried = sum((n - 1) * count for n, count in attempts_per_rollout.items())
    statuses = collections.Counter(r.status for r in done)
    assert len(chaos.killed) >= 3, "the run ended before the chaos thread killed anything worth testing"

    async def every_kill_restarted() -> bool:
        log = pool.log()
        return log.count("was killed by SIGKILL") == log.count("restarting it in") == len(chaos.killed)

    await eventually(every_kill_restarted, 10, "the supervisor to notice and restart every killed process")
    report = {
        "seconds": round(took, 1),
        "kills": len(chaos.killed),
        "retried_attempts": retried,
        "attempts_per_rollout": dict(sorted(attempts_per_rollout.items())),
        "statuses": dict(statuses),
        "rollouts_with_spans_of_a_dead_attempt": with_dead_spans,
        "reclaim_seconds_min_median_max": [round(x, 2) for x in quantiles(list(reclaims.values()))],
    }
    for key, value in report.items():
        record_property(key, value)
    print(f"\nchaos run: {report}")
    assert statuses["succeeded"] >= ROLLOUTS * 0.99, report
    # The stream entries a killed worker held are reclaimed about a lease (+ a sweep period) after the kill.
    assert reclaims and max(reclaims.values()) < LEASE + 5.0, report


def quantiles(values: list[float]) -> list[float]:
    ordered = sorted(values) or [float("nan")]
    return [ordered[0], ordered[len(ordered) // 2], ordered[-1]]
