"""SFT: rejection-sampling fine-tuning. Roll out, keep the best calls by reward, fine-tune, reload, repeat.

python -m algorithms.sft --help

The loop of Agent-Lightning's unsloth example on this project's pieces. Each iteration publishes the
proxied model as a resources snapshot, enqueues the iteration's tasks `samples_per_task` times each,
waits, turns every rollout's spans into rows (the token ids of each LLM call and the rollout's reward)
and keeps the best `max(1, int(n * keep_fraction))` rows. The fine-tuning itself runs as an rq job on
the queue `lq-train`, executed by `lq trainer` in a forked process (started locally when no trainer
listens), which writes a new checkpoint; the inference server then loads it and the next iteration
samples from the fine-tuned model.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
import shutil
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_queue import LLMProxy, LlmProxyTraceToTriplet, find_final_reward, with_llm_proxy, with_store
from lightning_queue.algorithm import Algorithm, batch_iter_over_dataset
from lightning_queue.store.base import LightningStore
from lightning_queue.types import EnqueueRolloutRequest, Rollout, RolloutConfig

from ..evaluation import Checker, HeldOut, Scored, evaluate_held_out, load_checker, progress_line, score_rollout
from ..progress import Progress
from ..reloaders import Reloader
from ..rollouts import wait_all
from ..train_queue import TrainingJobError, TrainingQueue, job_path
from ..trainer_worker import TRAIN_QUEUE
from .job import JOB_FUNCTION
from .rows import Row, export_dataset, require_datasets, rows_from_triplets, select_best

logger = logging.getLogger(__name__)


@dataclass
class SFTConfig:
    """What one SFT run does. Times are seconds unless the name says otherwise."""

    model_dir: str | None = None  # the checkpoint the server starts with; None: the default SmolLM2-135M
    iterations: int = 2
    max_minutes: float | None = None  # no new iteration starts after this long
    tasks_per_iteration: int | None = None  # None: every train task in every iteration (the seed's loop)
    samples_per_task: int = 4
    temperature: float = 1.0
    max_tokens: int | None = None  # passed to the agent as a sampling parameter when set
    keep_fraction: float = 0.5
    min_reward: float | None = None  # kept rows below it are dropped too
    # the fine-tuning job's settings (see algorithms.sft.job.fine_tune)
    learning_rate: float = 1e-5
    epochs: int = 1
    batch_size: int = 4
    max_length: int = 1024
    max_steps: int | None = None
    device: str = "auto"
    train_threads: int | None = None  # torch CPU threads of the job; None: torch's choice
    job_function: str = JOB_FUNCTION
    job_timeout: float = 3600.0
    train_queue: str = TRAIN_QUEUE
    redis_url: str | None = None  # where the rq queue lives; None: the store's Redis
    start_local_trainer: bool = True
    # where things go
    checkpoint_dir: str = "checkpoints/sft"  # each run writes into a fresh sub-directory
    keep_checkpoints: int | None = 2  # newest checkpoints of this run to keep on disk; None keeps all
    metrics_path: str | None = None  # None: metrics.jsonl in the run's directory
    export_dataset: str | None = None  # save the selected rows as a datasets.Dataset here
    rollout_timeout: float = 600.0
    # The task's checker (`module:name`, see algorithms/evaluation.py): held-out and training accuracy.
    checker: str | None = None
    eval_temperature: float = 0.0  # held-out rollouts (before the first and after the last iteration)
    progress: bool | None = None  # None: a progress bar on a terminal, log lines elsewhere
    seed: int = 0
    retry: RolloutConfig = field(
        default_factory=lambda: RolloutConfig(max_attempts=2, retry_condition=["failed", "unresponsive"])
    )

    def check(self) -> None:
        for name in ("iterations", "samples_per_task", "epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"SFTConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        if not 0 < self.keep_fraction <= 1:
            raise ValueError(f"SFTConfig.keep_fraction must be in (0, 1], got {self.keep_fraction!r}")
        for name in ("tasks_per_iteration", "keep_checkpoints", "max_steps", "train_threads"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"SFTConfig.{name} must be >= 1 or None, got {getattr(self, name)!r}")
        job_path(self.job_function)

    def job_settings(self, iteration: int) -> dict[str, Any]:
        return {
            "learning_rate": self.learning_rate,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_length": self.max_length,
            "max_steps": self.max_steps,
            "device": self.device,
            "threads": self.train_threads,
            "seed": self.seed + iteration,
        }


@dataclass
class _Rollouts:
    """What came back from one iteration's rollouts."""

    total: int
    finished: int = 0
    succeeded: int = 0
    rewards: list[float] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    scored: list[Scored] = field(default_factory=list)


class SFT(Algorithm):
    """Rejection-sampling fine-tuning of the served model, with the fine-tuning step on `lq trainer`.

    Args:
        config: the run's settings.
        reloader: how the inference server picks up each new checkpoint (e.g. `LocalServerReloader`);
            None leaves the server as it is, so later iterations still sample from the old weights.
        clock: seconds for `max_minutes` (tests pass a controllable one).
    """

    def __init__(
        self, config: SFTConfig, reloader: Reloader | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        super().__init__()
        config.check()
        self.config = config
        self.reloader = reloader
        self.clock = clock
        self.history: list[dict[str, Any]] = []
        self.run_dir: Path | None = None
        self.checker: Checker | None = load_checker(config.checker) if config.checker else None

    @with_llm_proxy(required=True)
    @with_store
    async def run(
        self, store: LightningStore, llm_proxy: LLMProxy, train_dataset: Any = None, val_dataset: Any = None
    ) -> dict[str, Any]:
        cfg = self.config
        if not train_dataset:
            raise ValueError("SFT needs a non-empty train_dataset")
        if cfg.export_dataset:
            require_datasets()  # now, not after an hour of rollouts
        started = self.clock()
        current = Path(cfg.model_dir) if cfg.model_dir else await asyncio.to_thread(_default_model_dir)
        if not (current / "config.json").is_file():
            raise ValueError(f"model_dir {str(current)!r} is not a Hugging Face checkpoint directory (no config.json)")
        self.run_dir = run_dir = _fresh_run_dir(Path(cfg.checkpoint_dir))
        metrics_path = Path(cfg.metrics_path) if cfg.metrics_path else run_dir / "metrics.jsonl"
        queue = TrainingQueue(
            self._redis_url(store),
            queue=cfg.train_queue,
            start_local=cfg.start_local_trainer,
            allowed=(job_path(cfg.job_function).rpartition(".")[0],),
            log_path=run_dir / "trainer.log",
        )
        records: list[dict[str, Any]] = []
        stopped = "iterations"
        val = list(val_dataset or [])
        before = after = None
        try:
            await asyncio.to_thread(queue.check)
            if val:
                before = await self.evaluate(store, llm_proxy, val, "before", metrics_path)
            batches = self._batches(list(train_dataset))
            with Progress(cfg.iterations, "SFT", enabled=cfg.progress) as progress:
                for iteration in range(1, cfg.iterations + 1):
                    if cfg.max_minutes is not None and self.clock() - started >= cfg.max_minutes * 60:
                        logger.warning(
                            "stopping before iteration %d: max_minutes %.1f reached", iteration, cfg.max_minutes
                        )
                        stopped = "max_minutes"
                        break
                    output = run_dir / f"version_{iteration}"
                    record, kept = await self._iteration(
                        store, llm_proxy, queue, next(batches), iteration, current, output, progress
                    )
                    records += [row.record(iteration) for row in kept]
                    if record["checkpoint"] is not None:
                        current = Path(record["checkpoint"])
                        self._prune(run_dir, current)
                    self._log(metrics_path, record)
                    progress.advance(_summary(record))
            if val:
                after = await self.evaluate(store, llm_proxy, val, "after", metrics_path)
        finally:
            await asyncio.to_thread(queue.close)
        exported = None
        if cfg.export_dataset:
            exported = await asyncio.to_thread(export_dataset, records, Path(cfg.export_dataset))
        return {
            "checkpoint": str(current),
            "run_dir": str(run_dir),
            "metrics_path": str(metrics_path),
            "iterations": self.history,
            "stopped": stopped,
            "exported_rows": exported,
            "before": before.record() if before else None,
            "after": after.record() if after else None,
        }

    def _redis_url(self, store: LightningStore) -> str:
        url = self.config.redis_url or getattr(store, "url", None)
        if not url:
            raise ValueError(
                "SFT needs a Redis URL for its training queue, and the store has none (it was built from a "
                "client factory): set SFTConfig.redis_url"
            )
        return str(url)

    def _batches(self, tasks: list[Any]) -> Iterator[list[Any]]:
        size = self.config.tasks_per_iteration
        return batch_iter_over_dataset(tasks, size, seed=self.config.seed) if size else itertools.repeat(tasks)

    async def _iteration(
        self,
        store: LightningStore,
        llm_proxy: LLMProxy,
        queue: TrainingQueue,
        tasks: Sequence[Any],
        iteration: int,
        current: Path,
        output: Path,
        progress: Progress,
    ) -> tuple[dict[str, Any], list[Row]]:
        """Roll out, select, fine-tune `current` into `output`, reload; returns the metrics and the kept rows."""
        cfg = self.config
        began = time.monotonic()
        outcome = await self._roll_out(store, llm_proxy, tasks, progress)
        rolled = time.monotonic()
        if not outcome.succeeded:
            raise RuntimeError(
                f"iteration {iteration}: none of {outcome.total} rollouts succeeded ({outcome.finished} finished "
                f"within {cfg.rollout_timeout:.0f}s); the workers' log says why (is the inference server up?)"
            )
        rng = random.Random(f"{cfg.seed}-{iteration}")
        kept = select_best(outcome.rows, cfg.keep_fraction, rng, cfg.min_reward)
        record: dict[str, Any] = {
            "iteration": iteration,
            "model": str(current),
            "rollouts": outcome.total,
            "finished": outcome.finished,
            "succeeded": outcome.succeeded,
            "reward_mean": statistics.fmean(outcome.rewards) if outcome.rewards else None,
            "rows": len(outcome.rows),
            "kept": len(kept),
            "kept_reward_mean": statistics.fmean(r.reward for r in kept) if kept else None,
            **self._train_accuracy(outcome),
            "job_id": None,
            "checkpoint": None,
            "train": None,
            "rollout_seconds": round(rolled - began, 2),
        }
        if not kept:
            # Only min_reward can empty the selection: nothing this iteration is worth imitating.
            logger.warning("iteration %d: no row reached min_reward %s; no fine-tuning", iteration, cfg.min_reward)
            return record, kept
        job_id = await asyncio.to_thread(
            queue.submit,
            cfg.job_function,
            timeout=cfg.job_timeout,
            description=f"SFT iteration {iteration}: {len(kept)} samples from {current.name} -> {output}",
            base_model=str(current),
            output_dir=str(output),
            samples=[row.job_sample() for row in kept],
            **cfg.job_settings(iteration),
        )
        record["job_id"] = job_id
        result = await asyncio.to_thread(queue.wait, job_id, cfg.job_timeout + 60)
        if not isinstance(result, dict) or not isinstance(result.get("checkpoint"), str):
            raise TrainingJobError(
                job_id, f"training job {job_id} returned {result!r:.200}, not {{checkpoint, metrics}}"
            )
        trained = time.monotonic()
        checkpoint = Path(result["checkpoint"])
        if self.reloader is not None:
            await self.reloader.load(checkpoint)
        record.update(
            checkpoint=str(checkpoint),
            train=result.get("metrics"),
            train_seconds=round(trained - rolled, 2),
            reload_seconds=round(time.monotonic() - trained, 2),
        )
        return record, kept

    def _train_accuracy(self, outcome: _Rollouts) -> dict[str, Any]:
        """The iteration's accuracy by the checker (rollouts that did not succeed are wrong), parts, replies."""
        missing = [score_rollout(None, None, None)] * (outcome.total - len(outcome.scored))
        train = HeldOut(outcome.scored + missing, checked=self.checker is not None)
        return {"train_accuracy": train.accuracy, "train_parts": train.parts(), "train_replies": train.samples(3)}

    async def evaluate(
        self, store: LightningStore, llm_proxy: LLMProxy, tasks: Sequence[Any], tag: str, metrics_path: Path
    ) -> HeldOut:
        """Held-out accuracy and reward of the model the server holds now, at the evaluation temperature."""
        sampling: dict[str, Any] = {"temperature": self.config.eval_temperature}
        if self.config.max_tokens is not None:
            sampling["max_tokens"] = self.config.max_tokens
        resource = llm_proxy.as_resource(sampling_parameters=sampling)
        resources_id = (await store.update_resources(f"sft-eval-{tag}", {"main_llm": resource})).resources_id
        result = await evaluate_held_out(
            store,
            tasks,
            resources_id=resources_id,
            checker=self.checker,
            timeout=self.config.rollout_timeout,
            config=self.config.retry,
        )
        self._log(metrics_path, {"evaluation": tag, **result.record()}, history=False)
        return result

    async def _roll_out(
        self, store: LightningStore, llm_proxy: LLMProxy, tasks: Sequence[Any], progress: Progress
    ) -> _Rollouts:
        cfg = self.config
        sampling: dict[str, Any] = {"temperature": cfg.temperature}
        if cfg.max_tokens is not None:
            sampling["max_tokens"] = cfg.max_tokens
        resource = llm_proxy.as_resource(sampling_parameters=sampling)
        resources_id = (await store.add_resources({"main_llm": resource})).resources_id
        requests = [
            EnqueueRolloutRequest(input=task, mode="train", resources_id=resources_id, config=cfg.retry)
            for task in tasks
            for _ in range(cfg.samples_per_task)
        ]
        ids = [r.rollout_id for r in await store.enqueue_many_rollouts(requests)]
        outcome = _Rollouts(total=len(ids))
        adapter = self._adapter()
        progress.rollouts(0, outcome.total)

        async def collect(fresh: list[Rollout], finished: int) -> None:
            outcome.finished = finished
            for rollout in fresh:
                if rollout.status != "succeeded":
                    continue
                outcome.succeeded += 1
                spans = (await store.query_spans(rollout.rollout_id, "latest")).items
                outcome.scored.append(score_rollout(rollout.input, spans, self.checker))
                # A rollout without a reward earned nothing: it counts as 0 in the mean.
                outcome.rewards.append(find_final_reward(spans) or 0.0)
                outcome.rows += rows_from_triplets(adapter.adapt(spans), rollout.rollout_id)
            progress.rollouts(outcome.finished, outcome.total)

        pending = len(ids) - len(await wait_all(store, ids, timeout=cfg.rollout_timeout, on_finished=collect))
        if pending:
            logger.warning(
                "%d of %d rollouts did not finish within %.0fs; going on without them",
                pending,
                outcome.total,
                cfg.rollout_timeout,
            )
        return outcome

    def _adapter(self) -> Any:
        try:
            return self.get_adapter()
        except ValueError:
            return LlmProxyTraceToTriplet()

    def _prune(self, run_dir: Path, current: Path) -> None:
        """Delete this run's older checkpoints beyond `keep_checkpoints`; never the one being served."""
        keep = self.config.keep_checkpoints
        if keep is None:
            return
        versions = sorted(
            (p for p in run_dir.glob("version_*") if p.is_dir() and p.name.removeprefix("version_").isdigit()),
            key=lambda p: int(p.name.removeprefix("version_")),
        )
        for old in versions[:-keep]:
            if old.resolve() != current.resolve():
                shutil.rmtree(old, ignore_errors=True)

    def _log(self, path: Path, record: dict[str, Any], *, history: bool = True) -> None:
        if history:
            self.history.append(record)
        logger.info("%s", progress_line(record))
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(json.dumps({"time": time.time(), **record}, default=str) + "\n")


def _default_model_dir() -> Path:
    from lightning_queue.model_server import resolve_default_model_dir

    return Path(resolve_default_model_dir())


def _fresh_run_dir(root: Path) -> Path:
    """A new directory per run: checkpoints are written once and never overwritten."""
    run_dir = root / f"sft-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:4]}"
    run_dir.mkdir(parents=True)
    return run_dir


def _summary(record: dict[str, Any]) -> str:
    reward = "-" if record["reward_mean"] is None else f"{record['reward_mean']:.3f}"
    loss = (record.get("train") or {}).get("loss_mean")
    trained = f", loss {loss:.3f}" if isinstance(loss, float) else ", no fine-tune" if record["job_id"] is None else ""
    return f"iteration {record['iteration']}: mean reward {reward}, kept {record['kept']}/{record['rows']}{trained}"
