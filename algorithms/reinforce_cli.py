"""`python -m algorithms.reinforce`: REINFORCE on SmolLM2-135M (or your checkpoint, task and agent).

By default everything runs here: the store (Redis at 127.0.0.1:6379, else embedded), `lq serve-model`,
the proxy, two worker processes. `--model-server-url` / `--proxy-url` / `--workers 0` use running
ones instead (the Procfile does), and `--upstream vllm --device cuda` is the GPU setup.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import click

from lightning_queue.model_server.admin import ADMIN_TOKEN_ENV

from .launch import Upstream, run_training, setup_logging
from .reinforce import Evaluation, Reinforce, ReinforceConfig

BUILTIN_AGENT = "algorithms.tasks:arithmetic_agent"


def load_tasks(path: Path, option: str) -> list[Any]:
    """One JSON value per non-empty line; a bad line is an error naming the file and line."""
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                tasks.append(json.loads(line))
            except ValueError as exc:
                raise click.BadParameter(f"line {number} of {path} is not JSON: {exc}", param_hint=option) from None
    if not tasks:
        raise click.BadParameter(f"{path} holds no tasks (one JSON value per line)", param_hint=option)
    return tasks


def result_table(result: dict[str, Any], seconds: float) -> str:
    """Per-iteration training reward, then held-out reward before and after."""
    lines = ["", "iteration  rollouts  samples  train reward (mean ± std)  rollout s  update s"]
    for it in result["iterations"]:
        reward = f"{it['reward_mean']:>10.3f} ± {it['reward_std']:<12.3f}"
        lines.append(
            f"{it['iteration']:>9}  {it['rollouts']:>8}  {it['samples']:>7}  {reward}  "
            f"{it['rollout_seconds']:>9}  {it['update_seconds']:>8}"
        )
    before: Evaluation | None = result.get("before")
    after: Evaluation | None = result.get("after")
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


@click.command("reinforce")
@click.option("--model", "model_dir", default=None, help="Checkpoint to start from. Default: SmolLM2-135M-Instruct.")
@click.option("--agent", default=BUILTIN_AGENT, show_default=True, help="The agent the workers run (module:name).")
@click.option("--train-tasks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL tasks for --agent. Default: built-in sums.")  # fmt: skip
@click.option("--val-tasks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL held-out tasks. Default: built-in sums.")  # fmt: skip
@click.option("--max-iterations", default=8, show_default=True, type=click.IntRange(min=1), help="Policy updates.")
@click.option("--max-minutes", default=None, type=float, help="Start no iteration after this long.")
@click.option("--tasks-per-iteration", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--samples-per-task", default=4, show_default=True, type=click.IntRange(min=2),
              help="Rollouts per task; their mean reward is the baseline.")  # fmt: skip
@click.option("--learning-rate", default=2e-5, show_default=True)
@click.option("--temperature", default=1.0, show_default=True, help="Sampling temperature of training rollouts.")
@click.option("--max-tokens", default=24, show_default=True, help="Reply length limit handed to the agent.")
@click.option("--device", default="cpu", show_default=True, help="Where the update runs: cpu, cuda, cuda:1 ...")
@click.option("--torch-threads", default=2, show_default=True, help="CPU threads of the update step.")
@click.option("--upstream", type=click.Choice(["local", "external", "vllm"]), default="local", show_default=True,
              help="Start lq serve-model, use one at --model-server-url, or vllm serve per checkpoint.")  # fmt: skip
@click.option("--model-server-url", default=None, help="With --upstream external: its /v1 URL.")
@click.option("--model-server-token-file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --upstream external: the server's --admin-token-file (--checkpoint-dir must lie "
              "inside its --checkpoint-root). Env LQ_MODEL_ADMIN_TOKEN gives the token itself.")  # fmt: skip
@click.option("--vllm-arg", "vllm_args", multiple=True, help="Extra `vllm serve` argument (repeatable).")
@click.option(
    "--proxy-url", default=None, help="Publish a running `lq proxy` (same namespace) instead of starting one."
)
@click.option("--workers", "n_workers", default=2, show_default=True, type=click.IntRange(min=0),
              help="Local worker processes; 0 when `lq worker` pools run elsewhere.")  # fmt: skip
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(min=1), help="Rollouts per worker.")
@click.option("--redis-url", envvar="LQ_REDIS_URL", default=None, help="Default: 127.0.0.1:6379, else embedded.")
@click.option("--namespace", envvar="LQ_NAMESPACE", default=None, help="Default: a fresh one per run.")
@click.option("--keep-data", is_flag=True, help="Keep the run's rollouts and spans in Redis afterwards.")
@click.option("--checkpoint-dir", default="checkpoints/reinforce", show_default=True)
@click.option("--metrics-jsonl", default="checkpoints/reinforce/metrics.jsonl", show_default=True)
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reinforce_command(**options: Any) -> None:
    """Policy-gradient training of the served model on the rewards the agent earns."""
    setup_logging()
    run_and_report(**options)


def run_and_report(
    *,
    model_dir: str | None,
    agent: str,
    train_tasks: Path | None,
    val_tasks: Path | None,
    max_iterations: int,
    max_minutes: float | None,
    tasks_per_iteration: int,
    samples_per_task: int,
    learning_rate: float,
    temperature: float,
    max_tokens: int,
    device: str,
    torch_threads: int,
    upstream: str,
    model_server_url: str | None,
    vllm_args: tuple[str, ...],
    model_server_token_file: Path | None = None,
    proxy_url: str | None,
    n_workers: int,
    concurrency: int,
    redis_url: str | None,
    namespace: str | None,
    keep_data: bool,
    checkpoint_dir: str,
    metrics_jsonl: str | None,
    seed: int,
    as_json: bool,
) -> dict[str, Any]:
    """Build the run from CLI-shaped options (shared by `lq demo`), run it, print the report."""
    from .tasks import make_tasks

    if agent != BUILTIN_AGENT and (train_tasks is None or val_tasks is None):
        raise click.UsageError("--agent needs --train-tasks and --val-tasks: the built-in tasks fit the built-in agent")
    if upstream == "external" and not model_server_url:
        raise click.UsageError("--upstream external needs --model-server-url")
    train = load_tasks(train_tasks, "--train-tasks") if train_tasks else make_tasks(256, seed=seed + 1)
    val = load_tasks(val_tasks, "--val-tasks") if val_tasks else make_tasks(24, seed=seed + 2)
    config = ReinforceConfig(
        model_dir=model_dir, iterations=max_iterations, tasks_per_iteration=tasks_per_iteration,
        samples_per_task=samples_per_task, learning_rate=learning_rate, temperature=temperature,
        max_tokens=max_tokens, checkpoint_dir=checkpoint_dir, metrics_path=metrics_jsonl, max_minutes=max_minutes,
        device=device, torch_threads=torch_threads, seed=seed, proxy_url=proxy_url,
    )  # fmt: skip
    started = time.monotonic()
    try:
        result = run_training(
            lambda reloader: Reinforce(config, reloader),
            agent,
            train,
            val,
            checkpoint_root=checkpoint_dir,
            model_dir=model_dir,
            upstream=Upstream(
                kind=upstream,
                base_url=model_server_url,
                vllm_args=vllm_args,
                admin_token=os.environ.get(ADMIN_TOKEN_ENV),
                admin_token_file=model_server_token_file,
            ),
            use_proxy=proxy_url is None,
            n_workers=n_workers,
            worker_concurrency=concurrency,
            redis_url=redis_url,
            namespace=namespace,
            keep_data=keep_data,
        )
    except (ValueError, ImportError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from exc
    seconds = time.monotonic() - started
    click.echo(json.dumps(result, indent=2, default=str) if as_json else result_table(result, seconds))
    return result
