"""LlmProxyTraceToTriplet: the LLM calls an agent made through the proxy, with their token ids and rewards.

Order is by sequence id only (the store issues one per call and per reward), never by clocks, so calls
recorded by different machines still line up with the rewards the agent emitted after them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..reward import get_reward_value
from ..types import Span, Triplet
from .base import TraceToTripletBase
from .pyrepr import parse_python_literal
from .versions import version_metadata

logger = logging.getLogger(__name__)

RAW_REQUEST_SPAN = "raw_gen_ai_request"


@dataclass
class _Call:
    sequence_id: int
    prompt_ids: list[int]
    response_ids: list[int]
    response_id: str | None
    reward: float | None = None
    rewarded: bool = False
    # The policy versions the span records (the proxy's), as triplet metadata.
    versions: dict[str, Any] = field(default_factory=dict)


def _int_list(value: Any) -> list[int] | None:
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return value
    return None


def _read(span: Span, key: str) -> Any:
    """An attribute, with LiteLLM's Python-repr strings parsed; unreadable values are skipped and logged."""
    value = span.attributes.get(key)
    if not isinstance(value, str):
        return value
    try:
        return parse_python_literal(value)
    except ValueError as exc:
        logger.warning(
            "span %s: attribute %s is not a readable literal (%s); the call is skipped", span.span_id, key, exc
        )
        return None


def _provider_key(span: Span, suffix: str) -> str | None:
    """LiteLLM writes `llm.<provider>.<field>` (`llm.hosted_vllm.prompt_token_ids` for vLLM)."""
    preferred = f"llm.hosted_vllm.{suffix}"
    if preferred in span.attributes:
        return preferred
    for key in span.attributes:
        if key.startswith("llm.") and key.endswith("." + suffix) and key.count(".") == 2:
            return key
    return None


def _raw_request_ids(span: Span) -> tuple[list[int] | None, list[int] | None]:
    key = _provider_key(span, "prompt_token_ids")
    prompt = _int_list(_read(span, key)) if key else None
    response = None
    key = _provider_key(span, "response_token_ids")
    nested = _read(span, key) if key else None
    if isinstance(nested, list) and nested:
        response = _int_list(nested[0])  # old vLLM: one id list per choice
    if response is None:
        key = _provider_key(span, "choices")
        choices = _read(span, key) if key else None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            response = _int_list(choices[0].get("token_ids"))
    return prompt, response


def call_of(span: Span) -> _Call | None:
    """The LLM call a span records with its token ids (proxy, LiteLLM, or any span with both id lists), else None."""
    if span.name == RAW_REQUEST_SPAN:
        prompt, response = _raw_request_ids(span)
    elif "prompt_token_ids" in span.attributes and "response_token_ids" in span.attributes:
        # Our proxy's spans, LiteLLM's `litellm_request`, and any client-side span with the same keys.
        prompt = _int_list(_read(span, "prompt_token_ids"))
        response = _int_list(_read(span, "response_token_ids"))
    else:
        return None
    if not prompt or not response:
        return None
    response_id = span.attributes.get("gen_ai.response.id")
    if not isinstance(response_id, str):
        key = _provider_key(span, "id")
        response_id = span.attributes.get(key) if key else None
    response_id = response_id if isinstance(response_id, str) else None
    return _Call(span.sequence_id, prompt, response, response_id, versions=version_metadata(span))


class LlmProxyTraceToTriplet(TraceToTripletBase):
    """One triplet per LLM call with token ids: `prompt={"token_ids"}`, `response={"token_ids"}`, `reward`.

    `metadata` holds the response id and, for calls the proxy recorded, the policy versions of the call
    (`policy_version`, `attempt_policy_version`, `policy_version_changed`, `upstream_weights_version`...).

    - spans are ordered by (sequence_id, start_time);
    - a call is a span with prompt and response token ids (our proxy's, LiteLLM's `litellm_request`,
      or LiteLLM's `raw_gen_ai_request`); a response id seen before is a duplicate and skipped
      (calls without a response id are all kept);
    - each reward, in sequence order, goes to the latest earlier call that has no reward yet.
    """

    def adapt(self, source: Sequence[Span]) -> list[Triplet]:
        spans = sorted(source, key=lambda s: (s.sequence_id, s.start_time or 0.0))
        calls: list[_Call] = []
        seen: set[str] = set()
        for span in spans:
            call = call_of(span)
            if call is None:
                continue
            if call.response_id is not None:
                if call.response_id in seen:
                    continue
                seen.add(call.response_id)
            calls.append(call)
        for span in spans:
            reward = get_reward_value(span)
            if reward is None:
                continue
            for call in reversed(calls):
                if call.sequence_id < span.sequence_id and not call.rewarded:
                    call.reward, call.rewarded = reward, True
                    break
        return [
            Triplet(
                prompt={"token_ids": call.prompt_ids},
                response={"token_ids": call.response_ids},
                reward=call.reward,
                metadata={"response_id": call.response_id, **call.versions},
            )
            for call in calls
        ]
