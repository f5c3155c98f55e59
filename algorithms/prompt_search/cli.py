"""`python -m algorithms.prompt_search`: search a better prompt for the built-in review-labelling task.

By default everything runs on this machine: the store (a Redis at 127.0.0.1:6379, or the embedded
server), SmolLM2-135M behind `lq serve-model`, the LLM proxy and two worker processes. With
`--base-url` and `--model` the agent's calls go to any OpenAI-compatible API instead, and
`--critic-base-url` / `--critic-model` send the critique and edit calls to another model.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import uuid
from typing import Any

import click

from lightning_queue import LLMProxy, RedisLightningStore, TraceToMessages, Trainer
from lightning_queue.options import field_option
from lightning_queue.store.settings import redis_url_option
from workers.settings import WorkerSettings

from ..evaluation import held_out_table
from ..launch import POLICY_MODEL, retain_run_data, setup_logging
from .algorithm import PromptSearch, PromptSearchConfig
from .edits import placeholders
from .tasks import SEED_TEMPLATE, make_tasks

logger = logging.getLogger(__name__)


@click.command("prompt-search")
@click.option("--base-url", default=None, help="OpenAI-compatible API for the agent. Default: start lq serve-model.")
@click.option("--model", default=None, help="Model name at --base-url. Default: 'default' (the local server).")
@click.option("--api-key-env", default=None, help="Environment variable holding the API key of the base URLs.")
@click.option("--critic-base-url", default=None, help="API for critique and edit calls. Default: --base-url.")
@click.option("--critic-model", default=None, help="Model for critique and edit calls. Default: --model.")
@click.option("--seed-template", default=SEED_TEMPLATE, show_default=True, help="Starting prompt; keep {text}.")
@click.option("--max-iterations", default=2, show_default=True, type=click.IntRange(min=0), help="Beam rounds.")
@click.option("--max-minutes", default=20.0, show_default=True, help="No new round starts after this long.")
@click.option("--beam-width", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--branch-factor", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--train-batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--val-batch-size", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--critique-samples", default=3, show_default=True, type=click.IntRange(min=1))
@click.option("--temperature", default=1.0, show_default=True, help="Sampling of critique and edit calls.")
@click.option("--critic-max-tokens", default=256, show_default=True, type=click.IntRange(min=16))
@click.option("--rollout-timeout", default=300.0, show_default=True, help="Seconds per batch of rollouts.")
@click.option("--workers", "n_workers", default=2, show_default=True, type=click.IntRange(min=1))
@field_option(WorkerSettings, "concurrency", default=(2, "2 per worker process"))
@redis_url_option
@click.option("--metrics-jsonl", default="checkpoints/prompt_search/metrics.jsonl", show_default=True)
@click.option("--progress/--no-progress", default=None, help="Progress bar. Default: on a terminal.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def prompt_search_command(
    base_url: str | None,
    model: str | None,
    api_key_env: str | None,
    critic_base_url: str | None,
    critic_model: str | None,
    seed_template: str,
    max_iterations: int,
    max_minutes: float,
    beam_width: int,
    branch_factor: int,
    train_batch_size: int,
    val_batch_size: int,
    critique_samples: int,
    temperature: float,
    critic_max_tokens: int,
    rollout_timeout: float,
    n_workers: int,
    concurrency: int,
    redis_url: str | None,
    metrics_jsonl: str,
    progress: bool | None,
    seed: int,
    as_json: bool,
) -> None:
    """APO-style beam search for the prompt of a review-labelling agent; prints the seed's and the best's score."""
    setup_logging()
    if base_url is not None and model is None:
        raise click.UsageError("--base-url needs --model (the model name that API serves)")
    if critic_base_url is not None and critic_model is None:
        raise click.UsageError("--critic-base-url needs --critic-model (the model name that API serves)")
    if api_key_env is not None and api_key_env not in os.environ:
        raise click.UsageError(f"--api-key-env names {api_key_env!r}, which is not set in the environment")
    try:
        fields = placeholders(seed_template)
    except ValueError as exc:
        raise click.UsageError(f"--seed-template is not an f-string template: {exc}") from None
    if fields != {"text"}:
        raise click.UsageError(f"--seed-template must use exactly the placeholder {{text}}, found {sorted(fields)}")
    served_model = model or "default"  # the local server's alias; an explicit --base-url comes with --model
    config = PromptSearchConfig(
        beam_width=beam_width,
        branch_factor=branch_factor,
        beam_rounds=max_iterations,
        train_batch_size=train_batch_size,
        val_batch_size=val_batch_size,
        critique_samples=critique_samples,
        critique_model=critic_model or served_model,
        temperature=temperature,
        max_tokens=critic_max_tokens,
        rollout_max_tokens=16,
        rollout_timeout=rollout_timeout,
        max_minutes=max_minutes,
        metrics_path=metrics_jsonl,
        progress=progress,
        seed=seed,
        checker="algorithms.prompt_search.tasks:check",
    )
    with contextlib.ExitStack() as stack:
        if base_url is None:
            from ..serving import ModelServerProcess

            base_url = stack.enter_context(ModelServerProcess(threads=1)).url
        result = asyncio.run(
            _search(
                config,
                seed_template,
                upstream={"base_url": base_url, "model": served_model, "api_key_env": api_key_env},
                critic_base_url=critic_base_url or base_url,
                redis_url=redis_url,
                n_workers=n_workers,
                concurrency=concurrency,
            )
        )
    click.echo(json.dumps(result, indent=2, default=str) if as_json else _summary(result))


async def _search(
    config: PromptSearchConfig,
    seed_template: str,
    *,
    upstream: dict[str, Any],
    critic_base_url: str,
    redis_url: str | None,
    n_workers: int,
    concurrency: int,
) -> dict[str, Any]:
    from openai import AsyncOpenAI

    from lightning_queue import PromptTemplate

    key = os.environ[upstream["api_key_env"]] if upstream["api_key_env"] else None
    store = RedisLightningStore(redis_url, namespace=f"prompt-search-{uuid.uuid4().hex[:8]}")
    proxy = LLMProxy(model_list=[{"name": POLICY_MODEL, **{k: v for k, v in upstream.items() if v is not None}}])
    client = AsyncOpenAI(base_url=critic_base_url, api_key=key or "unused", timeout=config.llm_timeout)
    train, val = make_tasks()
    trainer = Trainer(
        algorithm=PromptSearch(config, client=client),
        store=store,
        llm_proxy=proxy,
        adapter=TraceToMessages(),
        initial_resources={"prompt": PromptTemplate(template=seed_template, engine="f-string")},
        n_workers=n_workers,
        worker_concurrency=concurrency,
    )
    try:
        await retain_run_data(store)
        result: dict[str, Any] = await trainer.fit_async(
            "algorithms.prompt_search.tasks:sentiment_agent", train, val_dataset=val
        )
    finally:
        await client.close()
        with contextlib.suppress(Exception):  # cleanup only; the run's own outcome matters more
            await store.purge()
        await store.aclose()
    return result


def _summary(result: dict[str, Any]) -> str:
    seed, best = result["seed"], result["best"]
    lines = ["", "round  rollouts  proposed  accepted  train reward  leader         best (val)"]
    for it in result["iterations"]:
        if it["iteration"] == 0:
            continue
        train = "-" if it["train_reward_mean"] is None else f"{it['train_reward_mean']:.3f}"
        lines.append(
            f"{it['iteration']:>5}  {it['rollouts']:>8}  {it['proposed']:>8}  {it['accepted']:>8}  {train:>12}  "
            f"{it['leader']:<13}  {it['best_val_score']:.3f} ({it['best']})"
        )
    lines += [
        "",
        f"seed prompt ({seed['version']}): validation reward {seed['val_score']:.3f}",
        f"best prompt ({best['version']}): validation reward {best['val_score']:.3f}",
        "",
        best["template"],
        "",
    ]
    if seed.get("val_record") and best.get("val_record"):
        lines += [*held_out_table(seed["val_record"], best["val_record"], labels=("seed prompt", "best prompt")), ""]
    lines += [
        f"{result['rollouts']} rollouts in {result['seconds'] / 60:.1f} min; stopped by {result['stopped']}",
    ]
    return "\n".join(lines)
