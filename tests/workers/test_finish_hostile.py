"""Hostile results through a real Worker: odd sequence ids, emitted-then-returned spans, huge traces,
lost replies, flushed scripts, and attempts ended or deleted behind the worker's back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from lightning_queue import LLM, RedisLightningStore
from lightning_queue.emitter import emit_annotation, emit_reward
from lightning_queue.litagent import Hook, rollout
from lightning_queue.reward import find_final_reward
from lightning_queue.types import AttemptedRollout, Span, SpanCoreFields
from tests.support.pools import eventually
from tests.workers.test_runner import finished, make_worker, running, wstore
from workers.resources_cache import ResourcesCache

__all__ = ["wstore"]  # the fixture, shared with test_runner


def _span(name: str, seq: int) -> Span:
    return Span.from_core_fields(SpanCoreFields(name=name), rollout_id="", attempt_id="", sequence_id=seq)


class _Watching(Hook):
    """A hook that only looks: its presence makes the worker reserve sequence ids before the finish."""

    def __init__(self) -> None:
        self.ended = 0

    async def on_rollout_end(self, **kwargs: Any) -> None:
        self.ended += 1


@rollout
async def _odd_ids(task: int) -> list[Any]:
    emit_reward(0.25)
    return [_span("zero", 0), _span("neg", -5), _span("three", 3), SpanCoreFields(name="core"), _span("neg2", -1), 0.5]


async def _run_one(
    agent: Any, wstore: RedisLightningStore, observer: RedisLightningStore, **kwargs: Any
) -> tuple[str, list[Span], Any]:
    rid = (await observer.enqueue_rollout(1)).rollout_id
    worker = make_worker(agent, wstore, **kwargs)
    async with running(worker):
        await finished(observer, [rid])
    return rid, (await observer.query_spans(rid)).items, worker.totals


@pytest.mark.parametrize("hooks", [0, 1], ids=["no-hooks", "hooks"])
async def test_returned_spans_with_zero_negative_and_explicit_ids_get_the_counters_ids_with_or_without_hooks(
    wstore: RedisLightningStore, observer: RedisLightningStore, hooks: int
) -> None:
    # Fresh ids come from the counter in the order traced-then-returned, as a reservation gave them; an
    # explicit id is kept (here it ties with a fresh one: ordered by span id). With hooks the ids are
    # reserved before the finish, without them the finish script numbers the spans: the same trace.
    watching = [_Watching() for _ in range(hooks)]
    _rid, spans, totals = await _run_one(_odd_ids, wstore, observer, hooks=watching)

    trace = [(s.name, s.sequence_id) for s in spans]
    by_name = {s.name: s.sequence_id for s in spans if not s.name.startswith("agentlightning")}
    assert by_name == {"zero": 2, "neg": 3, "three": 3, "core": 4, "neg2": 5}, trace
    assert sorted(s.sequence_id for s in spans if s.name.startswith("agentlightning")) == [1, 6], trace
    assert find_final_reward(spans) == 0.5
    assert totals.succeeded == 1
    assert all(w.ended == 1 for w in watching)


async def test_a_reward_emitted_before_returning_none_is_stored_once(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: int) -> None:
        emit_reward(0.75)
        emit_reward(0.5)

    _rid, spans, totals = await _run_one(agent, wstore, observer)

    assert [s.sequence_id for s in spans] == [1, 2]
    assert find_final_reward(spans) == 0.5
    assert totals.succeeded == 1


async def test_five_thousand_returned_spans_are_all_stored_in_order(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: int) -> list[Any]:
        return [*(SpanCoreFields(name=f"s{i}") for i in range(5000)), 1.0]

    rid, spans, totals = await _run_one(agent, wstore, observer)

    assert [s.name for s in spans[:-1]] == [f"s{i}" for i in range(5000)]
    assert [s.sequence_id for s in spans] == list(range(1, 5002))
    assert find_final_reward(spans) == 1.0
    assert totals.succeeded == 1 and totals.lost == 0
    assert (await observer.query_spans(rid, limit=1, offset=4999)).items[0].name == "s4999"


async def test_a_finish_applied_whose_reply_was_lost_is_resent_and_counted_once(
    wstore: RedisLightningStore, observer: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wstore.transitions.finish_many
    calls = 0

    async def reply_lost(requests: Any) -> Any:
        nonlocal calls
        calls += 1
        replies = await real(requests)
        if calls == 1:
            raise RedisConnectionError("Connection closed by server (after the scripts ran)")
        return replies

    monkeypatch.setattr(wstore.transitions, "finish_many", reply_lost)

    @rollout
    async def agent(task: int) -> list[Any]:
        emit_reward(0.5)
        return [SpanCoreFields(name="a"), SpanCoreFields(name="b")]

    rid, spans, totals = await _run_one(agent, wstore, observer)

    assert calls == 2
    assert [s.name for s in spans] == ["agentlightning.annotation", "a", "b"]
    assert totals.succeeded == 1 and totals.lost == 0
    rollout_ = await observer.get_rollout_by_id(rid)
    assert rollout_ is not None and rollout_.status == "succeeded"
    assert await observer.pending_entries() == 0


async def test_scripts_flushed_while_the_agent_runs_do_not_lose_its_result(
    wstore: RedisLightningStore, observer: RedisLightningStore, redis_url: str
) -> None:
    @rollout
    async def agent(task: int) -> float:
        await observer._redis.script_flush()
        return 0.5

    _rid, spans, totals = await _run_one(agent, wstore, observer)

    assert find_final_reward(spans) == 0.5
    assert totals.succeeded == 1 and totals.lost == 0


async def test_an_attempt_failed_by_hand_while_running_is_counted_lost_and_stores_nothing(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: int, rollout: AttemptedRollout) -> float:
        await observer.update_attempt(rollout.rollout_id, rollout.attempt.attempt_id, status="failed")
        return 0.5

    rid = (await observer.enqueue_rollout(1)).rollout_id
    worker = make_worker(agent, wstore)
    async with running(worker):
        await finished(observer, [rid])
        await eventually(_probe(lambda: worker.totals.lost == 1), 5, "the loss counted")

    assert (await observer.query_spans(rid)).items == []
    assert worker.totals.succeeded == 0
    rollout_ = await observer.get_rollout_by_id(rid)
    assert rollout_ is not None and rollout_.status == "failed"


async def test_a_rollout_ended_and_deleted_while_running_is_counted_lost(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: int, rollout: AttemptedRollout) -> float:
        await observer.update_attempt(rollout.rollout_id, rollout.attempt.attempt_id, status="failed")
        assert await observer.delete_rollouts([rollout.rollout_id]) == 1
        return 0.5

    rid = (await observer.enqueue_rollout(1)).rollout_id
    worker = make_worker(agent, wstore)
    async with running(worker):
        await eventually(_probe(lambda: worker.totals.claimed == 1 and worker.in_flight == 0), 5, "the rollout left")
        totals = worker.totals
        assert await observer.get_rollout_by_id(rid) is None

    assert (totals.succeeded, totals.failed, totals.lost) == (0, 0, 1)


def _probe(condition: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return condition()

    return probe


async def test_a_lease_lost_while_the_finish_is_in_flight_is_counted_lost_and_stores_nothing(
    wstore: RedisLightningStore, observer: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = wstore.transitions.finish_many

    async def reclaimed_first(requests: Any) -> Any:
        for request in requests:  # the watchdog wins the race with the batch
            await observer.release(request.rollout_id, request.attempt_id)
        return await real(requests)

    monkeypatch.setattr(wstore.transitions, "finish_many", reclaimed_first)

    @rollout
    async def agent(task: int) -> float:
        emit_reward(0.5)
        return 0.5

    rid = (await observer.enqueue_rollout(1)).rollout_id
    worker = make_worker(agent, wstore, max_rollouts=1)
    async with running(worker) as task:
        await asyncio.wait_for(task, 5)

    assert (worker.totals.succeeded, worker.totals.lost) == (0, 1)
    assert (await observer.query_spans(rid)).items == []
    [attempt] = await observer.query_attempts(rid)
    assert attempt.status == "unresponsive"


async def test_claims_of_one_resources_snapshot_read_it_once_even_after_it_changed_in_between(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    await observer.update_resources("res-1", {"llm": LLM(endpoint="http://a", model="m1")})
    await observer.enqueue_rollout(1)
    [first] = await wstore.claim(consumer="w1", worker_id="w1", count=1, block_ms=100)
    # Updated between the claim and the read: the read finds the newer version.
    await observer.update_resources("res-1", {"llm": LLM(endpoint="http://b", model="m2")})
    cache = ResourcesCache(wstore)

    got = await cache.for_claim(first)

    assert got is not None and got.resources["llm"].model == "m2"  # type: ignore[attr-defined]
    for i in range(3):
        await observer.enqueue_rollout(i)
    later = await wstore.claim(consumer="w1", worker_id="w1", count=3, block_ms=100)
    assert len(later) == 3 and {c.resources for c in later} == {later[0].resources}
    for claim in later:
        update = await cache.for_claim(claim)
        assert update is not None and update.resources["llm"].model == "m2"  # type: ignore[attr-defined]
    assert cache.reads == 1  # the claim's (id, version, update time) equals the snapshot's as read


async def test_a_pinned_snapshot_that_does_not_exist_fails_the_attempt_saying_so(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    await observer.update_resources("res-1", {"llm": LLM(endpoint="http://a", model="m1")})
    rid = (await observer.enqueue_rollout(1, resources_id="res-1")).rollout_id
    await observer._redis.delete(observer.keys.resources("res-1"))  # a careless cleanup

    @rollout
    async def agent(task: int) -> float:
        return 1.0

    worker = make_worker(agent, wstore)
    async with running(worker):
        done = await finished(observer, [rid])

    assert done[rid].status == "failed"
    attempt = await observer.get_latest_attempt(rid)
    assert attempt is not None and "res-1" in str(attempt.metadata)


async def test_spans_emitted_and_returned_too_are_stored_once_in_emitted_order(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    @rollout
    async def agent(task: int) -> list[Any]:
        note = emit_annotation({"step": 1})
        reward = emit_reward(0.5)
        return [reward, SpanCoreFields(name="extra"), note, 0.5]

    _rid, spans, totals = await _run_one(agent, wstore, observer)

    assert [s.sequence_id for s in spans] == [1, 2, 3]
    assert [s.name for s in spans][-1] == "extra"
    assert find_final_reward(spans) == 0.5
    assert totals.succeeded == 1


@rollout
async def _emits_then_returns_a_numbered_reward(task: int) -> list[Any]:
    emit_reward(0.1)  # a first guess, traced while running
    final = Span.from_core_fields(emit_reward(0.9, propagate=False), rollout_id="", attempt_id="", sequence_id=5)
    return [final]


@pytest.mark.parametrize(
    "hooks",
    [
        pytest.param([], id="no-hooks"),
        pytest.param([_Watching()], id="hooks"),
    ],
)
async def test_a_returned_reward_with_an_explicit_id_stays_final_over_one_traced_earlier(
    wstore: RedisLightningStore, observer: RedisLightningStore, hooks: list[Hook]
) -> None:
    _rid, spans, _totals = await _run_one(_emits_then_returns_a_numbered_reward, wstore, observer, hooks=hooks)

    assert find_final_reward(spans) == 0.9, [(s.sequence_id, s.attributes) for s in spans]


async def test_an_unexpected_error_storing_the_result_is_logged_and_the_rollout_given_back(
    wstore: RedisLightningStore,
    observer: RedisLightningStore,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def busy(requests: Any) -> Any:
        # Per request, as a pipeline reports it; not a connection error, not a refusal of the result.
        return [ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL")] * len(requests)

    monkeypatch.setattr(wstore.transitions, "finish_many", busy)

    @rollout
    async def agent(task: int) -> float:
        return 0.5

    rid = (await observer.enqueue_rollout(1)).rollout_id
    worker = make_worker(agent, wstore, max_rollouts=1)
    async with running(worker) as task:
        await asyncio.wait_for(task, 5)

    assert worker.totals.released == 1
    assert any("BUSY" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    [attempt] = await observer.query_attempts(rid)
    assert attempt.status == "unresponsive"  # not left `preparing` until its lease lapses
