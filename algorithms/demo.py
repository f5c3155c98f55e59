"""`lq demo`: the main job. REINFORCE teaches SmolLM2-135M to answer small sums with just the number.

Everything runs on this machine with nothing configured: the store (a Redis at 127.0.0.1:6379, or
the embedded server), the local model server, the LLM proxy, two worker processes and the
algorithm. It prints the held-out reward before and after training.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import click

from .reinforce import Evaluation, ReinforceConfig

TRAIN_SEED, VAL_SEED = 1, 2


def _table(result: dict[str, Any], seconds: float) -> str:
    before: Evaluation | None = result.get("before")
    after: Evaluation | None = result.get("after")
    lines = ["", "iteration  rollouts  samples  train reward (mean ± std)  rollout s  update s"]
    for it in result["iterations"]:
        reward = f"{it['reward_mean']:>10.3f} ± {it['reward_std']:<12.3f}"
        lines.append(
            f"{it['iteration']:>9}  {it['rollouts']:>8}  {it['samples']:>7}  {reward}  "
            f"{it['rollout_seconds']:>9}  {it['update_seconds']:>8}"
        )
    if before is not None and after is not None:
        lines += [
            "",
            "held-out reward    mean     std    stderr   n",
            f"before training   {before.mean:6.3f}  {before.std:6.3f}  {before.stderr:6.3f}  {before.n}",
            f"after training    {after.mean:6.3f}  {after.std:6.3f}  {after.stderr:6.3f}  {after.n}",
            f"change            {after.mean - before.mean:+6.3f}",
        ]
    lines.append(f"\nfinished in {seconds / 60:.1f} min")
    return "\n".join(lines)


@click.command("demo")
@click.option("--iterations", default=8, show_default=True, help="Policy updates.")
@click.option("--tasks-per-iteration", default=8, show_default=True)
@click.option("--samples-per-task", default=4, show_default=True, help="Rollouts per task (the baseline group).")
@click.option("--eval-tasks", default=24, show_default=True, help="Held-out tasks scored before and after.")
@click.option("--learning-rate", default=2e-5, show_default=True)
@click.option("--workers", "n_workers", default=2, show_default=True, help="Local worker processes.")
@click.option("--max-minutes", default=11.0, show_default=True, help="Start no iteration after this long.")
@click.option("--redis-url", envvar="LQ_REDIS_URL", default=None, help="Default: 127.0.0.1:6379, else embedded.")
@click.option("--checkpoint-dir", default="checkpoints/demo", show_default=True)
@click.option("--metrics", "metrics_path", default="checkpoints/demo/metrics.jsonl", show_default=True)
def demo_command(
    iterations: int,
    tasks_per_iteration: int,
    samples_per_task: int,
    eval_tasks: int,
    learning_rate: float,
    n_workers: int,
    max_minutes: float,
    redis_url: str | None,
    checkpoint_dir: str,
    metrics_path: str,
) -> None:
    """Train SmolLM2-135M with REINFORCE on a built-in task and show held-out reward before and after."""
    from .launch import run_reinforce
    from .tasks import make_tasks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiohttp.access", "httpx", "lightning_queue.llm_proxy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    config = ReinforceConfig(
        iterations=iterations,
        tasks_per_iteration=tasks_per_iteration,
        samples_per_task=samples_per_task,
        learning_rate=learning_rate,
        checkpoint_dir=checkpoint_dir,
        metrics_path=metrics_path,
        max_minutes=max_minutes,
        torch_threads=2,
    )
    started = time.monotonic()
    result = run_reinforce(
        config,
        "algorithms.tasks:arithmetic_agent",
        make_tasks(256, seed=TRAIN_SEED),
        make_tasks(eval_tasks, seed=VAL_SEED),
        n_workers=n_workers,
        redis_url=redis_url,
    )
    click.echo(_table(result, time.monotonic() - started))
