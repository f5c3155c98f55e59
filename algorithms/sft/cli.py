"""`python -m algorithms.sft`: rejection-sampling fine-tuning of SmolLM2-135M on the built-in sums task.

By default everything runs on this machine: the store (a Redis at 127.0.0.1:6379; the rq training
queue needs a real Redis, the embedded server is not enough), SmolLM2-135M behind `lq serve-model`,
the LLM proxy, two worker processes, and an `lq trainer` started for the fine-tuning jobs unless one
already listens on the queue. `--tasks` and `--agent` train on your own task instead.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path
from typing import Any

import click

from lightning_queue.options import field_option
from lightning_queue.store.settings import redis_url_option
from workers.settings import WorkerSettings

from ..evaluation import held_out_table
from ..launch import BUILTIN_AGENT, Upstream, checker_for, load_tasks, run_training, setup_logging
from ..trainer_worker import TRAIN_QUEUE
from .algorithm import SFT, SFTConfig

logger = logging.getLogger(__name__)


@click.command("sft")
@click.option("--model", "model_dir", default=None, help="Checkpoint to start from. Default: SmolLM2-135M-Instruct.")
@click.option(
    "--tasks",
    "tasks_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSONL file of tasks for --agent. Default: 64 built-in sums.",
)
@click.option(
    "--val-tasks",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="JSONL held-out tasks, evaluated before and after. Default: 48 built-in sums none of --tasks has.",
)
@field_option(WorkerSettings, "agent", default=(BUILTIN_AGENT, BUILTIN_AGENT))
@click.option(
    "--checker",
    default=None,
    help="The task's checker (module:name) for accuracy. Default: the built-in task's; none for other agents.",
)
@click.option("--max-iterations", default=2, show_default=True, type=click.IntRange(min=1))
@click.option("--max-minutes", default=20.0, show_default=True, help="No new iteration starts after this long.")
@click.option("--tasks-per-iteration", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--samples-per-task", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--keep-fraction", default=0.5, show_default=True, type=click.FloatRange(0, 1, min_open=True))
@click.option("--min-reward", default=None, type=float, help="Also drop kept rows below this reward.")
@click.option("--temperature", default=1.0, show_default=True, help="Sampling temperature of the rollouts.")
@click.option("--max-tokens", default=24, show_default=True, help="Reply length limit handed to the agent.")
@click.option("--learning-rate", default=1e-5, show_default=True)
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--max-steps", default=None, type=click.IntRange(min=1), help="Cap on optimizer steps per fine-tune.")
@click.option("--device", default="auto", show_default=True, help="Device of the fine-tuning job (auto: cuda if any).")
@click.option(
    "--train-threads",
    default=1,
    show_default=True,
    type=click.IntRange(min=1),
    help="Torch CPU threads of the fine-tuning job. One suits a CPU machine shared with workers and a model "
    "server (measured 6x faster than two under load); raise it on a dedicated machine.",
)
@click.option(
    "--upstream",
    type=click.Choice(["local", "vllm"]),
    default="local",
    show_default=True,
    help="Serve the policy with lq serve-model, or restart vllm serve on each checkpoint.",
)
@click.option("--vllm-arg", "vllm_args", multiple=True, help="Extra `vllm serve` argument (repeatable).")
@click.option("--workers", "n_workers", default=2, show_default=True, type=click.IntRange(min=1))
@field_option(WorkerSettings, "concurrency", default=(4, "4 per worker process"))
@redis_url_option
@click.option("--train-queue", default=TRAIN_QUEUE, show_default=True, help="rq queue of the fine-tuning jobs.")
@click.option(
    "--local-trainer/--no-local-trainer",
    default=True,
    show_default=True,
    help="Start an lq trainer here when none listens on the queue.",
)
@click.option("--job-timeout", default=3600.0, show_default=True, help="Seconds one fine-tuning job may run.")
@click.option("--checkpoint-dir", default="checkpoints/sft", show_default=True, help="Runs write sub-directories here.")
@click.option(
    "--keep-checkpoints",
    default=2,
    show_default=True,
    type=click.IntRange(min=1),
    help="Newest checkpoints of the run kept on disk.",
)
@click.option("--metrics-jsonl", default=None, help="Per-iteration metrics. Default: metrics.jsonl in the run's dir.")
@click.option("--export-dataset", default=None, help="Save the selected rows as a datasets.Dataset here.")
@click.option("--progress/--no-progress", default=None, help="Progress bar. Default: on a terminal.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def sft_command(
    model_dir: str | None,
    tasks_path: Path | None,
    val_tasks: Path | None,
    agent: str,
    checker: str | None,
    max_iterations: int,
    max_minutes: float,
    tasks_per_iteration: int,
    samples_per_task: int,
    keep_fraction: float,
    min_reward: float | None,
    temperature: float,
    max_tokens: int,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    max_steps: int | None,
    device: str,
    train_threads: int,
    upstream: str,
    vllm_args: tuple[str, ...],
    n_workers: int,
    concurrency: int,
    redis_url: str | None,
    train_queue: str,
    local_trainer: bool,
    job_timeout: float,
    checkpoint_dir: str,
    keep_checkpoints: int,
    metrics_jsonl: str | None,
    export_dataset: str | None,
    progress: bool | None,
    seed: int,
    as_json: bool,
) -> None:
    """Rejection-sampling fine-tuning: roll out, keep the best replies by reward, fine-tune on them, repeat."""
    setup_logging()
    if tasks_path is None and agent != BUILTIN_AGENT:
        raise click.UsageError("--agent needs --tasks: the built-in tasks are for the built-in agent")
    from ..tasks import split_tasks

    builtin_train, builtin_val = split_tasks(seed=seed, train=64)
    tasks = load_tasks(tasks_path, "--tasks") if tasks_path is not None else builtin_train
    if val_tasks is not None:
        val = load_tasks(val_tasks, "--val-tasks")
    else:
        val = builtin_val if tasks_path is None else []
    config = SFTConfig(
        model_dir=model_dir,
        iterations=max_iterations,
        max_minutes=max_minutes,
        tasks_per_iteration=tasks_per_iteration,
        samples_per_task=samples_per_task,
        temperature=temperature,
        max_tokens=max_tokens,
        keep_fraction=keep_fraction,
        min_reward=min_reward,
        learning_rate=learning_rate,
        epochs=epochs,
        batch_size=batch_size,
        max_steps=max_steps,
        device=device,
        train_threads=train_threads,
        job_timeout=job_timeout,
        train_queue=train_queue,
        start_local_trainer=local_trainer,
        checkpoint_dir=checkpoint_dir,
        keep_checkpoints=keep_checkpoints,
        metrics_path=metrics_jsonl,
        export_dataset=export_dataset,
        progress=progress,
        seed=seed,
        checker=checker_for(agent, checker),
    )
    try:
        result = run_sft(
            config,
            agent,
            tasks,
            val,
            upstream=upstream,
            vllm_args=vllm_args,
            n_workers=n_workers,
            concurrency=concurrency,
            redis_url=redis_url,
        )
    except (ValueError, ImportError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(result, indent=2, default=str) if as_json else _table(result))


def run_sft(
    config: SFTConfig,
    agent: str,
    tasks: list[Any],
    val: list[Any] | None = None,
    *,
    upstream: str = "local",
    vllm_args: tuple[str, ...] = (),
    n_workers: int = 2,
    concurrency: int = 4,
    redis_url: str | None = None,
) -> dict[str, Any]:
    """Serve the model, run SFT through a Trainer with local workers, purge the run's namespace."""
    return run_training(
        lambda reloader: SFT(config, reloader),
        agent,
        tasks,
        val,
        checkpoint_root=config.checkpoint_dir,
        model_dir=config.model_dir,
        upstream=Upstream(kind=upstream, vllm_args=vllm_args),
        n_workers=n_workers,
        worker_concurrency=concurrency,
        redis_url=redis_url,
        namespace=f"sft-{uuid.uuid4().hex[:8]}",
    )


def _table(result: dict[str, Any]) -> str:
    lines = [
        "",
        "iteration  rollouts  succeeded  mean reward  accuracy  kept/rows  kept reward  loss    rollout s  train s",
    ]
    for it in result["iterations"]:
        reward = "-" if it["reward_mean"] is None else f"{it['reward_mean']:.3f}"
        accuracy = "-" if it.get("train_accuracy") is None else f"{it['train_accuracy']:.3f}"
        kept_reward = "-" if it["kept_reward_mean"] is None else f"{it['kept_reward_mean']:.3f}"
        loss = (it.get("train") or {}).get("loss_mean")
        lines.append(
            f"{it['iteration']:>9}  {it['rollouts']:>8}  {it['succeeded']:>9}  {reward:>11}  {accuracy:>8}  "
            f"{it['kept']:>4}/{it['rows']:<4}  {kept_reward:>11}  {'-' if loss is None else f'{loss:.3f}':<6}  "
            f"{it['rollout_seconds']:>9}  {it.get('train_seconds', '-'):>7}"
        )
    if result.get("before") is not None and result.get("after") is not None:
        lines += ["", *held_out_table(result["before"], result["after"])]
    lines += [
        "",
        f"final checkpoint: {result['checkpoint']} (stopped by {result['stopped']})",
        f"metrics: {result['metrics_path']}",
    ]
    if result.get("exported_rows") is not None:
        lines.append(f"exported {result['exported_rows']} selected rows as a datasets.Dataset")
    return "\n".join(lines)
