"""`python -m algorithms.reinforce`: REINFORCE on SmolLM2-135M (or your checkpoint, task and agent).

By default everything runs here: the store (Redis at 127.0.0.1:6379, else embedded), `lq serve-model`,
the proxy, two worker processes. `--model-server-url` / `--proxy-url` / `--workers 0` use running
ones instead (the Procfile does), and `--upstream vllm --device cuda` is the GPU setup.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from lightning_queue.model_server.admin import ADMIN_TOKEN_ENV
from lightning_queue.options import field_option
from lightning_queue.store.settings import RedisSettings, redis_url_option
from workers.settings import WorkerSettings

from ..evaluation import held_out_table
from ..launch import BUILTIN_AGENT, Upstream, checker_for, load_tasks, run_training, setup_logging
from ..seed_runs import SeedPlan, run_seeds, seeds_table
from .algorithm import Reinforce, ReinforceConfig
from .asynchronous import AsyncReinforce


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
    training = result.get("training") or {}
    if training.get("worker_idle_fraction") is not None:
        lines.append(
            f"\nworker idle fraction {training['worker_idle_fraction']:.3f} over {training['window_seconds']:.0f} s "
            f"of training ({training['worker_slots']} slots)"
        )
    if "staleness" in training:
        lines.append(
            f"staleness (versions behind: samples) {training['staleness']}, "
            f"{training['dropped_stale']} dropped as staler than {training['max_staleness']}"
        )
    before, after = result.get("before"), result.get("after")
    if before is not None and after is not None:
        lines += ["", *held_out_table(before, after)]
    lines.append(f"\nfinished in {seconds / 60:.1f} min")
    return "\n".join(lines)


@click.command("reinforce")
@click.option("--model", "model_dir", default=None, help="Checkpoint to start from. Default: SmolLM2-135M-Instruct.")
@field_option(WorkerSettings, "agent", default=(BUILTIN_AGENT, BUILTIN_AGENT))
@click.option("--train-tasks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL tasks for --agent. Default: built-in sums.")  # fmt: skip
@click.option("--val-tasks", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="JSONL held-out tasks. Default: built-in sums.")  # fmt: skip
@click.option("--val-size", default=48, show_default=True, type=click.IntRange(min=2, max=200),
              help="Held-out built-in sums per seed (with the built-in tasks).")  # fmt: skip
@click.option("--max-iterations", default=8, show_default=True, type=click.IntRange(min=1), help="Policy updates.")
@click.option("--max-minutes", default=None, type=click.FloatRange(min=0, min_open=True),
              help="Start no iteration after this many minutes of training (not counting evaluation).")  # fmt: skip
@click.option("--async", "asynchronous", is_flag=True,
              help="Keep the workers rolling out while the policy trains (reinforce/asynchronous.py).")  # fmt: skip
@click.option("--max-staleness", default=None, type=click.IntRange(min=0),
              help="With --async: train on rollouts at most this many policy versions old. Default 1.")  # fmt: skip
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
@field_option(WorkerSettings, "concurrency", default=(4, "4 per worker process"))
@redis_url_option
@field_option(RedisSettings, "namespace", default=(None, "a fresh one per run"))
@click.option("--keep-data", is_flag=True, help="Keep the run's rollouts and spans in Redis afterwards.")
@click.option("--checkpoint-dir", default="checkpoints/reinforce", show_default=True)
@click.option("--metrics-jsonl", default="checkpoints/reinforce/metrics.jsonl", show_default=True)
@click.option("--checker", default=None,
              help="The task's checker (module:name, see algorithms/evaluation.py) for held-out accuracy. "
              "Default: the built-in task's; none for other agents (accuracy is then not reported).")  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seed of the first run.")
@click.option("--seeds", default=1, show_default=True, type=click.IntRange(min=1),
              help="Independent runs with seeds seed, seed+1, ...; a table of accuracy gains over them.")  # fmt: skip
@click.option("--parallel", default=1, show_default=True, type=click.IntRange(min=1),
              help="Seeds run at once, each in processes of its own (fills the idle core).")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def reinforce_command(**options: Any) -> None:
    """Policy-gradient training of the served model on the rewards the agent earns."""
    setup_logging()
    run_and_report(**options)


def run_and_report(*, seeds: int, parallel: int, as_json: bool, **options: Any) -> list[dict[str, Any]]:
    """Check CLI-shaped options (shared by `lq demo`), run every seed, print each run and the gains over seeds."""
    if options["agent"] != BUILTIN_AGENT and (options["train_tasks"] is None or options["val_tasks"] is None):
        raise click.UsageError("--agent needs --train-tasks and --val-tasks: the built-in tasks fit the built-in agent")
    if options.get("max_staleness") is not None and not options.get("asynchronous"):
        raise click.UsageError("--max-staleness bounds the asynchronous loop: add --async")
    if options.get("asynchronous") and options.get("max_staleness") is None:
        options["max_staleness"] = 1
    if options["upstream"] == "external" and not options["model_server_url"]:
        raise click.UsageError("--upstream external needs --model-server-url")
    options["checker"] = checker_for(options["agent"], options["checker"])
    if seeds > 1 and parallel > 1 and (options["upstream"] == "external" or options["proxy_url"]):
        # Seeds side by side would load their checkpoints into one server, or share one proxy's namespace.
        raise click.UsageError(
            "--parallel > 1 needs a model server and a proxy per seed: drop --upstream "
            "external / --proxy-url, or run the seeds one after another (--parallel 1)"
        )
    first = options.pop("seed")
    # JSON-able, so each seed can run in a child process.
    options = {k: str(v) if isinstance(v, Path) else v for k, v in options.items()}
    run_dir = Path(options["checkpoint_dir"])
    plan = SeedPlan("algorithms.reinforce.cli:run_seed", options, run_dir)
    started = time.monotonic()
    try:
        if seeds == 1:
            runs = [{**run_seed(options, first, None), "seed": first}]
            runs[0]["seconds"] = time.monotonic() - started
        else:
            runs = run_seeds(plan, range(first, first + seeds), parallel)
    except (ValueError, ImportError, RuntimeError, TimeoutError) as exc:
        raise click.ClickException(str(exc)) from exc
    for run in runs:
        click.echo(json.dumps(run, indent=2, default=str) if as_json else result_table(run, run["seconds"]))
    if seeds > 1 and not as_json:
        click.echo(seeds_table(runs, time.monotonic() - started))
    return runs


def run_seed(options: Mapping[str, Any], seed: int, metrics: Path | None) -> dict[str, Any]:
    """One REINFORCE run of `seed` (a `SeedRecipe`): its own tasks, checkpoints and metrics file."""
    checkpoint_dir = options["checkpoint_dir"] if metrics is None else str(metrics.parent)
    config = ReinforceConfig(
        model_dir=options["model_dir"], iterations=options["max_iterations"],
        tasks_per_iteration=options["tasks_per_iteration"], samples_per_task=options["samples_per_task"],
        learning_rate=options["learning_rate"], temperature=options["temperature"],
        max_tokens=options["max_tokens"], max_minutes=options["max_minutes"], device=options["device"],
        torch_threads=options["torch_threads"], seed=seed, proxy_url=options["proxy_url"],
        checker=options["checker"], checkpoint_dir=checkpoint_dir,
        metrics_path=str(metrics) if metrics is not None else options["metrics_jsonl"],
        max_staleness=options.get("max_staleness") if options.get("asynchronous") else None,
        worker_slots=options["n_workers"] * options["concurrency"] or None,
    )  # fmt: skip
    train, val = _tasks(options["train_tasks"], options["val_tasks"], seed, options["val_size"])
    namespace = options["namespace"]
    if namespace and metrics is not None:  # one of several seeds: never mix their rollouts
        namespace = f"{namespace}-seed-{seed}"
    upstream = Upstream(
        kind=options["upstream"],
        base_url=options["model_server_url"],
        vllm_args=tuple(options["vllm_args"]),
        admin_token=os.environ.get(ADMIN_TOKEN_ENV),
        admin_token_file=Path(options["model_server_token_file"]) if options["model_server_token_file"] else None,
    )
    algorithm = AsyncReinforce if config.max_staleness is not None else Reinforce
    return run_training(
        functools.partial(algorithm, config),
        options["agent"],
        train,
        val,
        checkpoint_root=options["checkpoint_dir"],
        model_dir=options["model_dir"],
        upstream=upstream,
        use_proxy=options["proxy_url"] is None,
        n_workers=options["n_workers"],
        worker_concurrency=options["concurrency"],
        redis_url=options["redis_url"],
        namespace=namespace,
        keep_data=options["keep_data"],
    )


def _tasks(train_tasks: str | None, val_tasks: str | None, seed: int, val_size: int) -> tuple[list[Any], list[Any]]:
    """The given task files, else the built-in sums of this seed (training and held-out sets share no sum)."""
    from ..tasks import split_tasks

    train, val = split_tasks(seed=seed, val=val_size)
    return (
        load_tasks(Path(train_tasks), "--train-tasks") if train_tasks else train,
        load_tasks(Path(val_tasks), "--val-tasks") if val_tasks else val,
    )
