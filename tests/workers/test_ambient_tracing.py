"""A worker traces each rollout: emitted, OpenTelemetry-API and instrumented OpenAI spans are stored with
their attempt (issue 13's silent losses), on the real redis-server."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any

import opentelemetry.trace as otel
import pytest
from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore, RolloutConfig, TracerTraceToTriplet, TraceToMessages, semconv
from lightning_queue.emitter import emit_message, emit_reward
from lightning_queue.litagent import LitAgent, rollout
from lightning_queue.reward import find_final_reward, find_reward_spans
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import AttemptedRollout, Span, SpanCoreFields
from tests.lightning_queue.tracer.test_tracer import Gate
from tests.workers.test_runner import LEASE, finished, make_worker, running


@pytest.fixture
async def wstore(redis_url: str, namespace: str) -> AsyncIterator[RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=namespace, lease_seconds=LEASE, scan_debounce_seconds=LEASE / 2)
    yield store
    await store.aclose()


async def run_one(
    agent: LitAgent[Any], wstore: RedisLightningStore, observer: RedisLightningStore, task: Any = "x", **kwargs: Any
) -> tuple[Any, list[Span]]:
    queued = await observer.enqueue_rollout(task)
    async with running(make_worker(agent, wstore, **kwargs)):
        done = await finished(observer, [queued.rollout_id])
    spans = list(await observer.query_spans(queued.rollout_id))
    return done[queued.rollout_id], spans


@rollout
def calc_sync(task: Any) -> None:
    emit_reward(float(task["answer"] == 4))


@rollout
async def calc_async(task: Any) -> None:
    emit_reward(float(task["answer"] == 4))


@pytest.mark.parametrize("agent", [calc_sync, calc_async], ids=["sync", "async"])
async def test_an_agent_that_emits_its_reward_and_returns_none_stores_it(
    agent: LitAgent[Any], wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    done, spans = await run_one(agent, wstore, observer, {"answer": 4})
    assert done.status == "succeeded"
    assert [(s.name, s.sequence_id) for s in spans] == [(semconv.SPAN_ANNOTATION, 1)]
    assert find_final_reward(spans) == 1.0


@rollout
def emits_and_returns(task: Any) -> Any:
    span = emit_reward(0.5)
    return [span] if task == "span" else 0.5


@pytest.mark.parametrize("task", ["span", "float"])
async def test_a_reward_emitted_and_returned_too_is_stored_once(
    task: str, wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    _, spans = await run_one(emits_and_returns, wstore, observer, task)
    assert len(find_reward_spans(spans)) == 1 and find_final_reward(spans) == 0.5


@rollout
def mixed(task: Any) -> Any:
    emit_message("thinking")
    return [SpanCoreFields(name="answer", attributes={"text": "4"}), 0.75]


async def test_a_mixed_list_of_spans_and_a_reward_is_stored_after_the_traced_spans(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    done, spans = await run_one(mixed, wstore, observer)
    assert done.status == "succeeded"
    assert [(s.name, s.sequence_id) for s in spans] == [
        (semconv.SPAN_MESSAGE, 1),
        ("answer", 2),
        (semconv.SPAN_ANNOTATION, 3),
    ]
    assert find_final_reward(spans) == 0.75


@rollout
def otel_api(task: Any) -> float:
    tracer = otel.get_tracer("my.agent")
    with tracer.start_as_current_span("plan", attributes={"step": 1}):
        with tracer.start_as_current_span("tool"):
            pass
    return 1.0


async def test_spans_made_with_the_opentelemetry_api_land_in_the_attempt(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    done, spans = await run_one(otel_api, wstore, observer)
    names = [s.name for s in spans]
    assert names == ["tool", "plan", semconv.SPAN_ANNOTATION]
    plan, tool = spans[1], spans[0]
    assert tool.parent_id == plan.span_id and plan.attributes == {"step": 1}
    assert {s.attempt_id for s in spans} == {done.attempt.attempt_id}


@rollout
def no_reward(task: Any) -> None:
    emit_message("forgot the reward")


async def test_a_rollout_with_no_reward_logs_a_warning_naming_it(
    wstore: RedisLightningStore, observer: RedisLightningStore, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="lightning_queue.litagent.results"):
        done, spans = await run_one(no_reward, wstore, observer)
    assert done.status == "succeeded" and [s.name for s in spans] == [semconv.SPAN_MESSAGE]
    assert f"rollout {done.rollout_id} attempt {done.attempt.attempt_id} ended with no reward" in caplog.text


@rollout
async def emits_then_raises(task: Any) -> None:
    emit_reward(0.3)
    with otel.get_tracer("t").start_as_current_span("half-done"):
        raise RuntimeError("tool crashed")


async def test_an_agent_failing_after_emitting_keeps_its_spans_and_fails_the_attempt(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    done, spans = await run_one(emits_then_raises, wstore, observer)
    assert done.status == "failed"
    assert [s.name for s in spans] == [semconv.SPAN_ANNOTATION, "half-done", semconv.SPAN_EXCEPTION]
    assert [s.sequence_id for s in spans] == [1, 2, 3]
    assert spans[1].status.status_code == "ERROR"
    assert done.attempt.metadata["error"]["message"] == "tool crashed"


def _marks(spans: list[Span]) -> set[str]:
    return {str(s.attributes["mark"]) for s in spans if "mark" in s.attributes}


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_concurrent_rollouts_in_one_worker_each_get_only_their_own_spans(
    kind: str, wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    # Both agents are inside their rollouts at once before either emits: their spans interleave in time.
    async_gate, sync_gate = Gate(2), threading.Barrier(2, timeout=5)

    def body(task: dict[str, Any]) -> None:
        with otel.get_tracer("t").start_as_current_span("work", attributes={"mark": task["mark"]}):
            emit_message(task["mark"], attributes={"mark": task["mark"]})
        emit_reward(float(task["value"]))

    @rollout
    async def agent_async(task: dict[str, Any]) -> None:
        await async_gate.wait()
        body(task)
        await async_gate.wait()

    @rollout
    def agent_sync(task: dict[str, Any]) -> None:
        sync_gate.wait()
        body(task)
        sync_gate.wait()

    agent = agent_async if kind == "async" else agent_sync
    a = await observer.enqueue_rollout({"mark": "a", "value": 1.0})
    b = await observer.enqueue_rollout({"mark": "b", "value": 0.0})
    async with running(make_worker(agent, wstore, concurrency=2)):
        done = await finished(observer, [a.rollout_id, b.rollout_id])
    for queued, mark, value in ((a, "a", 1.0), (b, "b", 0.0)):
        spans = list(await observer.query_spans(queued.rollout_id))
        assert done[queued.rollout_id].status == "succeeded"
        assert _marks(spans) == {mark} and len(spans) == 3
        assert find_final_reward(spans) == value
        assert sorted(s.sequence_id for s in spans) == [1, 2, 3]


def room_selector(model: StandInModelServer) -> LitAgent[Any]:
    """The room-selector shape: the OpenAI client called directly (no proxy), the reward emitted."""

    @rollout
    async def agent(task: Any) -> None:
        client = AsyncOpenAI(base_url=model.url, api_key="none", max_retries=0, timeout=10.0)
        reply = await client.chat.completions.create(
            model=model.model, messages=[{"role": "user", "content": f"pick a room for {task}"}]
        )
        emit_reward(float("101" in (reply.choices[0].message.content or "")))

    return agent


async def test_an_agent_calling_openai_directly_stores_the_conversation(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    async with StandInModelServer(["the room is 101"]) as model:
        done, spans = await run_one(room_selector(model), wstore, observer, "the meeting")
    assert done.status == "succeeded" and find_final_reward(spans) == 1.0
    [chat] = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert chat.attempt_id == done.attempt.attempt_id and chat.sequence_id == 1
    inputs = json.loads(chat.attributes["gen_ai.input.messages"])
    outputs = json.loads(chat.attributes["gen_ai.output.messages"])
    assert inputs[0]["role"] == "user" and "pick a room for the meeting" in json.dumps(inputs)
    assert "the room is 101" in json.dumps(outputs)
    # What prompt optimisation and fine-tuning read:
    [conversation] = TraceToMessages().adapt(spans)
    assert conversation["messages"][-1] == {"role": "assistant", "content": "the room is 101"}
    [triplet] = TracerTraceToTriplet().adapt(spans)
    assert "the room is 101" in json.dumps(triplet.response, default=str) and triplet.reward == 1.0


class ChartAgent(LitAgent[Any]):
    """The spider/chartqa shape: `self.tracer` inside the rollout."""

    def rollout(self, task: Any, resources: Any, rollout: AttemptedRollout) -> None:
        emit_message("step one")
        seen = [s.name for s in self.tracer.get_last_trace()]
        emit_reward(float(seen == [semconv.SPAN_MESSAGE]))
        if task == "langchain":
            handler = self.tracer.get_langchain_handler()
            from langchain_core.runnables import RunnableLambda

            RunnableLambda(lambda x: x + 1).invoke(1, config={"callbacks": [handler]})


async def test_a_litagent_reads_its_trace_through_self_tracer(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    done, spans = await run_one(ChartAgent(), wstore, observer, "trace")
    assert done.status == "succeeded" and find_final_reward(spans) == 1.0


async def test_a_litagent_using_a_langchain_handler_stores_the_chain_spans(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    pytest.importorskip("langchain_core")
    done, spans = await run_one(ChartAgent(), wstore, observer, "langchain")
    assert done.status == "succeeded"
    assert [s.name for s in spans] == [semconv.SPAN_MESSAGE, semconv.SPAN_ANNOTATION, "langchain.chain.RunnableLambda"]


async def test_a_litagent_asking_for_a_langchain_handler_without_langchain_fails_saying_what_to_install(
    wstore: RedisLightningStore, observer: RedisLightningStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "langchain_core.callbacks.base", None)  # as if it were not installed
    done, spans = await run_one(ChartAgent(), wstore, observer, "langchain")
    assert done.status == "failed"
    assert "pip install langchain-core" in done.attempt.metadata["error"]["message"]
    assert find_final_reward(spans) == 1.0  # what it emitted before failing is kept


class ReturnsItsTrace(LitAgent[Any]):
    def rollout(self, task: Any, resources: Any, rollout: AttemptedRollout) -> Any:
        emit_message("once")
        emit_reward(0.2)
        return [*self.tracer.get_last_trace(), 0.9]


async def test_an_agent_returning_its_own_trace_stores_each_span_once_and_the_returned_reward_last(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    _, spans = await run_one(ReturnsItsTrace(), wstore, observer)
    assert [s.name for s in spans] == [semconv.SPAN_MESSAGE, semconv.SPAN_ANNOTATION, semconv.SPAN_ANNOTATION]
    assert find_final_reward(spans) == 0.9


async def test_spans_of_a_sync_agent_still_running_after_its_timeout_are_dropped_not_misfiled(
    wstore: RedisLightningStore, observer: RedisLightningStore
) -> None:
    released, emitted = threading.Event(), threading.Event()

    @rollout
    def slow(task: Any) -> None:
        if task == "slow":
            released.wait(5)
            emit_message("late")  # its attempt is already stored as timed out
            emitted.set()
        else:
            released.set()
            emitted.wait(5)  # the late span is made while this rollout runs in the same worker
            emit_reward(1.0)

    late = await observer.enqueue_rollout("slow", config=RolloutConfig(timeout_seconds=0.5))
    async with running(make_worker(slow, wstore, concurrency=2)):
        await finished(observer, [late.rollout_id])
        quick = await observer.enqueue_rollout("quick")
        await finished(observer, [quick.rollout_id])
    late_spans = list(await observer.query_spans(late.rollout_id))
    quick_spans = list(await observer.query_spans(quick.rollout_id))
    assert [s.name for s in late_spans] == [semconv.SPAN_EXCEPTION]
    assert [s.name for s in quick_spans] == [semconv.SPAN_ANNOTATION]
    assert emitted.is_set()
