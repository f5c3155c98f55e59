"""LlmProxyTraceToTriplet: sequence order, reward matching, dedup, and the span shapes it reads."""

from __future__ import annotations

import pytest

from lightning_queue.adapter import LlmProxyTraceToTriplet
from lightning_queue.types import Span, Triplet
from tests.support.span_shapes import RewardMaker, SpanMaker


def call(make_span: SpanMaker, seq: int, response_id: str | None = None, start_time: float | None = None) -> Span:
    attributes: dict[str, object] = {"prompt_token_ids": [seq, 100], "response_token_ids": [seq, 200]}
    if response_id is not None:
        attributes["gen_ai.response.id"] = response_id
    return make_span(seq, attributes, start_time=start_time)


def shape(triplets: list[Triplet]) -> list[tuple[int, float | None]]:
    return [(t.prompt["token_ids"][0], t.reward) for t in triplets]


def test_a_triplet_has_token_ids_reward_and_response_id(make_span: SpanMaker, make_reward: RewardMaker) -> None:
    [triplet] = LlmProxyTraceToTriplet()([call(make_span, 1, "r1"), make_reward(2, 0.5)])
    assert triplet == Triplet(
        prompt={"token_ids": [1, 100]}, response={"token_ids": [1, 200]}, reward=0.5, metadata={"response_id": "r1"}
    )


def test_each_reward_goes_to_the_latest_earlier_call_without_one(
    make_span: SpanMaker, make_reward: RewardMaker
) -> None:
    spans = [call(make_span, 1), make_reward(2, 1.0), call(make_span, 3), call(make_span, 4)]
    spans += [make_reward(5, 0.4), make_reward(6, 0.3), make_reward(7, 0.2)]
    # 2 -> call 1; 5 -> call 4; 6 -> call 3 (skipping rewarded 4); 7 finds no call left.
    assert shape(LlmProxyTraceToTriplet().adapt(spans)) == [(1, 1.0), (3, 0.3), (4, 0.4)]


def test_order_is_by_sequence_id_not_by_clock(make_span: SpanMaker, make_reward: RewardMaker) -> None:
    late_clock = call(make_span, 1, start_time=9999.0)
    early_clock = call(make_span, 3, start_time=1.0)
    reward = make_reward(2, 0.7)
    assert shape(LlmProxyTraceToTriplet().adapt([early_clock, reward, late_clock])) == [(1, 0.7), (3, None)]


def test_a_reward_before_any_call_is_ignored(make_span: SpanMaker, make_reward: RewardMaker) -> None:
    assert shape(LlmProxyTraceToTriplet().adapt([make_reward(1, 1.0), call(make_span, 2)])) == [(2, None)]


def test_a_response_seen_twice_is_one_call(make_span: SpanMaker) -> None:
    spans = [call(make_span, 1, "same"), call(make_span, 2, "same"), call(make_span, 3), call(make_span, 4)]
    triplets = LlmProxyTraceToTriplet().adapt(spans)
    assert [t.metadata["response_id"] for t in triplets] == ["same", None, None]


def test_spans_without_both_token_lists_are_not_calls(make_span: SpanMaker) -> None:
    spans = [
        make_span(1, {"prompt_token_ids": [1], "response_token_ids": []}),
        make_span(2, {"prompt_token_ids": [1]}),
        make_span(3, {"gen_ai.prompt.0.content": "hi"}),
        make_span(4, {"prompt_token_ids": [1, True], "response_token_ids": [2]}),
    ]
    assert LlmProxyTraceToTriplet().adapt(spans) == []


def test_litellm_spans_with_python_reprs_are_read(make_span: SpanMaker, make_reward: RewardMaker) -> None:
    choices = (
        "[{'finish_reason': 'stop', 'index': 0, 'logprobs': None, 'message': {'content': \"it's 4\\n\", "
        "'role': 'assistant', 'tool_calls': None}, 'token_ids': [7, 8, 9]}]"
    )
    raw = make_span(
        1,
        {
            "llm.hosted_vllm.prompt_token_ids": "[1, 2, 3]",
            "llm.hosted_vllm.choices": choices,
            "llm.hosted_vllm.id": "chatcmpl-raw",
        },
        name="raw_gen_ai_request",
    )
    old_vllm = make_span(
        3,
        {"llm.hosted_vllm.prompt_token_ids": "[4]", "llm.hosted_vllm.response_token_ids": "[[5, 6]]"},
        name="raw_gen_ai_request",
    )
    litellm = make_span(
        5,
        {"prompt_token_ids": "[10, 11]", "response_token_ids": "[12]", "gen_ai.response.id": "chatcmpl-lite"},
        name="litellm_request",
    )
    triplets = LlmProxyTraceToTriplet().adapt([raw, make_reward(2, 1.0), old_vllm, litellm, make_reward(6, 0.0)])

    assert [(t.prompt["token_ids"], t.response["token_ids"], t.reward) for t in triplets] == [
        ([1, 2, 3], [7, 8, 9], 1.0),
        ([4], [5, 6], None),
        ([10, 11], [12], 0.0),
    ]
    assert [t.metadata["response_id"] for t in triplets] == ["chatcmpl-raw", None, "chatcmpl-lite"]


def test_one_litellm_request_recorded_twice_counts_once(make_span: SpanMaker) -> None:
    # LiteLLM's two spans of one request share its sequence id and response id.
    litellm = make_span(1, {"prompt_token_ids": [1], "response_token_ids": [2], "gen_ai.response.id": "x"})
    raw = make_span(
        1,
        {
            "llm.hosted_vllm.prompt_token_ids": "[1]",
            "llm.hosted_vllm.choices": "[{'token_ids': [2]}]",
            "llm.hosted_vllm.id": "x",
        },
        name="raw_gen_ai_request",
    )
    assert len(LlmProxyTraceToTriplet().adapt([litellm, raw])) == 1


def test_an_unreadable_repr_skips_the_call_with_a_warning(
    make_span: SpanMaker, caplog: pytest.LogCaptureFixture
) -> None:
    bad = make_span(
        1,
        {"llm.hosted_vllm.prompt_token_ids": "__import__('os').system('x')", "llm.hosted_vllm.choices": "[]"},
        name="raw_gen_ai_request",
    )
    assert LlmProxyTraceToTriplet().adapt([bad, call(make_span, 2)])[0].prompt["token_ids"] == [2, 100]
    assert "not a readable literal" in caplog.text
