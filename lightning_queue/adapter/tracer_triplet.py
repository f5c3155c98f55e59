"""TracerTraceToTriplet: every LLM call an attempt's spans record (proxy, or traced in the agent), with rewards.

Agent-Lightning's default adapter. A call is a span whose name matches `llm_call_match` (the proxy's and
OpenLLMetry's `openai.chat.completion`, the OpenAI v2 instrumentation's `chat <model>`) or that carries
token ids (`LlmProxyTraceToTriplet`'s rule). One call recorded twice, by the agent's client
instrumentation and by the proxy, shares a `gen_ai.response.id`: its two spans become one triplet with the
token ids of the one and the messages of either. Rewards follow v0.3's first-occurrence rule: each reward
goes to the latest call that ended before it and has none yet.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..reward import get_reward_value
from ..store.otel import span_from_otel
from ..types import Span, Triplet
from ..utils.otel import filter_and_unflatten_attributes
from .base import TraceToTripletBase
from .triplet import call_of
from .versions import version_metadata

DEFAULT_LLM_CALL_MATCH = r"openai\.chat\.completion|^chat( |$)"
_AGENT_KEYS = ("gen_ai.agent.name", "agent.name")
REWARD_MATCH_POLICIES = ("first_occurrence", "first_sibling")


@dataclass
class _Call:
    span: Span
    agent: str
    prompt_ids: list[int] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    prompt: Any = None
    completion: Any = None
    reward: float | None = None
    rewarded: bool = False
    # The proxy's span of the call, when a client span was seen first (it carries the policy versions).
    proxy_span: Span | None = None


def _messages(span: Span, prefix: str, json_key: str) -> Any:
    """Flattened `gen_ai.prompt.<i>.*` (OpenLLMetry, our proxy), else the JSON of `gen_ai.input.messages`."""
    nested = filter_and_unflatten_attributes(span.attributes, prefix)
    if nested:
        return nested
    raw = span.attributes.get(json_key)
    if isinstance(raw, str):
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return None


def _end(span: Span) -> float:
    return span.end_time if span.end_time is not None else (span.start_time or 0.0)


class TracerTraceToTriplet(TraceToTripletBase):
    """One triplet per LLM call: `prompt={"token_ids", "raw_content"}`, `response={...}`, `reward`, metadata
    (response id, agent name, span id, and the policy versions the proxy recorded for the call).

    Args:
        repair_hierarchy: a call with no recorded parent counts as inside the shortest span enclosing it in
            time (client spans of one framework often float at the root of another's trace).
        llm_call_match: regular expression on span names selecting LLM calls.
        agent_match: keep only calls inside a span whose agent name (`gen_ai.agent.name`, `agent.name`)
            matches this regular expression.
        exclude_llm_call_in_reward: skip calls made inside a reward span (an LLM judge's calls).
        reward_match: "first_occurrence" (the v0.3 default): each reward goes to the latest unrewarded call
            that ended before it; "first_sibling": the same, among calls with the reward's parent.
    """

    def __init__(
        self,
        repair_hierarchy: bool = True,
        llm_call_match: str = DEFAULT_LLM_CALL_MATCH,
        agent_match: str | None = None,
        exclude_llm_call_in_reward: bool = True,
        reward_match: str = "first_occurrence",
    ) -> None:
        value = getattr(reward_match, "value", reward_match)  # Agent-Lightning passes an enum
        if value not in REWARD_MATCH_POLICIES:
            raise ValueError(f"reward_match must be one of {REWARD_MATCH_POLICIES}, got {reward_match!r}")
        self.repair_hierarchy = repair_hierarchy
        self.llm_call_match = re.compile(llm_call_match)
        self.agent_match = None if agent_match is None else re.compile(agent_match)
        self.exclude_llm_call_in_reward = exclude_llm_call_in_reward
        self.reward_match = str(value)

    def adapt(self, source: Sequence[Any]) -> list[Triplet]:
        spans = [s if isinstance(s, Span) else span_from_otel(s, "", "", 0) for s in source]
        spans.sort(key=lambda s: (s.sequence_id, s.start_time or 0.0))
        by_id = {s.span_id: s for s in spans}
        calls = self._calls(spans, by_id)
        self._match_rewards(spans, calls)
        return [
            Triplet(
                prompt={"token_ids": c.prompt_ids, "raw_content": c.prompt},
                response={"token_ids": c.response_ids, "raw_content": c.completion},
                reward=c.reward,
                metadata={
                    "response_id": c.span.attributes.get("gen_ai.response.id"),
                    "agent_name": c.agent,
                    "span_id": c.span.span_id,
                    **version_metadata(c.span, c.proxy_span),
                },
            )
            for c in calls
        ]

    # --- structure ----------------------------------------------------------------------------------
    def _parent(self, span: Span, by_id: dict[str, Span], spans: list[Span]) -> Span | None:
        if span.parent_id is not None and span.parent_id in by_id:
            return by_id[span.parent_id]
        if not self.repair_hierarchy or span.start_time is None or span.end_time is None:
            return None
        enclosing = [
            s
            for s in spans
            if s is not span
            and s.start_time is not None
            and s.end_time is not None
            and s.start_time <= span.start_time
            and s.end_time >= span.end_time
            and (s.end_time - s.start_time) > (span.end_time - span.start_time)
        ]
        return min(enclosing, key=lambda s: (s.end_time or 0.0) - (s.start_time or 0.0), default=None)

    def _ancestors(self, span: Span, by_id: dict[str, Span], spans: list[Span]) -> list[Span]:
        chain, seen = [], {span.span_id}
        node = self._parent(span, by_id, spans)
        while node is not None and node.span_id not in seen:
            chain.append(node)
            seen.add(node.span_id)
            node = self._parent(node, by_id, spans)
        return chain

    def _calls(self, spans: list[Span], by_id: dict[str, Span]) -> list[_Call]:
        calls: list[_Call] = []
        by_response: dict[str, _Call] = {}
        for span in spans:
            ids = call_of(span)
            if ids is None and not self.llm_call_match.search(span.name):
                continue
            ancestors = self._ancestors(span, by_id, spans)
            if self.exclude_llm_call_in_reward and any(get_reward_value(a) is not None for a in ancestors):
                continue
            agent = next((str(a.attributes[k]) for a in ancestors for k in _AGENT_KEYS if k in a.attributes), "*")
            if self.agent_match is not None and not self.agent_match.search(agent):
                continue
            prompt = _messages(span, "gen_ai.prompt", "gen_ai.input.messages")
            completion = _messages(span, "gen_ai.completion", "gen_ai.output.messages")
            response_id = span.attributes.get("gen_ai.response.id")
            known = by_response.get(response_id) if isinstance(response_id, str) else None
            if known is not None:
                # The same call seen from the client and from the proxy: fill in what the first span lacked.
                if ids is not None and not known.prompt_ids:
                    known.prompt_ids, known.response_ids = ids.prompt_ids, ids.response_ids
                known.proxy_span = known.proxy_span or span
                known.prompt = known.prompt or prompt
                known.completion = known.completion or completion
                continue
            call = _Call(span, agent, prompt=prompt, completion=completion)
            if ids is not None:
                call.prompt_ids, call.response_ids = ids.prompt_ids, ids.response_ids
            calls.append(call)
            if isinstance(response_id, str):
                by_response[response_id] = call
        return calls

    def _match_rewards(self, spans: list[Span], calls: list[_Call]) -> None:
        for span in spans:
            reward = get_reward_value(span)
            if reward is None:
                continue
            start = span.start_time if span.start_time is not None else _end(span)
            for call in reversed(calls):
                if call.rewarded or (call.span.sequence_id, _end(call.span)) > (span.sequence_id, start):
                    continue
                if self.reward_match == "first_sibling" and call.span.parent_id != span.parent_id:
                    continue
                call.reward, call.rewarded = reward, True
                break
