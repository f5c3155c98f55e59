"""Issue 13's agents under `LitAgentRunner` store what they do under `lq worker` (tests/workers/test_ambient_tracing):
one set of result rules and the same default tracer, on `InMemoryLightningStore` and on the real Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lightning_queue import TracerTraceToTriplet, TraceToMessages, semconv
from lightning_queue.litagent import LitAgent
from lightning_queue.reward import find_final_reward
from lightning_queue.runner import LitAgentRunner
from lightning_queue.store.base import LightningStore
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import Rollout, Span
from tests.workers.test_ambient_tracing import (
    ChartAgent,
    ReturnsItsTrace,
    calc_async,
    calc_sync,
    otel_api,
    room_selector,
)


@pytest.fixture(params=["in_memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def step(agent: LitAgent[Any], store: LightningStore, task: Any) -> tuple[Rollout, list[Span]]:
    runner = LitAgentRunner[Any]()
    with runner.run_context(agent=agent, store=store):
        done = await runner.step(task)
    return done, list((await store.query_spans(done.rollout_id)).items)


@pytest.mark.parametrize("agent", [calc_sync, calc_async], ids=["sync", "async"])
async def test_an_agent_that_emits_its_reward_and_returns_none_stores_it(agent: LitAgent[Any], store) -> None:
    done, spans = await step(agent, store, {"answer": 4})
    assert done.status == "succeeded"
    assert [(s.name, s.sequence_id) for s in spans] == [(semconv.SPAN_ANNOTATION, 1)]
    assert find_final_reward(spans) == 1.0
    _, wrong = await step(agent, store, {"answer": 5})
    assert find_final_reward(wrong) == 0.0


async def test_spans_made_with_the_opentelemetry_api_are_stored(store) -> None:
    done, spans = await step(otel_api, store, "x")
    assert done.status == "succeeded"
    assert [s.name for s in spans] == ["tool", "plan", semconv.SPAN_ANNOTATION]  # ended first, stored first
    tool, plan, _ = spans
    assert tool.parent_id == plan.span_id and plan.attributes["step"] == 1


async def test_an_agent_calling_openai_directly_stores_the_conversation_and_yields_triplets(store) -> None:
    async with StandInModelServer(["the room is 101"]) as model:
        done, spans = await step(room_selector(model), store, "the meeting")
    assert done.status == "succeeded" and find_final_reward(spans) == 1.0
    [chat] = [s for s in spans if s.attributes.get("gen_ai.operation.name") == "chat"]
    assert "pick a room for the meeting" in chat.attributes["gen_ai.input.messages"]
    assert "the room is 101" in json.dumps(chat.attributes["gen_ai.output.messages"])
    [conversation] = TraceToMessages().adapt(spans)
    assert conversation["messages"][-1] == {"role": "assistant", "content": "the room is 101"}
    [triplet] = TracerTraceToTriplet().adapt(spans)
    assert "the room is 101" in json.dumps(triplet.response, default=str)
    assert triplet.reward == 1.0


async def test_a_litagent_reads_its_trace_through_self_tracer(store) -> None:
    done, spans = await step(ChartAgent(), store, "trace")
    assert done.status == "succeeded" and find_final_reward(spans) == 1.0


async def test_a_litagent_using_a_langchain_handler_stores_the_chain_spans(store) -> None:
    pytest.importorskip("langchain_core")
    done, spans = await step(ChartAgent(), store, "langchain")
    assert done.status == "succeeded"
    assert [s.name for s in spans] == [semconv.SPAN_MESSAGE, semconv.SPAN_ANNOTATION, "langchain.chain.RunnableLambda"]


async def test_an_agent_returning_its_own_trace_and_a_reward_stores_each_span_once(store) -> None:
    _, spans = await step(ReturnsItsTrace(), store, "x")
    assert [s.name for s in spans] == [semconv.SPAN_MESSAGE, semconv.SPAN_ANNOTATION, semconv.SPAN_ANNOTATION]
    assert find_final_reward(spans) == 0.9
