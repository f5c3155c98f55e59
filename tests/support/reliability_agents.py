"""Agents the reliability tests run in real worker processes (imported from the repository root)."""

from __future__ import annotations

import json
from typing import Any

from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from lightning_queue import LLM
from lightning_queue.litagent import llm_rollout
from lightning_queue.reward import emit_reward
from lightning_queue.types import AttemptedRollout, SpanCoreFields
from tests.support.agents import MARK

ANSWER = "reliability.answer"


@llm_rollout
async def streaming_chat(task: dict[str, Any], llm: LLM, rollout: AttemptedRollout) -> list[SpanCoreFields]:
    """Streams one chat completion through this attempt's proxy URL; an error mid-stream fails the attempt."""
    content = f"{task['say']} (attempt {rollout.attempt.sequence_id})"
    async with AsyncOpenAI(base_url=llm.endpoint, api_key=llm.api_key or "none", max_retries=0, timeout=20) as client:
        stream = await client.chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": content}], stream=True
        )
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    return [SpanCoreFields(name=ANSWER, attributes={"text": text}), emit_reward(1.0, propagate=False)]


_http: DefaultAsyncHttpxClient | None = None


def _shared_http() -> DefaultAsyncHttpxClient:
    # One connection pool per process: a client (and its TLS context) per rollout costs more CPU than the call.
    global _http
    if _http is None:
        _http = DefaultAsyncHttpxClient(timeout=30)
    return _http


@llm_rollout
async def llm_calls(task: dict[str, Any], llm: LLM, rollout: AttemptedRollout) -> list[SpanCoreFields]:
    """One chat call per entry of `task["delays"]`, in turn, through this attempt's proxy URL (the chaos
    test's stand-in upstream waits that long before answering); then a mark naming the attempt, and reward 1."""
    client = AsyncOpenAI(
        base_url=llm.endpoint, api_key=llm.api_key or "none", max_retries=0, timeout=30, http_client=_shared_http()
    )
    for delay in task["delays"]:
        await client.chat.completions.create(
            model=llm.model, messages=[{"role": "user", "content": json.dumps({"delay": delay})}]
        )
    mark = SpanCoreFields(name=MARK, attributes={"attempt_id": rollout.attempt.attempt_id, "mark": str(task["mark"])})
    return [mark, emit_reward(1.0, propagate=False)]
