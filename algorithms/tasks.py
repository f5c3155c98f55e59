"""The built-in demo task: small sums, checked by the last number of the reply.

Why this task: a 135M model asked "What is 7 + 5?" mostly rambles ("To add 7 and 5, you simply
...") and is right about one time in five; when it writes the sum as an equation ("7 + 5 = 12") it is
right far more often. That is a skill RL can teach a 135M model in minutes on two CPU cores, and it
is checked without a judge model.

The checker: a reply is correct when the last number in it is the sum, so `5`, `2 + 3 = 5` and
`The answer is 5.` are right and `2`, `2 + 3` or a reply cut off before the answer are wrong.

The reward is the checker's verdict and nothing else, with a small bonus for brevity that is paid
only on a correct reply (it breaks ties between right answers, never pays a wrong one). An earlier
version paid half the reward for brevity alone and only a *leading* number counted, so REINFORCE
learnt to print the first operand (`2` for `2 + 3`): short, and never right. Under this reward that
reply earns 0, the same as silence.
"""

from __future__ import annotations

import random
import re
from collections.abc import Collection, Mapping
from typing import Any

from lightning_queue.litagent import llm_rollout
from lightning_queue.types import LLM

from .evaluation import Check

SYSTEM_PROMPT = "You are a calculator. Reply with the number only."
# The share of a correct reply's reward that depends on its length.
BREVITY_BONUS = 0.1
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def make_tasks(
    count: int, *, seed: int, low: int = 1, high: int = 20, exclude: Collection[Mapping[str, Any]] = ()
) -> list[dict[str, Any]]:
    """`count` questions `What is a + b?` with their answers; the same seed gives the same tasks.

    Draws repeat (a sum may come up twice). Sums in `exclude` (in either order: `a + b` and `b + a`
    are one fact) are never drawn, so a held-out set can be kept apart from the training set.
    """
    taken = {_fact(task) for task in exclude}
    if len(taken) >= (high - low + 1) * (high - low + 2) // 2:
        raise ValueError(f"every sum of {low}..{high} is excluded: nothing is left to draw")
    rng = random.Random(seed)
    tasks = []
    for i in range(count):
        a, b = rng.randint(low, high), rng.randint(low, high)
        while (min(a, b), max(a, b)) in taken:
            a, b = rng.randint(low, high), rng.randint(low, high)
        tasks.append({"id": f"{seed}-{i}", "question": f"What is {a} + {b}?", "answer": a + b})
    return tasks


def split_tasks(*, seed: int, train: int = 256, val: int = 48) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A training set and a held-out set of `val` distinct sums; the two have no sum in common."""
    rng = random.Random(seed + 2)
    facts = [(a, b) for a in range(1, 21) for b in range(a, 21)]
    held_out = []
    for i, (a, b) in enumerate(rng.sample(facts, val)):
        if rng.random() < 0.5:
            a, b = b, a
        held_out.append({"id": f"val-{seed}-{i}", "question": f"What is {a} + {b}?", "answer": a + b})
    return make_tasks(train, seed=seed + 1, exclude=held_out), held_out


def _fact(task: Mapping[str, Any]) -> tuple[int, int]:
    a, b = map(int, _NUMBER.findall(str(task["question"]))[:2])
    return min(a, b), max(a, b)


def brevity(reply: str, *, short: int = 2, long: int = 20) -> float:
    """1.0 for 1 to `short` words, falling linearly to 0.0 at `long` words; an empty reply earns nothing."""
    words = len(reply.split())
    if words == 0:
        return 0.0
    if words <= short:
        return 1.0
    return max(0.0, 1.0 - (words - short) / (long - short))


def final_number(reply: str) -> float | None:
    """The last number written in the reply, or None if it has none."""
    numbers = _NUMBER.findall(reply)
    return float(numbers[-1]) if numbers else None


def is_correct(reply: str, answer: float) -> bool:
    """The task's checker: the last number of the reply is the answer."""
    number = final_number(reply)
    return number is not None and number == float(answer)


def check(task: Mapping[str, Any], reply: str) -> Check:
    """The verdict on one reply: correct or not, and the reward with its parts (see the module docstring)."""
    correct = is_correct(reply, task["answer"])
    short = brevity(reply)
    reward = (1.0 - BREVITY_BONUS + BREVITY_BONUS * short) if correct else 0.0
    return Check(correct=correct, reward=reward, parts={"correct": float(correct), "brevity": short})


def score(reply: str, answer: float) -> float:
    """The reward of a reply to a question whose answer is `answer`."""
    return check({"answer": answer}, reply).reward


@llm_rollout
async def arithmetic_agent(task: dict[str, Any], llm: LLM) -> float:
    """Ask the LLM the task's question through its (proxied) endpoint and score the reply."""
    from openai import AsyncOpenAI

    params = llm.sampling_parameters
    # Two retries (the OpenAI default): a call the proxy refuses during a weight sync (503 + Retry-After,
    # asynchronous REINFORCE) waits and goes through instead of failing the rollout.
    async with AsyncOpenAI(base_url=llm.endpoint, api_key=llm.api_key or "unused", max_retries=2) as client:
        reply = await client.chat.completions.create(
            model=llm.model,
            messages=[
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": task["question"]},
            ],
            temperature=float(params.get("temperature", 1.0)),
            max_tokens=int(params.get("max_tokens", 16)),
            seed=params.get("seed"),
        )
    return score(reply.choices[0].message.content or "", task["answer"])
