"""From calls through the proxy to training data: triplets with the upstream's token ids and the rewards."""

from __future__ import annotations

from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.adapter import LlmProxyTraceToTriplet, TraceToMessages, emit_reward, find_final_reward
from lightning_queue.testing import Reply, StandInModelServer, ToolCall, encode
from lightning_queue.types import AttemptedRollout, Span
from tests.support.proxy import MODEL


async def add_reward(store: RedisLightningStore, attempt: AttemptedRollout, value: float) -> None:
    rid, aid = attempt.rollout_id, attempt.attempt.attempt_id
    sequence_id = await store.get_next_span_sequence_id(rid, aid)
    await store.add_span(
        Span.from_core_fields(emit_reward(value), rollout_id=rid, attempt_id=aid, sequence_id=sequence_id)
    )


async def test_calls_and_rewards_of_an_attempt_become_triplets(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    first = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "first"}])
    await add_reward(store, attempt, 0.25)
    stream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "second"}], stream=True
    )
    second_id = {chunk.id async for chunk in stream}.pop()
    await add_reward(store, attempt, 1.0)

    spans = list(await store.query_spans(attempt.rollout_id, "latest"))
    triplets = LlmProxyTraceToTriplet().adapt(spans)

    assert [t.metadata["response_id"] for t in triplets] == [first.id, second_id]
    assert [t.reward for t in triplets] == [0.25, 1.0]
    assert triplets[1].response["token_ids"] == encode("You said: second")
    assert triplets[0].prompt["token_ids"] == spans[0].attributes["prompt_token_ids"]
    assert find_final_reward(spans) == 1.0


async def test_proxy_spans_read_back_as_openai_conversations(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout, stand_in: StandInModelServer
) -> None:
    stand_in.script(Reply(tool_calls=(ToolCall("lookup", {"q": "x"}, id="c1"),)))
    tool = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "find x"}], tools=[tool])  # type: ignore[list-item]

    [conversation] = TraceToMessages().adapt(list(await store.query_spans(attempt.rollout_id)))
    assert conversation["messages"] == [
        {"role": "user", "content": "find x"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": '{"q": "x"}'}}],
        },
    ]
    assert conversation["tools"] == [
        {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}
    ]
