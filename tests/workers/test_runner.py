"""One worker's loop, run in this process against the real redis-server: concurrency, results,
errors, timeouts, hooks, leases and shutdown."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import redis.asyncio as aioredis

from lightning_queue import LLM, RedisLightningStore, RolloutConfig
from lightning_queue.emitter import emit_annotation
from lightning_queue.litagent import Hook, LitAgent, rollout
from lightning_queue.reward import find_final_reward
from lightning_queue.types import AttemptedRollout, ProxyLLM, Span, SpanCoreFields
from tests.support.pools import eventually
from workers import Worker
from workers.leases import LeaseKeeper

LEASE = 0.6


@pytest.fixture
async def wstore(redis_url: str, namespace: str) -> AsyncIterator[RedisLightningStore]:
    """The worker's own store: a short lease, the sweep period as debounce (as `lq worker` does)."""
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=LEASE, scan_debounce_seconds=LEASE / 2)
    yield store
    await store.aclose()


def make_worker(agent: LitAgent[Any], store: RedisLightningStore, **kwargs: Any) -> Worker:
    kwargs.setdefault("heartbeat_seconds", 0.2)
    kwargs.setdefault("claim_block_ms", 100)
    return Worker(agent, store, **kwargs)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[Any]]:
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        worker.stop(now=True)
        await asyncio.wait_for(task, 10)


async def finished(store: RedisLightningStore, ids: list[str], timeout: float = 10.0) -> dict[str, Any]:
    done = await store.wait_for_rollouts(rollout_ids=ids, timeout=timeout)
    assert len(done) == len(ids), f"only {len(done)} of {len(ids)} rollouts finished"
    return {r.rollout_id: r for r in done}


class Gauge:
    """Counts agent calls in progress and remembers the most at once."""

    def __init__(self) -> None:
        self.now = self.most = 0
        self.lock = threading.Lock()

    def enter(self) -> None:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


async def test_async_agent_runs_up_to_concurrency_rollouts_at_once(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    gauge = Gauge()

    @rollout
    async def agent(task: int) -> float:
        gauge.enter()
        await asyncio.sleep(0.2)
        gauge.leave()
        return task / 10

    ids = [(await observer.enqueue_rollout(i)).rollout_id for i in range(8)]
    async with running(make_worker(agent, wstore, concurrency=3)):
        done = await finished(observer, ids)

    assert gauge.most == 3
    assert {r.status for r in done.values()} == {"succeeded"}
    for i, rid in enumerate(ids):
        assert find_final_reward((await observer.query_spans(rid)).items) == i / 10
    assert await observer.pending_entries() == 0


async def test_sync_agent_runs_in_a_thread_pool_of_concurrency_threads(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    gauge = Gauge()
    threads: set[int] = set()

    @rollout
    def agent(task: int) -> float:
        threads.add(threading.get_ident())
        gauge.enter()
        time.sleep(0.15)
        gauge.leave()
        return 1.0

    ids = [(await observer.enqueue_rollout(i)).rollout_id for i in range(6)]
    async with running(make_worker(agent, wstore, concurrency=2)):
        done = await finished(observer, ids)

    assert {r.status for r in done.values()} == {"succeeded"}
    assert gauge.most == 2 and len(threads) == 2 and threading.get_ident() not in threads


class ModeAgent(LitAgent[str]):
    def training_rollout(self, task: str, resources: Any, rollout: AttemptedRollout) -> float:
        return 1.0

    def validation_rollout(self, task: str, resources: Any, rollout: AttemptedRollout) -> float:
        return 0.5


async def test_train_mode_calls_training_rollout_and_other_modes_validation_rollout(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    train = await observer.enqueue_rollout("t", mode="train")
    val = await observer.enqueue_rollout("v", mode="val")
    unset = await observer.enqueue_rollout("u")
    async with running(make_worker(ModeAgent(), wstore)):
        await finished(observer, [train.rollout_id, val.rollout_id, unset.rollout_id])

    rewards = [find_final_reward((await observer.query_spans(r.rollout_id)).items) for r in (train, val, unset)]
    assert rewards == [1.0, 0.5, 0.5]


async def test_rollout_resources_reach_the_agent_with_the_attempts_proxy_url(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any, llm: LLM, rollout: AttemptedRollout) -> list[SpanCoreFields]:
        return [SpanCoreFields(name="llm", attributes={"endpoint": llm.endpoint, "model": llm.model})]

    pinned = await observer.add_resources({"main": ProxyLLM(endpoint="http://proxy:1/v1", model="old")})
    await observer.add_resources({"main": LLM(endpoint="http://direct:2", model="latest")})
    with_id = await observer.enqueue_rollout("a", resources_id=pinned.resources_id)
    latest = await observer.enqueue_rollout("b", resources_id=None)
    async with running(make_worker(agent, wstore)):
        done = await finished(observer, [with_id.rollout_id, latest.rollout_id])

    [span] = (await observer.query_spans(with_id.rollout_id)).items
    aid = done[with_id.rollout_id].attempt.attempt_id
    assert span.attributes == {
        "endpoint": f"http://proxy:1/rollout/{with_id.rollout_id}/attempt/{aid}/v1",
        "model": "old",
    }
    [span] = (await observer.query_spans(latest.rollout_id)).items
    assert span.attributes == {"endpoint": "http://direct:2", "model": "latest"}


async def test_a_worker_reads_each_resources_snapshot_once_and_a_new_version_when_it_is_published(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    # The claim names the snapshot (id, version): rollouts naming one the worker holds read nothing.
    @rollout
    async def agent(task: Any, llm: LLM) -> list[SpanCoreFields]:
        llm.model += "-changed by the agent"  # each rollout gets its own copy
        return [SpanCoreFields(name="llm", attributes={"model": llm.model})]

    await observer.add_resources({"main": LLM(endpoint="http://direct:2", model="v1")})
    worker = make_worker(agent, wstore, concurrency=4)
    async with running(worker):
        first = [(await observer.enqueue_rollout(i)).rollout_id for i in range(20)]
        await finished(observer, first)
        await observer.add_resources({"main": LLM(endpoint="http://direct:2", model="v2")})
        second = [(await observer.enqueue_rollout(i)).rollout_id for i in range(20)]
        await finished(observer, second)

    for ids, model in ((first, "v1"), (second, "v2")):
        for rid in ids:
            [span] = (await observer.query_spans(rid)).items
            assert span.attributes == {"model": f"{model}-changed by the agent"}, rid
    assert worker._resources.reads == 2  # one per snapshot, not one per claim or rollout


async def test_missing_resources_fail_the_attempt_saying_which(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    def agent(task: Any) -> float:
        return 1.0

    queued = await observer.enqueue_rollout("x", resources_id="rs-gone")
    async with running(make_worker(agent, wstore)):
        done = await finished(observer, [queued.rollout_id])

    attempt = done[queued.rollout_id].attempt
    assert (done[queued.rollout_id].status, attempt.status) == ("failed", "failed")
    assert "resources 'rs-gone'" in attempt.metadata["error"]["message"]


async def test_agent_exception_fails_the_attempt_and_is_recorded_as_span_and_metadata(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any) -> float:
        raise KeyError("no such tool: calculator")

    queued = await observer.enqueue_rollout("x")
    async with running(make_worker(agent, wstore)):
        done = await finished(observer, [queued.rollout_id])

    rollout_ = done[queued.rollout_id]
    assert (rollout_.status, rollout_.attempt.status) == ("failed", "failed")
    error = rollout_.attempt.metadata["error"]
    assert error["type"] == "KeyError" and "calculator" in error["message"]
    assert "raise KeyError" in error["traceback"]
    [span] = (await observer.query_spans(queued.rollout_id)).items
    assert span.name == "agentlightning.exception"
    assert span.attributes["exception.type"] == "KeyError"
    assert "calculator" in span.attributes["exception.message"]
    assert "Traceback" in span.attributes["exception.stacktrace"]


async def test_sync_agent_past_its_timeout_ends_timeout_and_its_thread_keeps_the_slot(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    returned: list[float] = []

    @rollout
    def agent(task: float) -> float:
        time.sleep(task)
        returned.append(time.time())
        return 1.0

    slow = await observer.enqueue_rollout(1.5, config=RolloutConfig(timeout_seconds=0.5))
    quick = await observer.enqueue_rollout(0.0)
    worker = make_worker(agent, wstore, concurrency=1)
    async with running(worker):
        done = await finished(observer, [slow.rollout_id, quick.rollout_id])
        assert worker.abandoned_threads == 0

    timed_out = done[slow.rollout_id]
    assert (timed_out.status, timed_out.attempt.status) == ("failed", "timeout")
    error = timed_out.attempt.metadata["error"]
    assert error["type"] == "AgentTimeout" and "timeout_seconds=0.5" in error["message"]
    # The one thread was busy until the slow call returned, so the quick rollout started after it.
    assert done[quick.rollout_id].attempt.start_time >= returned[0] - 0.05


class Recorder(Hook):
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def on_rollout_start(self, *, agent: Any, runner: Any, rollout: AttemptedRollout) -> None:
        self.calls.append(("rollout_start", rollout.rollout_id))

    async def on_trace_start(self, *, agent: Any, runner: Any, tracer: Any, rollout: AttemptedRollout) -> None:
        self.calls.append(("trace_start", tracer))
        raise RuntimeError("a broken hook must not fail the rollout")

    async def on_trace_end(self, *, agent: Any, runner: Any, tracer: Any, rollout: AttemptedRollout) -> None:
        self.calls.append(("trace_end", runner))

    async def on_rollout_end(self, *, agent: Any, runner: Any, rollout: AttemptedRollout, spans: Any) -> None:
        self.calls.append(("rollout_end", [(s.name, s.sequence_id) for s in spans]))


async def test_hooks_run_in_order_and_a_raising_hook_is_logged_not_fatal(
    wstore: RedisLightningStore, observer: RedisLightningStore, caplog: pytest.LogCaptureFixture
) -> None:
    @rollout
    def agent(task: Any) -> float:
        return 1.0

    hook = Recorder()
    queued = await observer.enqueue_rollout("x")
    worker = make_worker(agent, wstore, hooks=[hook])
    with caplog.at_level(logging.ERROR, logger="workers.runner"):
        async with running(worker):
            done = await finished(observer, [queued.rollout_id])

    assert done[queued.rollout_id].status == "succeeded"
    assert hook.calls == [
        ("rollout_start", queued.rollout_id),
        ("trace_start", worker.tracer),
        ("trace_end", worker),
        # A hook sees the spans before they are stored: with their real sequence ids, not placeholders.
        ("rollout_end", [("agentlightning.annotation", 1)]),
    ]
    stored = (await observer.query_spans(queued.rollout_id)).items
    assert [(s.name, s.sequence_id) for s in stored] == [("agentlightning.annotation", 1)]
    assert "Recorder.on_trace_start raised; ignored" in caplog.text


async def test_leases_are_renewed_so_a_rollout_longer_than_the_lease_is_not_reclaimed(
    wstore: RedisLightningStore, observer: RedisLightningStore, redis_url: str, namespace: str
) -> None:
    @rollout
    async def agent(task: Any) -> float:
        await asyncio.sleep(4 * LEASE)
        return 1.0

    reaper = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=LEASE, scan_debounce_seconds=0)
    queued = await observer.enqueue_rollout("x", config=RolloutConfig(max_attempts=3, retry_condition=["unresponsive"]))
    async with running(make_worker(agent, wstore)):
        while (await observer.get_rollout_by_id(queued.rollout_id)).status not in ("succeeded", "failed"):
            await reaper.sweep()
            await asyncio.sleep(0.1)
    await reaper.aclose()

    attempts = (await observer.query_attempts(queued.rollout_id)).items
    assert [a.status for a in attempts] == ["succeeded"]


async def test_result_of_an_attempt_reclaimed_meanwhile_is_dropped_and_the_retry_runs(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any, rollout: AttemptedRollout) -> list[SpanCoreFields]:
        if rollout.attempt.sequence_id == 1:
            await asyncio.sleep(3 * LEASE)
        return [SpanCoreFields(name=f"attempt-{rollout.attempt.sequence_id}")]

    worker = make_worker(agent, wstore, concurrency=1)
    worker.renew_seconds = 3600.0  # as if this worker froze: its own sweep reclaims the lapsed lease
    queued = await observer.enqueue_rollout("x", config=RolloutConfig(max_attempts=2, retry_condition=["unresponsive"]))
    async with running(worker):
        done = await finished(observer, [queued.rollout_id])

    first, second = (await observer.query_attempts(queued.rollout_id)).items
    assert (first.status, second.status, done[queued.rollout_id].status) == ("unresponsive", "succeeded", "succeeded")
    spans: list[Span] = (await observer.query_spans(queued.rollout_id)).items
    assert [(s.attempt_id, s.name) for s in spans] == [(second.attempt_id, "attempt-2")]
    assert worker.totals.lost == 1


async def test_a_retried_rollouts_spans_are_numbered_after_its_earlier_attempts(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    # The finish script numbers the spans from the rollout's counter, shared by its attempts.
    @rollout
    async def agent(task: Any, rollout: AttemptedRollout) -> list[SpanCoreFields]:
        if rollout.attempt.sequence_id == 1:
            emit_annotation({"step": "before failing"})
            raise RuntimeError("first attempt fails")
        return [SpanCoreFields(name="a"), SpanCoreFields(name="b")]

    queued = await observer.enqueue_rollout("x", config=RolloutConfig(max_attempts=2, retry_condition=["failed"]))
    async with running(make_worker(agent, wstore, concurrency=1)):
        done = await finished(observer, [queued.rollout_id])

    assert done[queued.rollout_id].status == "succeeded"
    first, second = (await observer.query_attempts(queued.rollout_id)).items
    spans = (await observer.query_spans(queued.rollout_id)).items
    assert [(s.attempt_id, s.name, s.sequence_id) for s in spans] == [
        (first.attempt_id, "agentlightning.annotation", 1),
        (first.attempt_id, "agentlightning.exception", 2),
        (second.attempt_id, "a", 3),
        (second.attempt_id, "b", 4),
    ]


async def test_stop_lets_in_flight_rollouts_finish_within_the_grace_period(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any) -> float:
        await asyncio.sleep(0.4)
        return 1.0

    ids = [(await observer.enqueue_rollout(i)).rollout_id for i in range(2)]
    worker = make_worker(agent, wstore, concurrency=2, grace_seconds=5)
    task = asyncio.create_task(worker.run())
    await eventually(lambda: asyncio.sleep(0, worker.in_flight == 2), 5, "both rollouts in flight")
    worker.stop()
    late = await observer.enqueue_rollout("late")
    totals = await asyncio.wait_for(task, 5)

    assert totals.succeeded == 2 and totals.released == 0
    assert {r.status for r in (await finished(observer, ids)).values()} == {"succeeded"}
    assert (await observer.get_rollout_by_id(late.rollout_id)).status == "queuing"


async def test_stop_now_releases_in_flight_rollouts_back_to_the_queue(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any) -> float:
        await asyncio.sleep(30)
        return 1.0

    ids = [(await observer.enqueue_rollout(i)).rollout_id for i in range(2)]
    worker = make_worker(agent, wstore, concurrency=2, grace_seconds=30)
    task = asyncio.create_task(worker.run())
    await eventually(lambda: asyncio.sleep(0, worker.in_flight == 2), 5, "both rollouts in flight")
    worker.stop(now=True)
    totals = await asyncio.wait_for(task, 5)

    assert totals.released == 2
    for rid in ids:
        rollout_ = await observer.get_rollout_by_id(rid)
        assert (rollout_.status, rollout_.attempt.status) == ("requeuing", "unresponsive")
        assert rollout_.attempt.metadata["released"]["worker_id"] == worker.worker_id  # type: ignore[index]
    assert await observer.queue_depth() == 2 and await observer.pending_entries() == 0


@pytest.mark.slow
async def test_worker_logs_and_backs_off_through_a_redis_outage_then_resumes(
    namespace: str, spare_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    server = spare_redis
    # A client without redis-py's own retries (they would hide a short outage): the worker's backoff copes.
    store = RedisLightningStore(
        server.url,
        namespace=namespace,
        lease_seconds=LEASE,
        scan_debounce_seconds=0.3,
        client_factory=lambda: aioredis.Redis.from_url(server.url, socket_connect_timeout=1),
    )
    feeder = RedisLightningStore(server.url, namespace=namespace, lease_seconds=None, scan_debounce_seconds=0)

    @rollout
    def agent(task: Any) -> float:
        return 1.0

    worker = make_worker(agent, store)
    try:
        with caplog.at_level(logging.WARNING, logger="workers.runner"):
            async with running(worker):
                before = await feeder.enqueue_rollout("before")
                await finished(feeder, [before.rollout_id])
                server.stop()
                await asyncio.sleep(2)
                server.start()  # same port, empty: the worker must reconnect by itself
                after = await feeder.enqueue_rollout("after")
                done = await finished(feeder, [after.rollout_id], timeout=30)
        assert done[after.rollout_id].status == "succeeded"
        claim_failures = [r.getMessage() for r in caplog.records if "claiming failed" in r.getMessage()]
        assert claim_failures and all("retrying in" in m for m in claim_failures)
        assert len(claim_failures) < 10, "the claim loop retried too eagerly"
    finally:
        await store.aclose()
        await feeder.aclose()


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lq-leases")]


async def test_lease_thread_ends_with_the_worker_and_closes_its_redis_connections(
    namespace: str, spare_redis: Any
) -> None:
    # A server of this test alone, so every connection on it is this worker's (or the probe's).
    store = RedisLightningStore(spare_redis.url, namespace=namespace, lease_seconds=LEASE, scan_debounce_seconds=0.3)
    probe = aioredis.Redis.from_url(spare_redis.url)

    @rollout
    async def agent(task: Any) -> float:
        await asyncio.sleep(3 * LEASE)
        return 1.0

    queued = await store.enqueue_rollout("x")
    try:
        async with running(worker := make_worker(agent, store)):
            await eventually(lambda: asyncio.sleep(0, worker.in_flight == 1), 5, "the rollout in flight")
            assert len(lease_threads()) == 1
            await finished(store, [queued.rollout_id])
        assert lease_threads() == []
        await store.aclose()

        async def only_the_probe_connected() -> bool:
            return len(await probe.client_list()) == 1

        await eventually(only_the_probe_connected, 5, "the worker's connections to close")
    finally:
        await store.aclose()
        await probe.aclose()


def test_lease_thread_ends_by_itself_once_its_workers_loop_is_gone(redis_url: str, namespace: str) -> None:
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=LEASE)
    keeper = LeaseKeeper(
        store, "w-gone", lease_seconds=LEASE, renew_seconds=0.1, sweep_seconds=0.1, on_lost=print, agent="a"
    )

    async def start() -> None:
        keeper.start()
        await asyncio.sleep(0.3)

    # The worker's loop ends without stopping the keeper (as if its process were tearing down).
    owner = threading.Thread(target=lambda: asyncio.run(start()))
    owner.start()
    owner.join(10)
    deadline = time.monotonic() + 5
    while keeper.alive and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not keeper.alive, "the lease thread outlived its worker's loop"


async def test_attempt_ended_elsewhere_cancels_the_agent_promptly(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    cancelled = asyncio.Event()

    @rollout
    async def agent(task: Any) -> float:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1.0

    queued = await observer.enqueue_rollout("x")
    worker = make_worker(agent, wstore)
    async with running(worker):
        await eventually(lambda: asyncio.sleep(0, worker.in_flight == 1), 5, "the rollout in flight")
        rollout_ = await observer.get_rollout_by_id(queued.rollout_id)
        await observer.update_attempt(queued.rollout_id, rollout_.attempt.attempt_id, status="failed")
        await asyncio.wait_for(cancelled.wait(), 5 * LEASE)
        await eventually(lambda: asyncio.sleep(0, worker.in_flight == 0), 5, "the worker to give the rollout up")
    assert worker.totals.lost == 1


async def test_max_rollouts_per_process_stops_claiming_finishes_in_flight_and_says_recycle(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any) -> float:
        await asyncio.sleep(0.3)
        return 1.0

    ids = [(await observer.enqueue_rollout(i)).rollout_id for i in range(3)]
    worker = make_worker(agent, wstore, concurrency=2, max_rollouts_per_process=2)
    totals = await asyncio.wait_for(worker.run(), 10)

    assert (totals.claimed, totals.succeeded, totals.released, totals.lost) == (2, 2, 0, 0)
    assert worker.recycle_reason == "it claimed max_rollouts_per_process=2 rollouts"
    statuses = [(await observer.get_rollout_by_id(rid)).status for rid in ids]
    assert sorted(statuses) == ["queuing", "succeeded", "succeeded"]


async def test_max_memory_mb_recycles_once_a_rollout_ended_not_before(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: Any) -> float:
        return 1.0

    ids = [(await observer.enqueue_rollout(i)).rollout_id for i in range(2)]
    # This process is far above 1 MB from the start: it still runs one rollout, then recycles.
    worker = make_worker(agent, wstore, max_memory_mb=1)
    totals = await asyncio.wait_for(worker.run(), 10)

    assert (totals.claimed, totals.succeeded) == (1, 1)
    assert worker.recycle_reason is not None and "is above max_memory_mb=1" in worker.recycle_reason
    assert sorted([(await observer.get_rollout_by_id(rid)).status for rid in ids]) == ["queuing", "succeeded"]


@pytest.mark.parametrize("value", [0, -3, 2.5, "10", True])
def test_recycling_limits_must_be_whole_numbers_of_at_least_one(value: Any, wstore: RedisLightningStore) -> None:
    @rollout
    def agent(task: Any) -> float:
        return 1.0

    for name in ("max_rollouts_per_process", "max_memory_mb"):
        with pytest.raises(ValueError, match=f"{name} must be a whole number of at least 1, or None; got {value!r}"):
            Worker(agent, wstore, **{name: value})


async def test_entry_whose_renewals_keep_failing_is_reported_lost_once_and_its_lease_keeps_aging() -> None:
    # Nothing listens on port 1: every renewal fails at once.
    url = "redis://127.0.0.1:1/0"
    dead = RedisLightningStore(url, lease_seconds=0.3, client_factory=lambda: aioredis.Redis.from_url(url))
    lost: list[tuple[str, str]] = []
    keeper = LeaseKeeper(
        dead, "w-cut-off", lease_seconds=0.3, renew_seconds=0.05, sweep_seconds=3600,
        on_lost=lambda entry, why: lost.append((entry, why)), agent="a",
    )  # fmt: skip
    keeper.start()
    keeper.hold("1-0")
    try:
        await eventually(lambda: asyncio.sleep(0, bool(lost)), 5, "the entry to be reported lost")
        await asyncio.sleep(0.3)
        assert lost == [("1-0", lost[0][1])] and "could not be renewed for 0.3s" in lost[0][1]
        # A result still being stored gives up once this passes the lease (rather than retry forever).
        assert keeper.since_renewed("1-0") > 0.5
    finally:
        await asyncio.to_thread(keeper.stop, 5)


async def test_child_forked_by_a_sync_agent_exits_where_it_returns_instead_of_running_the_worker(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    exits: list[int] = []

    @rollout
    def agent(task: Any) -> float:
        pid = os.fork()
        if pid == 0:
            return 2.0  # the child returns into the worker's thread pool, as if it were the parent
        deadline = time.monotonic() + 10
        while (status := os.waitpid(pid, os.WNOHANG)) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                raise RuntimeError("the forked child did not exit")
            time.sleep(0.02)
        exits.append(os.waitstatus_to_exitcode(status[1]))
        return 1.0

    queued = await observer.enqueue_rollout("x")
    async with running(make_worker(agent, wstore)):
        done = await finished(observer, [queued.rollout_id], timeout=20)

    assert done[queued.rollout_id].status == "succeeded" and exits == [0]
    assert find_final_reward((await observer.query_spans(queued.rollout_id)).items) == 1.0


@pytest.mark.parametrize("error", ["READONLY You can't write against a read only replica.", "TRYAGAIN later"])
async def test_a_failover_error_while_storing_the_result_is_retried_not_a_failed_attempt(
    wstore: RedisLightningStore, observer: RedisLightningStore, monkeypatch: pytest.MonkeyPatch, error: str
) -> None:
    from redis.exceptions import ReadOnlyError, TryAgainError

    kind = ReadOnlyError if error.startswith("READONLY") else TryAgainError
    real = wstore.leases.finish_many
    calls = 0

    async def failing_over(finishes: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # the primary fails over once, then the new one answers
            raise kind(error)
        return await real(finishes)

    monkeypatch.setattr(wstore.leases, "finish_many", failing_over)

    @rollout
    async def agent(task: Any) -> float:
        return 0.75

    queued = await observer.enqueue_rollout({"x": 1})
    async with running(make_worker(agent, wstore)):
        done = await finished(observer, [queued.rollout_id])
    assert done[queued.rollout_id].status == "succeeded" and calls == 2
    spans = (await observer.query_spans(queued.rollout_id, "latest")).items
    assert find_final_reward(spans) == 0.75


async def test_a_worker_whose_lease_thread_dies_stops_and_releases_instead_of_running_unrenewed(
    wstore: RedisLightningStore, observer: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a bug in the renewal path")

    monkeypatch.setattr(wstore.leases, "renew_leases", broken)
    started = asyncio.Event()

    @rollout
    async def agent(task: Any) -> float:
        started.set()
        await asyncio.sleep(30)
        return 1.0

    queued = await observer.enqueue_rollout({"x": 1})
    worker = make_worker(agent, wstore)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 10)
    await asyncio.wait_for(task, 10)  # it stopped by itself
    assert worker.failure == "its lease thread failed"
    rollout_now = await observer.get_rollout_by_id(queued.rollout_id)
    assert rollout_now is not None and rollout_now.status in ("requeuing", "queuing")
