"""Agents the reliability tests run in real worker processes (importable via PYTHONPATH=tests/reliability)."""

from __future__ import annotations

from typing import Any

from openai import AsyncOpenAI

from lightning_queue import LLM
from lightning_queue.reward import emit_reward
from lightning_queue.types import AttemptedRollout, SpanCoreFields
from workers import llm_rollout

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
