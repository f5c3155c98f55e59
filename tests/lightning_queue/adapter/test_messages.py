"""TraceToMessages: OpenAI conversations from proxy spans and from client-side tracer spans."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lightning_queue.adapter import TraceToMessages, group_genai_dict
from tests.support.span_shapes import SpanMaker


def test_group_genai_dict_nests_and_turns_indexes_into_lists() -> None:
    attrs = {
        "gen_ai.prompt.1.role": "user",
        "gen_ai.prompt.0.role": "system",
        "gen_ai.prompt.0.content.0.text": "a",
        "gen_ai.request.model": "m",
        "other": 1,
    }
    assert group_genai_dict(attrs, "gen_ai.prompt") == [
        {"role": "system", "content": [{"text": "a"}]},
        {"role": "user"},
    ]
    assert group_genai_dict(attrs, "gen_ai.request") == {"model": "m"}
    assert group_genai_dict(attrs, "gen_ai.completion") == {}


def test_a_proxy_span_becomes_prompt_answer_and_tools(make_span: SpanMaker) -> None:
    span = make_span(
        1,
        {
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "weather?",
            "gen_ai.prompt.1.role": "assistant",
            "gen_ai.prompt.1.tool_calls.0.id": "c0",
            "gen_ai.prompt.1.tool_calls.0.name": "get_weather",
            "gen_ai.prompt.1.tool_calls.0.arguments": "{}",
            "gen_ai.prompt.2.role": "tool",
            "gen_ai.prompt.2.tool_call_id": "c0",
            "gen_ai.prompt.2.content": "rain",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.tool_calls.0.id": "c1",
            "gen_ai.completion.0.tool_calls.0.type": "function",
            "gen_ai.completion.0.tool_calls.0.name": "get_weather",
            "gen_ai.completion.0.tool_calls.0.arguments": '{"city": "Oslo"}',
            "gen_ai.request.model": "policy",
            "llm.request.functions.0.name": "get_weather",
            "llm.request.functions.0.parameters": json.dumps({"type": "object"}),
        },
    )
    [conversation] = TraceToMessages().adapt([span])

    assert conversation["messages"] == [
        {"role": "user", "content": "weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}],
        },
        {"role": "tool", "content": "rain", "tool_call_id": "c0"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
            ],
        },
    ]
    assert conversation["tools"] == [
        {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    ]


def test_tool_calls_of_client_side_tracers_come_from_child_spans(make_span: SpanMaker) -> None:
    llm = make_span(
        1,
        {
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "hi",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "calling",
            "gen_ai.request.functions.0.name": "f",
        },
        span_id="aaaaaaaaaaaaaaaa",
    )
    tool = make_span(
        2,
        {"tool.name": "f", "tool.call.id": "t9", "tool.parameters": '{"x": 1}'},
        name="tool",
        parent_id="aaaaaaaaaaaaaaaa",
    )
    [conversation] = TraceToMessages().adapt([llm, tool])

    assert conversation["messages"][-1] == {
        "role": "assistant",
        "content": "calling",
        "tool_calls": [{"id": "t9", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
    }
    assert conversation["tools"] == [{"type": "function", "function": {"name": "f"}}]


def test_spans_without_prompt_or_completion_are_skipped(make_span: SpanMaker) -> None:
    assert TraceToMessages().adapt([make_span(1, {"agentlightning.reward.0.value": 1.0})]) == []


@pytest.mark.parametrize(
    "attributes",
    [
        {"gen_ai.prompt.role": "user"},
        {"gen_ai.prompt.0.role": "user", "gen_ai.completion.content": "x"},
        {"gen_ai.prompt.0.role": "user", "gen_ai.request.0": "x"},
    ],
)
def test_wrong_shapes_raise(make_span: SpanMaker, attributes: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="must be"):
        TraceToMessages().adapt([make_span(1, attributes)])


def _semconv_span(make_span: SpanMaker, seq: int, response_id: str = "r1") -> Any:
    inputs = [
        {"role": "system", "parts": [{"type": "text", "content": "be brief"}]},
        {"role": "assistant", "parts": [{"type": "tool_call", "id": "c0", "name": "calc", "arguments": {"x": 1}}]},
        {"role": "tool", "parts": [{"type": "tool_call_response", "id": "c0", "response": "2"}]},
    ]
    outputs = [{"role": "assistant", "parts": [{"type": "text", "content": "it is 2"}], "finish_reason": "stop"}]
    return make_span(
        seq,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.response.id": response_id,
            "gen_ai.input.messages": json.dumps(inputs),
            "gen_ai.output.messages": json.dumps(outputs),
        },
        name="chat policy",
    )


def test_an_instrumented_client_span_in_the_genai_conventions_becomes_a_conversation(make_span: SpanMaker) -> None:
    [conversation] = TraceToMessages().adapt([_semconv_span(make_span, 1)])
    assert conversation["messages"] == [
        {"role": "system", "content": "be brief"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "c0", "type": "function", "function": {"name": "calc", "arguments": '{"x": 1}'}}],
        },
        {"role": "tool", "content": "2", "tool_call_id": "c0"},
        {"role": "assistant", "content": "it is 2"},
    ]
    assert conversation["tools"] is None


def test_a_call_recorded_by_the_proxy_and_by_the_client_counts_once(make_span: SpanMaker) -> None:
    proxy_span = make_span(
        1,
        {
            "gen_ai.prompt.0.role": "user",
            "gen_ai.prompt.0.content": "hi",
            "gen_ai.completion.0.role": "assistant",
            "gen_ai.completion.0.content": "it is 2",
            "gen_ai.response.id": "r1",
        },
    )
    conversations = TraceToMessages().adapt(
        [proxy_span, _semconv_span(make_span, 2), _semconv_span(make_span, 3, "r2")]
    )
    assert [c["messages"][0]["content"] for c in conversations] == ["hi", "be brief"]


def test_genai_messages_that_are_not_json_lists_raise(make_span: SpanMaker) -> None:
    with pytest.raises(ValueError, match="must be JSON text"):
        TraceToMessages().adapt([make_span(1, {"gen_ai.input.messages": "[{"})])
    with pytest.raises(ValueError, match="must be a mapping with a parts list"):
        TraceToMessages().adapt([make_span(1, {"gen_ai.input.messages": '[{"role": "user"}]'})])
