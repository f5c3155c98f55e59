"""TracerTraceToTriplet: LLM calls traced in the agent (OpenAI v2 instrumentation, OpenLLMetry) or by the proxy,
one triplet per call, rewards by first occurrence, judge calls and other agents left out."""

from __future__ import annotations

import enum
import json
from typing import Any

import pytest

import lightning_queue as agl
from lightning_queue.adapter import TracerTraceToTriplet
from lightning_queue.reward import emit_reward
from lightning_queue.types import Span


def span(
    seq: int,
    name: str,
    attributes: dict[str, Any] | None = None,
    *,
    start: float | None = None,
    end: float | None = None,
    span_id: str | None = None,
    parent_id: str | None = None,
) -> Span:
    start = float(seq) if start is None else start
    return Span.from_attributes(
        attributes=attributes or {},
        rollout_id="ro-1",
        attempt_id="at-1",
        sequence_id=seq,
        name=name,
        span_id=span_id,
        parent_id=parent_id,
        start_time=start,
        end_time=start + 0.5 if end is None else end,
    )


def reward(seq: int, value: float, *, parent_id: str | None = None, start: float | None = None) -> Span:
    core = emit_reward(value)
    at = float(seq) if start is None else start
    return span(seq, core.name, dict(core.attributes), start=at, end=at, parent_id=parent_id)


def openai_v2_call(seq: int, response_id: str, **kwargs: Any) -> Span:
    """The shape of opentelemetry-instrumentation-openai-v2's span (messages as JSON attributes, if captured)."""
    return span(
        seq,
        "chat gpt-4o-mini",
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.id": response_id,
            "gen_ai.input.messages": json.dumps([{"role": "user", "content": f"question {seq}"}]),
            "gen_ai.output.messages": json.dumps([{"role": "assistant", "content": f"answer {seq}"}]),
        },
        **kwargs,
    )


def proxy_call(seq: int, response_id: str | None) -> Span:
    attributes: dict[str, Any] = {"prompt_token_ids": [seq, 1], "response_token_ids": [seq, 2]}
    if response_id is not None:
        attributes["gen_ai.response.id"] = response_id
    return span(seq, "openai.chat.completion", attributes)


def test_it_is_the_default_v03_adapter_exported_at_the_top() -> None:
    assert agl.TracerTraceToTriplet is TracerTraceToTriplet
    assert issubclass(TracerTraceToTriplet, agl.TraceToTripletBase)


def test_an_instrumented_openai_call_and_its_emitted_reward_make_one_triplet() -> None:
    [triplet] = TracerTraceToTriplet()([openai_v2_call(1, "r1"), reward(2, 0.75)])
    assert triplet.reward == 0.75
    assert triplet.prompt["raw_content"] == [{"role": "user", "content": "question 1"}]
    assert triplet.response["raw_content"] == [{"role": "assistant", "content": "answer 1"}]
    assert triplet.prompt["token_ids"] == [] and triplet.metadata["response_id"] == "r1"


def test_openllmetry_flattened_messages_are_read() -> None:
    call = span(
        1,
        "openai.chat.completion",
        {"gen_ai.prompt.0.role": "user", "gen_ai.prompt.0.content": "hi", "gen_ai.completion.0.content": "yo"},
    )
    [triplet] = TracerTraceToTriplet()([call])
    assert triplet.prompt["raw_content"] == [{"role": "user", "content": "hi"}]
    assert triplet.response["raw_content"] == [{"content": "yo"}]


def test_a_call_seen_by_the_client_and_by_the_proxy_is_one_triplet_with_both_halves() -> None:
    spans = [openai_v2_call(1, "same"), proxy_call(2, "same"), reward(3, 1.0)]
    [triplet] = TracerTraceToTriplet()(spans)
    assert triplet.prompt == {"token_ids": [2, 1], "raw_content": [{"role": "user", "content": "question 1"}]}
    assert triplet.response["token_ids"] == [2, 2]
    assert triplet.reward == 1.0


def test_each_reward_goes_to_the_latest_earlier_call_without_one() -> None:
    spans = [reward(1, 9.0), proxy_call(2, None), reward(3, 1.0), proxy_call(4, None), proxy_call(5, None)]
    spans += [reward(6, 0.4), reward(7, 0.3), reward(8, 0.2)]
    triplets = TracerTraceToTriplet()(spans)
    assert [(t.prompt["token_ids"][0], t.reward) for t in triplets] == [(2, 1.0), (4, 0.3), (5, 0.4)]


def test_unrelated_spans_are_not_calls() -> None:
    spans = [span(1, "tool.search", {"tool.name": "search"}), span(2, "agent.step"), span(3, "chatty helper")]
    assert TracerTraceToTriplet()(spans) == []


def test_an_llm_judge_inside_a_reward_span_is_not_trained_on_unless_asked() -> None:
    judge_reward = reward(2, 0.5, start=1.0)
    judge_reward = judge_reward.model_copy(update={"span_id": "judge", "end_time": 10.0})
    judged = openai_v2_call(3, "judge-call", start=2.0, parent_id="judge")
    spans = [openai_v2_call(1, "agent-call", start=0.0), judge_reward, judged]
    assert [t.metadata["response_id"] for t in TracerTraceToTriplet()(spans)] == ["agent-call"]
    kept = TracerTraceToTriplet(exclude_llm_call_in_reward=False)(spans)
    assert [t.metadata["response_id"] for t in kept] == ["agent-call", "judge-call"]


def test_agent_match_keeps_the_calls_of_matching_agents_repairing_orphans_by_time() -> None:
    writer = span(1, "agent", {"gen_ai.agent.name": "writer"}, start=0.0, end=10.0, span_id="w")
    critic = span(2, "agent", {"gen_ai.agent.name": "critic"}, start=20.0, end=30.0, span_id="c")
    inside_writer = openai_v2_call(3, "w1", start=1.0, parent_id="w")
    orphan_in_critic = openai_v2_call(4, "c1", start=21.0)  # no parent recorded: enclosed by critic in time
    spans = [writer, critic, inside_writer, orphan_in_critic]
    writers = TracerTraceToTriplet(agent_match="writer")(spans)
    assert [(t.metadata["response_id"], t.metadata["agent_name"]) for t in writers] == [("w1", "writer")]
    critics = TracerTraceToTriplet(agent_match="critic")(spans)
    assert [t.metadata["response_id"] for t in critics] == ["c1"]
    assert TracerTraceToTriplet(agent_match="critic", repair_hierarchy=False)(spans) == []


def test_reward_match_policies() -> None:
    class Policy(enum.Enum):
        FIRST_SIBLING = "first_sibling"

    parent = span(1, "agent", start=0.0, end=10.0, span_id="p")
    call_in_parent = openai_v2_call(2, "in", start=1.0, parent_id="p")
    stray_reward = reward(3, 0.9, start=3.0)
    sibling_reward = reward(4, 0.1, parent_id="p", start=4.0)
    spans = [parent, call_in_parent, stray_reward, sibling_reward]
    assert [t.reward for t in TracerTraceToTriplet()(spans)] == [0.9]
    assert [t.reward for t in TracerTraceToTriplet(reward_match=Policy.FIRST_SIBLING)(spans)] == [0.1]  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'last'"):
        TracerTraceToTriplet(reward_match="last")


class _Context:
    def __init__(self, trace_id: int, span_id: int) -> None:
        self.trace_id, self.span_id, self.is_remote = trace_id, span_id, False
        self.trace_state: dict[str, str] = {}


class _Readable:
    """Duck-types an OpenTelemetry SDK ReadableSpan (times in nanoseconds), as a tracer hands them over."""

    def __init__(self, name: str, span_id: int, start_ns: int, attributes: dict[str, Any]) -> None:
        self.name, self.attributes = name, attributes
        self.context, self.parent = _Context(7, span_id), None
        self.start_time, self.end_time = start_ns, start_ns + 1000
        self.status = self.resource = None
        self.events: list[Any] = []
        self.links: list[Any] = []

    def get_span_context(self) -> _Context:
        return self.context


def test_raw_opentelemetry_spans_are_read_in_time_order() -> None:
    reward_attrs = dict(emit_reward(0.5).attributes)
    spans = [
        _Readable("agentlightning.annotation", 2, 5_000, reward_attrs),
        _Readable("chat gpt-4o-mini", 1, 1_000, {"gen_ai.response.id": "r1"}),
    ]
    [triplet] = TracerTraceToTriplet().adapt(spans)
    assert (triplet.metadata["response_id"], triplet.reward) == ("r1", 0.5)
    assert triplet.metadata["span_id"] == format(1, "016x")
