"""The built-in demo task: small sums, answered with just the number.

Why this task: a 135M model answers "What is 7 + 5?" with a sentence ("7 + 5 equals 12, so ...") and
is often wrong. The reward pays for brevity and for a correct leading number, so it is dense (every
reply earns something for being short) and verifiable (no judge model). REINFORCE moves a 135M model
on it within a few minutes on two CPU cores: the replies get shorter first, and the share that
starts with the right number rises with them.
"""

from __future__ import annotations

import random
import re
from typing import Any

from lightning_queue.types import LLM
from workers import llm_rollout

SYSTEM_PROMPT = "You are a calculator. Reply with the number only."
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def make_tasks(count: int, *, seed: int, low: int = 1, high: int = 20) -> list[dict[str, Any]]:
    """`count` questions `What is a + b?` with their answers; the same seed gives the same tasks."""
    rng = random.Random(seed)
    tasks = []
    for i in range(count):
        a, b = rng.randint(low, high), rng.randint(low, high)
        tasks.append({"id": f"{seed}-{i}", "question": f"What is {a} + {b}?", "answer": a + b})
    return tasks


def brevity(reply: str, *, short: int = 2, long: int = 20) -> float:
    """1.0 for 1 to `short` words, falling linearly to 0.0 at `long` words; an empty reply earns nothing."""
    words = len(reply.split())
    if words == 0:
        return 0.0
    if words <= short:
        return 1.0
    return max(0.0, 1.0 - (words - short) / (long - short))


def leading_number_is(reply: str, answer: float) -> bool:
    match = _NUMBER.search(reply)
    return match is not None and match.start() <= 2 and float(match.group()) == float(answer)


def score(reply: str, answer: float) -> float:
    """Half for brevity, half for a reply that starts with the right number."""
    return 0.5 * brevity(reply) + 0.5 * float(leading_number_is(reply.strip(), answer))


@llm_rollout
async def arithmetic_agent(task: dict[str, Any], llm: LLM) -> float:
    """Ask the LLM the task's question through its (proxied) endpoint and score the reply."""
    from openai import AsyncOpenAI

    params = llm.sampling_parameters
    async with AsyncOpenAI(base_url=llm.endpoint, api_key=llm.api_key or "unused", max_retries=0) as client:
        reply = await client.chat.completions.create(
            model=llm.model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": task["question"]},
            ],
            temperature=float(params.get("temperature", 1.0)),
            max_tokens=int(params.get("max_tokens", 24)),
            seed=params.get("seed"),
        )
    return score(reply.choices[0].message.content or "", task["answer"])
