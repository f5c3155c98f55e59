"""Example agents for the docs and tests, and a tiny stand-in algorithm that feeds them.

lq worker --agent workers.examples:echo -n 2 --concurrency 4     # workers
python -m workers.examples --tasks 20                             # enqueue 20 tasks, wait, report

lq worker --agent workers.examples:math_agent --concurrency 4    # an agent that asks an LLM
python -m workers.examples --llm http://127.0.0.1:8100/v1 --model policy   # through `lq proxy`
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from typing import Any

from pydantic import ValidationError

from lightning_queue.litagent import llm_rollout, rollout
from lightning_queue.options import describe, option_name
from lightning_queue.reward import emit_reward, find_final_reward
from lightning_queue.semconv import OBJECT_JSON, OBJECT_TYPE, SPAN_OBJECT
from lightning_queue.store import RedisLightningStore
from lightning_queue.store.settings import RedisSettings
from lightning_queue.types import LLM, EnqueueRolloutRequest, ProxyLLM, SpanCoreFields


@rollout
def echo(task: Any) -> list[SpanCoreFields]:
    """A no-LLM agent: records the task as an object span and earns reward `task["reward"]` (default 1.0)."""
    reward = float(task.get("reward", 1.0)) if isinstance(task, dict) else 1.0
    seen = SpanCoreFields(name=SPAN_OBJECT, attributes={OBJECT_TYPE: "dict", OBJECT_JSON: json.dumps(task)})
    return [seen, emit_reward(reward, propagate=False)]


_ANSWER = re.compile(r"###\s*(-?[\d.]+)\s*###")


@llm_rollout
async def math_agent(task: dict[str, Any], llm: LLM) -> float:
    """Asks the LLM a question, rewards 1.0 if `### <number> ###` in its reply matches `task["target"]`.

    Through a proxy (`ProxyLLM` resource) `llm.endpoint` is already this attempt's own URL, so the
    call is recorded as spans of this rollout.
    """
    try:
        from openai import AsyncOpenAI
    except ImportError as exc:
        raise ImportError("math_agent needs the openai package: pip install openai") from exc
    client = AsyncOpenAI(base_url=llm.endpoint, api_key=llm.api_key or "dummy")
    reply = await client.chat.completions.create(
        model=llm.model,
        messages=[
            {"role": "system", "content": "Answer with the final number between ### marks, like ### 42 ###."},
            {"role": "user", "content": str(task["question"])},
        ],
        temperature=float(llm.sampling_parameters.get("temperature", 0.0)),
        max_tokens=int(llm.sampling_parameters.get("max_tokens", 256)),
    )
    match = _ANSWER.search(reply.choices[0].message.content or "")
    if match is None:
        return 0.0
    try:
        return 1.0 if abs(float(match.group(1)) - float(task["target"])) < 1e-6 else 0.0
    except ValueError:
        return 0.0


async def wait_for_llm(base_url: str, model: str, timeout: float) -> None:
    """Wait until one chat completion goes through `base_url` (a proxy answers before its model is up)."""
    import aiohttp

    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while True:
            try:
                async with session.post(f"{base_url.rstrip('/')}/chat/completions", json=body) as reply:
                    if reply.status == 200:
                        return
                    why = f"HTTP {reply.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise TimeoutError(f"no completion from {base_url} within {timeout:.0f}s (last: {why})")
            await asyncio.sleep(1.0)


def _tasks(n: int, with_llm: bool) -> list[dict[str, Any]]:
    if with_llm:
        return [{"question": f"What is {i} + {2 * i + 1}?", "target": 3 * i + 1} for i in range(n)]
    return [{"i": i, "reward": i % 2} for i in range(n)]


async def feed(
    url: str | None, namespace: str | None, tasks: int, timeout: float, llm: str | None = None, model: str = "policy"
) -> int:
    """Enqueue `tasks` tasks, wait for them and print a summary; returns how many succeeded.

    With `llm` (an `lq proxy` URL), the tasks are questions for `math_agent` and the proxy is
    registered as the `ProxyLLM` resource their rollouts are pinned to.
    """
    store = RedisLightningStore(url, namespace=namespace)
    try:
        resources_id = None
        if llm is not None:
            print(f"waiting for {llm} to answer")
            await wait_for_llm(llm, model, timeout)
            update = await store.add_resources({"main_llm": ProxyLLM(endpoint=llm, model=model)})
            resources_id = update.resources_id
        requests = [EnqueueRolloutRequest(input=t, resources_id=resources_id) for t in _tasks(tasks, llm is not None)]
        queued = await store.enqueue_many_rollouts(requests)
        ids = [r.rollout_id for r in queued]
        print(f"enqueued {len(ids)} rollouts in namespace {store.namespace!r}; waiting up to {timeout:.0f}s")
        done = await store.wait_for_rollouts(rollout_ids=ids, timeout=timeout)
        succeeded = [r for r in done if r.status == "succeeded"]
        rewards = [find_final_reward((await store.query_spans(r.rollout_id, "latest")).items) for r in succeeded]
        mean = sum(r or 0.0 for r in rewards) / len(rewards) if rewards else 0.0
        print(f"{len(done)}/{len(ids)} finished, {len(succeeded)} succeeded, mean reward {mean:.2f}")
        return len(succeeded)
    finally:
        await store.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Feed tasks to `lq worker --agent workers.examples:echo|math_agent`.")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--llm", default=None, help="an `lq proxy` base URL: enqueue questions for math_agent")
    parser.add_argument("--model", default="policy", help="the model name the proxy serves (with --llm)")
    # Same names, help and resolution order as every click CLI's: RedisSettings declares them.
    for field in ("url", "namespace"):
        info = RedisSettings.model_fields[field]
        parser.add_argument(option_name(RedisSettings, field), dest=field, default=None, help=info.description)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        redis = RedisSettings.from_env(url=args.url, namespace=args.namespace)
    except ValueError as exc:
        parser.error(describe(exc) if isinstance(exc, ValidationError) else str(exc))
    # The feeder talks to workers over a shared Redis: never a private embedded one.
    succeeded = asyncio.run(feed(redis.shared_url(), redis.namespace, args.tasks, args.timeout, args.llm, args.model))
    return 0 if succeeded == args.tasks else 1


if __name__ == "__main__":
    raise SystemExit(main())
