"""Issue 17 across OS processes on the real redis-server: the staleness bound under concurrent claims
(property-style: never exceeded), a real worker loop held by a pause, and a pause holder that crashes."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import random
import signal
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.litagent import rollout
from lightning_queue.types import EnqueueRolloutRequest, PromptTemplate, RolloutConfig
from workers import Worker

pytestmark = pytest.mark.slow

CLAIMERS = 4


def prompt(text: str) -> dict[str, PromptTemplate]:
    return {"prompt": PromptTemplate(template=text)}


@pytest.fixture
def namespace() -> str:
    return f"gate-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def real_store(redis_url: str, namespace: str) -> AsyncIterator[RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=5.0)
    yield store
    try:
        await store.purge()
    finally:
        await store.aclose()


def claimer(url: str, namespace: str, index: int, seed: int, stop: Any, errors: Any, ready: Any) -> None:
    """Child process: claim (leased claims or the store API's dequeue, at random) and end each attempt
    at once, succeeded or failed at random, until told to stop."""

    async def run() -> None:
        rng = random.Random(seed * 100 + index)
        store = RedisLightningStore(url, namespace=namespace, lease_seconds=5.0)
        wid = f"claimer-{index}"
        try:
            await store.ping()
            await asyncio.to_thread(ready.wait, 60)
            while not stop.is_set():
                if rng.random() < 0.5:
                    claimed = [c.rollout for c in await store.claim(consumer=wid, worker_id=wid, count=2, block_ms=50)]
                else:
                    claimed = list(await store.dequeue_many_rollouts(limit=rng.randint(1, 3), worker_id=wid))
                    if not claimed:
                        await asyncio.sleep(0.01)
                for ar in claimed:
                    status = "failed" if rng.random() < 0.25 else "succeeded"
                    await store.update_attempt(ar.rollout_id, ar.attempt.attempt_id, status=status)
        finally:
            await store.aclose()

    try:
        asyncio.run(run())
    except BaseException as error:
        errors.put(f"claimer {index}: {error!r}")


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_admission_rule_holds_under_concurrent_claims_from_several_processes(
    real_store: RedisLightningStore, redis_url: str, namespace: str, seed: int
) -> None:
    rng = random.Random(seed)
    s, b = rng.randint(0, 3), rng.randint(1, 5)
    await real_store.update_resources("policy", prompt("v0"))
    bound = await real_store.set_staleness(s, b)
    assert bound is not None
    retry = RolloutConfig(max_attempts=2, retry_condition=["failed"])
    requests = [
        EnqueueRolloutRequest(
            input={"i": i}, mode=rng.choice(["train", "train", "train", "val"]), config=retry if i % 2 else None
        )
        for i in range(120)
    ]
    rollouts = await real_store.enqueue_many_rollouts(requests)
    ids = [r.rollout_id for r in rollouts]

    context = multiprocessing.get_context("spawn")
    stop, errors, ready = context.Event(), context.Queue(), context.Barrier(CLAIMERS + 1)
    processes = [
        context.Process(target=claimer, args=(redis_url, namespace, i, seed, stop, errors, ready), name=f"claimer-{i}")
        for i in range(CLAIMERS)
    ]
    for process in processes:
        process.start()
    observed = bumps = 0
    try:
        await asyncio.to_thread(ready.wait, 60)  # all claimers up: no versions pass before anyone claims
        deadline = time.monotonic() + 70
        while time.monotonic() < deadline:
            # An outside look at the count at random moments: never above the limit.
            now = await real_store.get_staleness()
            assert now is not None and now.admitted <= now.limit, now
            observed += 1
            stats = await real_store.statistics()
            terminal = sum(stats["rollouts_by_status"][st] for st in ("succeeded", "failed", "cancelled"))
            if terminal == len(ids):
                break
            # The trainer steps once the bound is full (so the claimers keep running into it: a bound that
            # never binds proves nothing), and now and then earlier.
            if (now.capacity == 0 and rng.random() < 0.15) or rng.random() < 0.01:
                await real_store.update_resources("policy", prompt(f"v{observed}"))
                bumps += 1
            await asyncio.sleep(rng.uniform(0.005, 0.03))
    finally:
        stop.set()
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
    assert errors.empty(), errors.get()
    assert terminal == len(ids), f"only {terminal} of {len(ids)} rollouts ended"

    # Every admission the scripts made, with the count it made and the version it was made at.
    admissions: list[tuple[int, int]] = []
    for rid in ids:
        for attempt in (await real_store.query_attempts(rid)).items:
            raw = await real_store._redis.hmget(
                real_store.keys.attempt(rid, attempt.attempt_id), ["admitted_count", "admitted_at_version"]
            )
            if raw[0] is not None:
                admissions.append((int(raw[0]), int(raw[1])))
    train = sum(1 for r in requests if r.mode == "train")
    assert len(admissions) >= train  # each train rollout was admitted at least once
    # The bound did bind: some admission took the last slot of its version.
    assert any(count == (s + (version - bound.base_version) + 1) * b for count, version in admissions)
    for count, version in admissions:
        assert count <= (s + (version - bound.base_version) + 1) * b, (count, version, s, b)
    final = await real_store.get_staleness()
    assert final is not None and final.admitted <= final.limit
    # What stays counted is what succeeded: every failed rollout gave its slot back.
    succeeded_train = len(
        [
            r
            for r in (await real_store.query_rollouts(status_in=["succeeded"])).items
            if r.mode == "train" and r.rollout_id in set(ids)
        ]
    )
    assert final.admitted == succeeded_train
    assert bumps > 0


def pause_and_hang(url: str, namespace: str, ttl: float, ready: Any) -> None:
    """Child process: pause claims (renewing in the background) and hang until killed."""

    async def run() -> None:
        store = RedisLightningStore(url, namespace=namespace)
        async with store.claims_pause(ttl):
            ready.set()
            await asyncio.sleep(3600)

    asyncio.run(run())


async def test_a_pause_holder_killed_while_paused_stops_claims_for_one_ttl_only(
    real_store: RedisLightningStore, redis_url: str, namespace: str
) -> None:
    queued = await real_store.enqueue_rollout({"i": 0})
    context = multiprocessing.get_context("spawn")
    ready = context.Event()
    holder = context.Process(target=pause_and_hang, args=(redis_url, namespace, 1.5, ready), name="pauser")
    holder.start()
    try:
        assert ready.wait(60)
        await asyncio.sleep(2.0)  # past one TTL: the holder's renewals keep the pause
        assert await real_store.claims_paused()
        assert await real_store.claim(consumer="w1", count=1, block_ms=100) == []
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        killed = time.monotonic()
    finally:
        holder.join(10)

    claims: list[Any] = []
    while not claims and time.monotonic() - killed < 10:
        claims = await real_store.claim(consumer="w1", count=1, block_ms=200)
    waited = time.monotonic() - killed
    assert [c.rollout.rollout_id for c in claims] == [queued.rollout_id]
    assert waited < 1.5 + 1.0, f"claims came back {waited:.1f} s after the kill (TTL 1.5 s)"
    assert (await real_store.pause_status()).expired_holder is None  # the claim reported the expiry


async def test_a_real_worker_loop_claims_nothing_while_paused_and_everything_after_resume(
    redis_url: str, namespace: str
) -> None:
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=0.6, scan_debounce_seconds=0.3)
    ran: list[str] = []

    @rollout
    async def agent(task: dict[str, Any]) -> float:
        ran.append(task["name"])
        return 1.0

    holder = await store.pause_claims(30)
    ids = [(await store.enqueue_rollout({"name": f"t{i}"})).rollout_id for i in range(4)]
    worker = Worker(agent, store, heartbeat_seconds=0.2, claim_block_ms=100, concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.sleep(1.5)  # several claim loops and lease periods
        assert ran == []
        statuses = {r.status for r in (await store.query_rollouts(rollout_id_in=ids)).items}
        assert statuses == {"queuing"}

        await store.resume_claims(holder)
        done = await store.wait_for_rollouts(rollout_ids=ids, timeout=15)
        assert {r.status for r in done} == {"succeeded"} and len(done) == 4
        assert sorted(ran) == ["t0", "t1", "t2", "t3"]
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await store.purge()
        await store.aclose()


async def test_a_real_worker_in_flight_during_a_pause_finishes_its_rollout(redis_url: str, namespace: str) -> None:
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=0.6, scan_debounce_seconds=0.3)
    started, release = asyncio.Event(), asyncio.Event()

    @rollout
    async def agent(task: dict[str, Any]) -> float:
        started.set()
        await release.wait()
        return 1.0

    first = await store.enqueue_rollout({"name": "in-flight"})
    second = await store.enqueue_rollout({"name": "after"})
    worker = Worker(agent, store, heartbeat_seconds=0.2, claim_block_ms=100, concurrency=2)
    task = asyncio.create_task(worker.run())
    try:
        holder = None
        await asyncio.wait_for(started.wait(), 10)
        # The second may have been claimed too (concurrency 2); pause, then let the first finish.
        holder = await store.pause_claims(30)
        await asyncio.sleep(1.0)  # longer than the lease: the in-flight claim is renewed, not reclaimed
        release.set()
        [done] = await store.wait_for_rollouts(rollout_ids=[first.rollout_id], timeout=10)
        assert done.status == "succeeded"
        attempts = (await store.query_attempts(first.rollout_id)).items
        assert len(attempts) == 1
        await store.resume_claims(holder)
        [after] = await store.wait_for_rollouts(rollout_ids=[second.rollout_id], timeout=10)
        assert after.status == "succeeded"
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)
        await store.purge()
        await store.aclose()
