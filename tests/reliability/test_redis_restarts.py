"""Redis crashes, restarts and outages under real redis-server processes the tests start and kill.

What a crash loses under each persistence setting; a run that carries on across a crash with
`appendonly yes` + `appendfsync everysec`; workers and a waiting algorithm through a 10 s outage.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from typing import Any

import psutil
import pytest
import redis.asyncio as aioredis

from lightning_queue import EnqueueRolloutRequest, RedisLightningStore, RolloutConfig
from lightning_queue.store.connection import make_client
from lightning_queue.types import Rollout
from tests.support.pools import PoolFactory, eventually
from tests.support.redis_servers import ServerFactory, crash
from tests.support.stores import ObserverFactory
from tests.support.stranded import describe_rollouts, wait_while_progressing

NO_PERSISTENCE = ("--save", "", "--appendonly", "no")
AOF_EVERYSEC = ("--save", "", "--appendonly", "yes", "--appendfsync", "everysec")
RETRY_LOST = RolloutConfig(max_attempts=3, retry_condition=["unresponsive", "timeout"])


async def enqueue_batch(store: RedisLightningStore, count: int, **task: Any) -> list[str]:
    requests = [EnqueueRolloutRequest(input=dict(task), config=RETRY_LOST) for _ in range(count)]
    return [r.rollout_id for r in await store.enqueue_many_rollouts(requests)]


async def surviving(store: RedisLightningStore, ids: list[str]) -> int:
    return sum(1 for r in await store.query_rollouts(rollout_id_in=ids) if r is not None)


@pytest.mark.parametrize(
    ("setting", "args", "expected"),
    [
        ("no persistence", NO_PERSISTENCE, (0, 0)),
        ("RDB snapshot between the halves", ("--save", "", "--appendonly", "no"), (100, 0)),
        ("AOF, appendfsync everysec", AOF_EVERYSEC, (100, 100)),
        ("AOF, appendfsync always", ("--save", "", "--appendonly", "yes", "--appendfsync", "always"), (100, 100)),
    ],
    ids=["none", "rdb", "aof-everysec", "aof-always"],
)
async def test_what_a_redis_process_crash_loses_under_each_persistence_setting(
    redis_servers: ServerFactory, observer_of: ObserverFactory, setting: str, args: tuple[str, ...], expected: Any
) -> None:
    server = redis_servers(*args)
    store = await observer_of(server.url)
    first = await enqueue_batch(store, 100)
    if setting.startswith("RDB"):
        await store._redis.save()
    second = await enqueue_batch(store, 100)

    crash(server)
    server.start()

    # Every enqueue above was acknowledged; the store reconnects by itself to the restarted server.
    assert (await surviving(store, first), await surviving(store, second)) == expected


@pytest.mark.slow
async def test_run_completes_across_a_redis_crash_with_aof_everysec_and_loses_nothing_fsynced(
    redis_servers: ServerFactory,
    observer_of: ObserverFactory,
    start_pool: PoolFactory,
    namespace: str,
    record_property: Any,
) -> None:
    server = redis_servers(*AOF_EVERYSEC)
    pool = start_pool(server.url, processes=2, concurrency=4, lease=2.0)
    algorithm = RedisLightningStore(server.url, namespace=namespace)
    observer = await observer_of(server.url)
    rng = random.Random(3)
    acked: list[tuple[float, str]] = []  # (when the enqueue was acknowledged, rollout id)

    stop_feeding = asyncio.Event()

    async def feed() -> None:
        while not stop_feeding.is_set():
            for rid in await enqueue_batch(algorithm, 5, sleep=round(rng.uniform(0.0, 0.1), 3)):
                acked.append((time.monotonic(), rid))
            await asyncio.sleep(0.1)

    async def working() -> list[int] | None:
        # Both worker processes forked and rollouts finishing: under CPU load that takes longer than 1.5 s.
        children = pool.children()
        if len(children) < 2 or not acked:
            return None
        first = await observer.query_rollouts(rollout_id_in=[rid for _, rid in acked[:10]])
        return children if any(r.status == "succeeded" for r in first) else None

    feeder = asyncio.create_task(feed())
    await asyncio.sleep(1.5)
    workers = await eventually(working, 60, "both workers up and a rollout done")
    snapshot_at = time.monotonic()
    before = {r.rollout_id: r.status for r in await observer.query_rollouts()}
    # everysec: at least one fsync happens after the snapshot before the crash.
    await asyncio.sleep(2.2)
    crashed_at = time.monotonic()
    crash(server)
    await asyncio.sleep(1.0)
    server.start()
    restarted_at = time.monotonic()
    await asyncio.sleep(1.5)
    stop_feeding.set()
    await feeder  # the algorithm's enqueues rode out the crash on the client's reconnect backoff

    ids = [rid for _, rid in acked]
    found = {r.rollout_id: r for r in await observer.query_rollouts(rollout_id_in=ids)}
    lost_after_fsync = [rid for rid, status in before.items() if rid not in found]
    assert lost_after_fsync == [], "rollouts acknowledged before the last fsync were lost"
    regressed = [rid for rid, status in before.items() if status == "succeeded" and found[rid].status != "succeeded"]
    assert regressed == [], "finished rollouts acknowledged before the last fsync were un-finished"
    lost_late = [rid for when, rid in acked if rid not in found and when > snapshot_at]

    # A lapsed lease is reclaimed within a few seconds; 30 s with no rollout ending means one is stranded.
    done = await wait_while_progressing(algorithm, list(found), stuck_seconds=30, limit_seconds=90)
    unfinished = sorted(set(found) - {r.rollout_id for r in done if r.status == "succeeded"})
    if unfinished:
        state = await describe_rollouts(observer, unfinished)
        pytest.fail(f"{len(unfinished)} of {len(found)} rollouts not succeeded:\n{state}\n{pool.log()[-4000:]}")
    assert await observer.pending_entries() == 0
    # The same worker processes did the work after the crash: they reconnected by themselves.
    assert sorted(pool.children()) == sorted(workers) and "restarting" not in pool.log()
    assert any(when > restarted_at for when, _ in acked), "the feeder was done before the crash: not mid-run"
    report = {
        "acknowledged": len(acked),
        "enqueued_after_the_restart": sum(1 for when, _ in acked if when > restarted_at),
        "acknowledged_in_the_last_fsync_window_and_lost": len(lost_late),
        "outage_seconds": round(restarted_at - crashed_at, 2),
    }
    for key, value in report.items():
        record_property(key, value)
    print(f"\nAOF everysec crash: {report}")
    await algorithm.aclose()


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            times = psutil.Process(pid).cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


@pytest.mark.slow
async def test_workers_log_back_off_and_resume_through_a_10s_redis_outage(
    redis_servers: ServerFactory, observer_of: ObserverFactory, start_pool: PoolFactory, record_property: Any
) -> None:
    # AOF so the namespace survives the stop; the test is about the outage, not persistence.
    server = redis_servers("--save", "", "--appendonly", "yes")
    observer = await observer_of(server.url)
    pool = start_pool(server.url, processes=2, concurrency=2, lease=2.0)
    first = await enqueue_batch(observer, 10)
    assert len(await observer.wait_for_rollouts(rollout_ids=first, timeout=30)) == 10
    workers = pool.children()
    assert len(workers) == 2

    server.stop()
    down_at = time.monotonic()
    cpu_before = cpu_seconds(workers)
    await asyncio.sleep(10.0)
    cpu_down = cpu_seconds(workers) - cpu_before
    server.start()
    up_at = time.monotonic()

    second = await enqueue_batch(observer, 10)
    done = await observer.wait_for_rollouts(rollout_ids=second, timeout=30)
    resumed = time.monotonic() - up_at
    assert [r.status for r in done] == ["succeeded"] * 10
    assert sorted(pool.children()) == sorted(workers), "a worker process died in the outage"
    log = pool.log()
    # Each claim call rides out ~5 s of the outage inside the client's own exponential backoff before the
    # worker logs it and backs off in turn; so a 10 s outage costs each worker one or two logged retries.
    failures = re.findall(r"worker (\S+): claiming failed \((.*)\); retrying in ([\d.]+)s", log)
    assert all("Connect" in why for _, why, _ in failures)
    for wid in pool.worker_ids():
        assert 1 <= sum(1 for w, _, _ in failures if w == wid) <= 4, log
        # Background loops warn once per outage, not once per retry, and say when they recover. The lease
        # thread runs the sweep and the retention step one after the other: whichever call rides out the
        # outage in the client's retries meets it, the other may find Redis back (seen: only retention).
        loops = ("watchdog sweep", "retention step")
        assert sum(log.count(f"worker {wid}: {name} failed") for name in loops) >= 1, log
        for name in loops:
            assert log.count(f"worker {wid}: {name} failed") <= 1, log
            if f"worker {wid}: {name} failed" in log:
                assert f"worker {wid}: {name} works again" in log, log
    # Two idle workers waiting out a 10 s outage: a busy loop would burn seconds of CPU.
    assert cpu_down < 2.0, f"workers used {cpu_down:.2f}s CPU while Redis was down"
    report = {
        "outage_seconds": round(up_at - down_at, 1),
        "logged_claim_failures": len(failures),
        "worker_cpu_seconds_while_down": round(cpu_down, 2),
        "seconds_from_restart_to_10_rollouts_done": round(resumed, 2),
    }
    for key, value in report.items():
        record_property(key, value)
    print(f"\n10 s outage (workers): {report}")


class CountingConnection(aioredis.Connection):
    """Counts TCP connection attempts, so a waiter that hammers a dead Redis shows up."""

    attempts = 0

    async def _connect(self) -> None:
        type(self).attempts += 1
        await super()._connect()  # type: ignore[no-untyped-call]


@pytest.mark.slow
async def test_wait_for_rollouts_waits_out_a_10s_outage_without_busy_looping(
    redis_servers: ServerFactory, observer_of: ObserverFactory, namespace: str, record_property: Any
) -> None:
    server = redis_servers("--save", "", "--appendonly", "yes")

    def counting_client() -> aioredis.Redis:
        client = make_client(server.url)
        client.connection_pool.connection_class = CountingConnection
        return client

    waiter = RedisLightningStore(namespace=namespace, client_factory=counting_client, scan_debounce_seconds=3600)
    finisher = await observer_of(server.url)
    ids = [r.rollout_id for r in await finisher.enqueue_many_rollouts([EnqueueRolloutRequest(input=i) for i in "ab"])]
    claimed = await finisher.dequeue_rollout(worker_id="w1")
    assert claimed is not None
    await finisher.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="succeeded")
    waiting = asyncio.create_task(waiter.wait_for_rollouts(rollout_ids=ids, timeout=60))
    try:
        await asyncio.sleep(0.3)
        server.stop()
        connects_before, cpu_before = CountingConnection.attempts, time.process_time()
        await asyncio.sleep(10.0)
        connects, cpu = CountingConnection.attempts - connects_before, time.process_time() - cpu_before
        server.start()
        record_property("waiter_connect_attempts_while_down", connects)
        record_property("test_process_cpu_seconds_while_down", round(cpu, 2))
        print(f"\n10 s outage (waiter): {connects} connection attempts, {cpu:.2f}s CPU")
        assert not waiting.done() or waiting.exception() is None, f"the waiter failed: {waiting.exception()!r}"
        claimed = await finisher.dequeue_rollout(worker_id="w1")
        assert claimed is not None
        await finisher.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="failed")

        done: list[Rollout] = await asyncio.wait_for(waiting, 30)
    finally:
        waiting.cancel()
        await waiter.aclose()

    assert sorted((r.rollout_id, r.status) for r in done) == sorted(zip(ids, ["succeeded", "failed"], strict=True))
    assert connects <= 40, f"{connects} connection attempts in 10 s: the waiter hammers a dead Redis"
    assert cpu < 1.0, f"{cpu:.2f}s CPU while waiting on a dead Redis"
