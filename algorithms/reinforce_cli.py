"""`python -m algorithms.reinforce`: REINFORCE on SmolLM2-135M (or your checkpoint, task and agent).

By default everything runs here: the store (Redis at 127.0.0.1:6379, else embedded), `lq serve-model`,
the proxy, two worker processes. `--model-server-url` / `--proxy-url` / `--workers 0` use running
ones instead (the Procfile does), and `--upstream vllm --device cuda` is the GPU setup.
"""

from __future__ import annotations

import functools
import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from lightning_queue.model_server.admin import ADMIN_TOKEN_ENV

from .evaluation import HeldOut, accuracy_gain, held_out_table
from .launch import Upstream, run_training, setup_logging
from .reinforce import Reinforce, ReinforceConfig

BUILTIN_AGENT = "algorithms.tasks:arithmetic_agent"
BUILTIN_CHECKER = "algorithms.tasks:check"


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
    """Per-iteration training reward and accuracy, then the held-out table (accuracy, reward, replies)."""
    lines = ["", "iteration  rollouts  samples  train reward (mean ± std)  train acc  rollout s  update s"]
    for it in result["iterations"]:
        reward = f"{it['reward_mean']:>10.3f} ± {it['reward_std']:<12.3f}"
        accuracy = "-" if it.get("train_accuracy") is None else f"{it['train_accuracy']:.3f}"
        lines.append(
            f"{it['iteration']:>9}  {it['rollouts']:>8}  {it['samples']:>7}  {reward}  {accuracy:>9}  "
            f"{it['rollout_seconds']:>9}  {it['update_seconds']:>8}"
        )
    before: HeldOut | None = result.get("before")
    after: HeldOut | None = result.get("after")
    if before is not None and after is not None:
        lines += ["", *held_out_table(before, after)]
    lines.append(f"\nfinished in {seconds / 60:.1f} min")
    return "\n".join(lines)


def seeds_table(runs: Sequence[dict[str, Any]], seconds: float) -> str:
    """One row per seed (held-out accuracy before, after, gain ± its stderr), then mean ± std over seeds."""
    lines = ["", f"{len(runs)} seeds   accuracy before   after    gain ± se        gain > 2 se   minutes"]
    befores, afters, gains = [], [], []
    for run in runs:
        before, after = run["before"], run["after"]
        gain = accuracy_gain(before, after)
        if gain is None:
            lines.append(f"seed {run['seed']:<3}  (no checker: accuracy not measured)")
            continue
        befores.append(before.accuracy)
        afters.append(after.accuracy)
        gains.append(gain.accuracy)
        lines.append(
            f"seed {run['seed']:<3}  {before.accuracy:15.3f}   {after.accuracy:5.3f}  "
            f"{gain.accuracy:+6.3f} ± {gain.stderr:5.3f}   {'yes' if gain.significant else 'NO':>11}   "
            f"{run['seconds'] / 60:7.1f}"
        )
    if len(gains) > 1:
        lines.append(f"mean ± std {_mean_std(befores):>13}  {_mean_std(afters)}  {_mean_std(gains)}")
    lines.append(f"\nall seeds finished in {seconds / 60:.1f} min")
    return "\n".join(lines)


def _mean_std(values: Sequence[float]) -> str:
    return f"{statistics.fmean(values):.3f} ± {statistics.stdev(values):.3f}"


def jsonable(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its evaluations as plain records (for --json)."""
    return {k: v.record() if isinstance(v, HeldOut) else v for k, v in result.items()}


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
@click.option("--max-tokens", default=16, show_default=True, help="Reply length limit handed to the agent.")
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
@click.option("--checker", default=None,
              help="The task's checker (module:name, see algorithms/evaluation.py) for held-out accuracy. "
              "Default: the built-in task's; none for other agents (accuracy is then not reported).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seed of the first run.")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Independent runs with seeds seed, seed+1, ...; a table of accuracy gains over them.")  # fmt: skip
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
    checker: str | None,
    seed: int,
    seeds: int,
    as_json: bool,
) -> list[dict[str, Any]]:
    """Build the runs from CLI-shaped options (shared by `lq demo`), run them one seed after another, report."""
    if agent != BUILTIN_AGENT and (train_tasks is None or val_tasks is None):
        raise click.UsageError("--agent needs --train-tasks and --val-tasks: the built-in tasks fit the built-in agent")
    if upstream == "external" and not model_server_url:
        raise click.UsageError("--upstream external needs --model-server-url")
    if checker is None and agent == BUILTIN_AGENT:
        checker = BUILTIN_CHECKER
    runs = []
    started = time.monotonic()
    for run_seed in range(seed, seed + seeds):
        config = ReinforceConfig(
            model_dir=model_dir, iterations=max_iterations, tasks_per_iteration=tasks_per_iteration,
            samples_per_task=samples_per_task, learning_rate=learning_rate, temperature=temperature,
            max_tokens=max_tokens, metrics_path=metrics_jsonl, max_minutes=max_minutes, device=device,
            torch_threads=torch_threads, seed=run_seed, proxy_url=proxy_url, checker=checker,
            checkpoint_dir=checkpoint_dir if seeds == 1 else str(Path(checkpoint_dir) / f"seed-{run_seed}"),
        )  # fmt: skip
        train, val = _tasks(train_tasks, val_tasks, run_seed)
        run_started = time.monotonic()
        try:
            result = run_training(
                functools.partial(Reinforce, config),
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
        seconds = time.monotonic() - run_started
        result.update(seed=run_seed, seconds=seconds)
        runs.append(result)
        click.echo(json.dumps(jsonable(result), indent=2, default=str) if as_json else result_table(result, seconds))
    if seeds > 1 and not as_json:
        click.echo(seeds_table(runs, time.monotonic() - started))
    return runs


def _tasks(train_tasks: Path | None, val_tasks: Path | None, seed: int) -> tuple[list[Any], list[Any]]:
    """The given task files, else the built-in sums of this seed (training and held-out sets share no sum)."""
    from .tasks import split_tasks

    train, val = split_tasks(seed=seed)
    return (
        load_tasks(train_tasks, "--train-tasks") if train_tasks else train,
        load_tasks(val_tasks, "--val-tasks") if val_tasks else val,
    )
