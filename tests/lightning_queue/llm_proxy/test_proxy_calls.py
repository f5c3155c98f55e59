"""The official openai client, pointed at `as_resource()` URLs, works unchanged; each call is one span."""

from __future__ import annotations

import asyncio
import json

from openai import AsyncOpenAI

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import LLMProxy
from lightning_queue.testing import Reply, StandInModelServer, ToolCall, encode, render_chat
from lightning_queue.types import AttemptedRollout, Span
from tests.support.proxy import MODEL, client_of

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def spans_of(store: RedisLightningStore, attempt: AttemptedRollout) -> list[Span]:
    return list(await store.query_spans(attempt.rollout_id, attempt.attempt.attempt_id))


async def test_chat_call_is_one_span_of_its_attempt_with_genai_attributes_and_token_ids(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello there"}]
    answer = await client.chat.completions.create(model=MODEL, messages=messages, temperature=0.5, max_tokens=50)  # type: ignore[arg-type]

    assert answer.choices[0].message.content == "You said: hello there"
    [span] = await spans_of(store, attempt)
    attrs = span.attributes
    assert (span.rollout_id, span.attempt_id, span.sequence_id) == (attempt.rollout_id, attempt.attempt.attempt_id, 1)
    assert span.name == "openai.chat.completion" and span.status.status_code == "OK"
    assert attrs["gen_ai.request.model"] == MODEL
    assert attrs["gen_ai.request.temperature"] == 0.5 and attrs["gen_ai.request.max_tokens"] == 50
    assert attrs["gen_ai.prompt.0.role"] == "system" and attrs["gen_ai.prompt.1.content"] == "hello there"
    assert attrs["gen_ai.completion.0.content"] == "You said: hello there"
    assert attrs["gen_ai.completion.0.finish_reason"] == "stop"
    assert attrs["gen_ai.response.id"] == answer.id
    assert attrs["prompt_token_ids"] == encode(render_chat(messages))
    assert attrs["response_token_ids"] == encode("You said: hello there")
    assert attrs["gen_ai.usage.prompt_tokens"] == len(attrs["prompt_token_ids"])
    assert attrs["gen_ai.usage.completion_tokens"] == len(attrs["response_token_ids"])
    assert attrs["llm.is_streaming"] is False and attrs["lq.proxy.latency_ms"] >= 0
    assert span.start_time is not None and span.end_time is not None and span.start_time <= span.end_time
    assert span.resource.attributes["agentlightning.rollout_id"] == attempt.rollout_id


async def test_text_completion_call_is_recorded(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    answer = await client.completions.create(model=MODEL, prompt="two plus two")

    assert answer.choices[0].text == "You said: two plus two"
    [span] = await spans_of(store, attempt)
    assert span.name == "openai.completion"
    assert span.attributes["gen_ai.prompt.0.content"] == "two plus two"
    assert span.attributes["prompt_token_ids"] == encode("two plus two")
    assert span.attributes["response_token_ids"] == encode("You said: two plus two")


async def test_streamed_chat_reaches_the_client_in_chunks_and_records_the_same_as_a_plain_call(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    messages = [{"role": "user", "content": "count to three please"}]
    plain = await client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]
    stream = await client.chat.completions.create(model=MODEL, messages=messages, stream=True)  # type: ignore[arg-type]
    pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]

    assert len([p for p in pieces if p]) == len(encode("You said: count to three please"))
    assert "".join(p or "" for p in pieces) == plain.choices[0].message.content
    first, second = await spans_of(store, attempt)
    assert (first.sequence_id, second.sequence_id) == (1, 2)
    assert second.attributes["llm.is_streaming"] is True
    for key in ("prompt_token_ids", "response_token_ids", "gen_ai.completion.0.content", "gen_ai.usage.total_tokens"):
        assert second.attributes[key] == first.attributes[key], key
    assert second.attributes["lq.proxy.time_to_first_chunk_ms"] >= 0


async def test_streamed_text_completion_keeps_its_token_ids(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    stream = await client.completions.create(model=MODEL, prompt="stream me", stream=True)
    text = "".join([chunk.choices[0].text async for chunk in stream if chunk.choices])

    assert text == "You said: stream me"
    [span] = await spans_of(store, attempt)
    assert span.attributes["response_token_ids"] == encode(text)
    assert span.attributes["prompt_token_ids"] == encode("stream me")


async def test_tool_definitions_and_tool_calls_are_recorded_plain_and_streamed(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout, stand_in: StandInModelServer
) -> None:
    call = ToolCall("get_weather", {"city": "Paris"}, id="call_w1")
    stand_in.script(Reply(tool_calls=(call,)), Reply(content="Let me check.", tool_calls=(call,)))
    messages = [{"role": "user", "content": "weather in Paris?"}]

    plain = await client.chat.completions.create(model=MODEL, messages=messages, tools=[WEATHER_TOOL])  # type: ignore[arg-type,list-item]
    stream = await client.chat.completions.create(
        model=MODEL,
        messages=messages,  # type: ignore[arg-type]
        tools=[WEATHER_TOOL],  # type: ignore[list-item]
        stream=True,
    )
    arguments = "".join(
        [
            chunk.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[union-attr]
            async for chunk in stream
            if chunk.choices and chunk.choices[0].delta.tool_calls
        ]
    )

    tool_call = plain.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert tool_call.function.name == "get_weather" and json.loads(tool_call.function.arguments) == {"city": "Paris"}  # type: ignore[union-attr]
    assert json.loads(arguments) == {"city": "Paris"}
    for span in await spans_of(store, attempt):
        attrs = span.attributes
        assert attrs["llm.request.functions.0.name"] == "get_weather"
        assert json.loads(attrs["llm.request.functions.0.parameters"])["properties"]["city"] == {"type": "string"}
        assert attrs["gen_ai.completion.0.tool_calls.0.id"] == "call_w1"
        assert attrs["gen_ai.completion.0.tool_calls.0.name"] == "get_weather"
        assert json.loads(attrs["gen_ai.completion.0.tool_calls.0.arguments"]) == {"city": "Paris"}
        assert attrs["gen_ai.completion.0.finish_reason"] == "tool_calls"
        assert attrs["response_token_ids"]


async def test_tool_results_in_the_prompt_are_recorded(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    messages = [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "cold"},
    ]
    await client.chat.completions.create(model=MODEL, messages=messages)  # type: ignore[arg-type]

    [span] = await spans_of(store, attempt)
    attrs = span.attributes
    assert attrs["gen_ai.prompt.1.tool_calls.0.name"] == "get_weather"
    assert attrs["gen_ai.prompt.1.tool_calls.0.arguments"] == '{"city":"Oslo"}'
    assert attrs["gen_ai.prompt.2.tool_call_id"] == "c1" and attrs["gen_ai.prompt.2.content"] == "cold"


async def test_calls_of_two_attempts_land_under_their_own_ids_with_increasing_sequence_ids(
    proxy: LLMProxy, store: RedisLightningStore
) -> None:
    first = await store.start_rollout(input=1)
    second = await store.start_rollout(input=2)
    for attempt in (first, second, first):
        async with client_of(proxy, attempt) as client:
            await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": attempt.rollout_id}]
            )

    spans_first = await spans_of(store, first)
    [span_second] = await spans_of(store, second)
    assert [s.sequence_id for s in spans_first] == [1, 2]
    assert all(s.attributes["gen_ai.prompt.0.content"] == first.rollout_id for s in spans_first)
    assert span_second.attributes["gen_ai.prompt.0.content"] == second.rollout_id


async def test_concurrent_calls_of_one_attempt_get_distinct_sequence_ids(
    client: AsyncOpenAI, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    await asyncio.gather(
        *(
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": str(i)}])
            for i in range(12)
        )
    )
    spans = await spans_of(store, attempt)
    assert sorted(s.sequence_id for s in spans) == list(range(1, 13))


async def test_proxy_llm_resource_resolves_to_the_attempt_url(
    proxy: LLMProxy, store: RedisLightningStore, attempt: AttemptedRollout
) -> None:
    resource = proxy.as_resource(sampling_parameters={"temperature": 0.2})
    llm = resource.with_attempted_rollout(attempt)  # type: ignore[attr-defined]
    async with AsyncOpenAI(base_url=llm.endpoint, api_key="unused", max_retries=0) as client:
        await client.chat.completions.create(model=llm.model, messages=[{"role": "user", "content": "hi"}])

    assert resource.resource_type == "proxy_llm" and llm.sampling_parameters == {"temperature": 0.2}  # type: ignore[comparison-overlap]
    assert len(await spans_of(store, attempt)) == 1


async def test_v1_base_urls_work_too(proxy: LLMProxy, store: RedisLightningStore, attempt: AttemptedRollout) -> None:
    base = proxy.as_resource(attempt.rollout_id, attempt.attempt.attempt_id).endpoint + "/v1"
    async with AsyncOpenAI(base_url=base, api_key="unused", max_retries=0) as client:
        models = await client.models.list()
        await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    assert [m.id for m in models.data] == [MODEL]
    assert len(await spans_of(store, attempt)) == 1


async def test_upstream_gets_its_model_name_key_and_extra_body_but_not_the_client_key(
    client: AsyncOpenAI, stand_in: StandInModelServer
) -> None:
    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])

    [received] = stand_in.requests
    assert received.body["model"] == stand_in.model
    assert received.body["return_token_ids"] is True
    assert received.headers["Authorization"] == "Bearer sk-upstream-9f3c2e7d-SECRET"
