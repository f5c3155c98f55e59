"""REINFORCE with a per-task baseline: roll out through the workers, update the policy, reload the server.

python -m algorithms.reinforce --help

Each iteration publishes the proxied policy as a resources snapshot, enqueues `tasks_per_iteration`
tasks `samples_per_task` times each, waits, turns every rollout's spans into triplets (the proxy
records the token ids the server sampled), takes one policy-gradient step on a local copy of the
model, saves a checkpoint and tells the inference server to load it. Held-out reward is measured
before the first and after the last iteration.

On this project's CPU machines the policy is SmolLM2-135M served by `lq serve-model`; on a GPU
machine pass `--device cuda` for the update and `--upstream vllm` so each checkpoint is served by a
fresh `vllm serve` (see `algorithms/reloaders.py`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning_queue import LLMProxy, LlmProxyTraceToTriplet, with_llm_proxy, with_store
from lightning_queue.algorithm import Algorithm, batch_iter_over_dataset
from lightning_queue.store.base import LightningStore
from lightning_queue.types import LLM, ProxyLLM, RolloutConfig, RolloutMode

from .. import worker_idle
from ..evaluation import Checker, HeldOut, Scored, evaluate_held_out, load_checker, progress_line, score_rollout
from ..launch import POLICY_MODEL
from ..progress import Progress
from ..reloaders import Reloader
from ..rollouts import run_tasks
from .policy import PolicyTrainer, Sample, samples_from_triplets

logger = logging.getLogger(__name__)


@dataclass
class ReinforceConfig:
    model_dir: str | None = None  # None: the default SmolLM2-135M-Instruct weights
    iterations: int = 8
    tasks_per_iteration: int = 8
    samples_per_task: int = 4
    learning_rate: float = 2e-5
    temperature: float = 1.0
    max_tokens: int = 16
    eval_temperature: float = 0.0
    checkpoint_dir: str = "checkpoints/reinforce"
    metrics_path: str | None = None
    max_minutes: float | None = None  # of training: no iteration starts later (held-out evaluation not counted)
    device: str = "cpu"
    torch_threads: int | None = None
    rollout_timeout: float = 600.0
    seed: int = 0
    # Worker slots (workers × concurrency) for the idle fraction; None: what the workers report.
    worker_slots: int | None = None
    # Asynchronous training (algorithms/reinforce/asynchronous.py): rollouts at most this many policy
    # versions behind the one being trained; None for the synchronous loop.
    max_staleness: int | None = None
    # How long a weight sync waits for the proxy's in-flight LLM calls before reloading anyway.
    drain_timeout: float = 60.0
    proxy_url: str | None = None  # an external `lq proxy` to publish when no LLMProxy is wired
    # The task's checker (`module:name`, see algorithms/evaluation.py): accuracy beside the reward.
    checker: str | None = None
    retry: RolloutConfig = field(
        default_factory=lambda: RolloutConfig(max_attempts=2, retry_condition=["failed", "unresponsive"])
    )


class Reinforce(Algorithm):
    """Policy-gradient training of the served model on the rewards the agent's rollouts earn."""

    # "sync" or "async": the metrics file's summary record says which loop ran.
    mode = "sync"

    def __init__(self, config: ReinforceConfig, reloader: Reloader) -> None:
        super().__init__()
        self.config = config
        self.reloader = reloader
        self.history: list[dict[str, Any]] = []
        self.checker: Checker | None = load_checker(config.checker) if config.checker else None

    @with_llm_proxy()
    @with_store
    async def run(
        self, store: LightningStore, llm_proxy: LLMProxy | None, train_dataset: Any = None, val_dataset: Any = None
    ) -> dict[str, Any]:
        if not train_dataset:
            raise ValueError("Reinforce needs a non-empty train_dataset")
        await self._check_ready(store, llm_proxy)
        trainer = await asyncio.to_thread(self._load_policy)
        val = list(val_dataset or [])
        before = await self.evaluate(store, llm_proxy, val, "before") if val else None
        window_start = time.time()
        window_end, extra = await self._train(store, llm_proxy, trainer, list(train_dataset))
        training = {
            "iterations_done": len(self.history),
            "rollouts_consumed": sum(r["rollouts"] for r in self.history),
            "samples_consumed": sum(r["samples"] for r in self.history),
            **extra,
            **(await self._idle(store, window_start, window_end)),
        }
        self._log({"training": self.mode, **training})
        after = await self.evaluate(store, llm_proxy, val, "after") if val else None
        return {
            "before": before.record() if before else None,
            "after": after.record() if after else None,
            "iterations": self.history,
            "training": training,
        }

    async def _check_ready(self, store: LightningStore, llm_proxy: LLMProxy | None) -> None:
        """Fail before loading the model if the store or proxy lacks what this loop needs."""
        if llm_proxy is None and not self.config.proxy_url:
            raise ValueError("Reinforce needs an LLM proxy: wire an LLMProxy or set ReinforceConfig.proxy_url")

    async def _train(
        self, store: LightningStore, llm_proxy: LLMProxy | None, trainer: PolicyTrainer, train: list[Any]
    ) -> tuple[float, dict[str, Any]]:
        """Run the iterations; return when the training window ended (`time.time()`) and summary figures."""
        cfg = self.config
        started = time.monotonic()
        batches = batch_iter_over_dataset(train, cfg.tasks_per_iteration, seed=cfg.seed)
        with Progress(cfg.iterations, "REINFORCE") as progress:
            for iteration in range(cfg.iterations):
                if self._out_of_time(started, iteration):
                    break
                record = await self._iteration(store, llm_proxy, trainer, next(batches), iteration, progress)
                self._log(record)
                progress.advance(f"iteration {iteration + 1}: mean reward {record['reward_mean']:.3f}")
        return time.time(), {"training_seconds": round(time.monotonic() - started, 2)}

    def _out_of_time(self, started: float, iteration: int) -> bool:
        """True once the training budget (--max-minutes, counted from the first training rollout) is spent."""
        budget = self.config.max_minutes
        if budget is None or time.monotonic() - started <= budget * 60:
            return False
        logger.warning("stopping after %d iterations: --max-minutes %.1f reached", iteration, budget)
        return True

    async def _idle(self, store: LightningStore, start: float, end: float) -> dict[str, Any]:
        """The workers' idle fraction over the training window (see algorithms/worker_idle.py)."""
        try:
            return (await worker_idle.measure(store, start=start, end=end, slots=self.config.worker_slots)).record()
        except RuntimeError as exc:  # no worker reported its concurrency (none ran): say so, don't fail the run
            logger.warning("worker idle fraction not measured: %s", exc)
            return {"worker_idle_fraction": None}

    def _load_policy(self) -> PolicyTrainer:
        import torch
        from transformers import AutoModelForCausalLM

        from lightning_queue.model_server import resolve_default_model_dir

        if self.config.torch_threads:
            torch.set_num_threads(self.config.torch_threads)
        torch.manual_seed(self.config.seed)
        # float32: the fast dtype on CPU, and what the update needs for stable small steps.
        model = AutoModelForCausalLM.from_pretrained(
            self.config.model_dir or resolve_default_model_dir(), dtype=torch.float32
        )
        return PolicyTrainer(model, learning_rate=self.config.learning_rate, device=self.config.device)

    async def _publish(self, store: LightningStore, llm_proxy: LLMProxy | None, name: str, temperature: float) -> str:
        sampling = {"temperature": temperature, "max_tokens": self.config.max_tokens}
        return (await store.update_resources(name, {"main_llm": self._resource(llm_proxy, sampling)})).resources_id

    def _resource(self, llm_proxy: LLMProxy | None, sampling: dict[str, Any]) -> LLM:
        """The policy as rollouts reach it: the wired proxy, else the external one at `proxy_url`."""
        if llm_proxy is not None:
            return llm_proxy.as_resource(sampling_parameters=sampling)
        return ProxyLLM(endpoint=str(self.config.proxy_url), model=POLICY_MODEL, sampling_parameters=sampling)

    async def _roll_out(
        self,
        store: LightningStore,
        tasks: Sequence[Any],
        resources_id: str,
        mode: RolloutMode,
        progress: Progress | None = None,
    ) -> list[tuple[Any, str | None]]:
        return await run_tasks(
            store,
            tasks,
            resources_id=resources_id,
            mode=mode,
            timeout=self.config.rollout_timeout,
            config=self.config.retry,
            progress=progress,
        )

    async def _iteration(
        self,
        store: LightningStore,
        llm_proxy: LLMProxy | None,
        trainer: PolicyTrainer,
        batch: list[Any],
        iteration: int,
        progress: Progress,
    ) -> dict[str, Any]:
        cfg = self.config
        started = time.monotonic()
        resources_id = await self._publish(store, llm_proxy, f"policy-train-{iteration}", cfg.temperature)
        tasks = [task for task in batch for _ in range(cfg.samples_per_task)]
        rolled_out = await self._roll_out(store, tasks, resources_id, "train", progress)
        adapter = self._adapter()
        samples: list[Sample] = []
        scored: list[Scored] = []
        for task, rollout_id in rolled_out:
            if rollout_id is None:  # did not succeed: wrong, as in the held-out evaluation
                scored.append(score_rollout(task, None, None))
                continue
            spans = (await store.query_spans(rollout_id, "latest")).items
            samples += samples_from_triplets(adapter.adapt(spans), group=json.dumps(task, sort_keys=True, default=str))
            scored.append(score_rollout(task, spans, self.checker))
        train = HeldOut(scored, checked=self.checker is not None)
        rolled = time.monotonic()
        if not samples:
            raise RuntimeError(
                f"iteration {iteration}: none of {len(tasks)} rollouts produced a triplet with token ids and a reward; "
                "does the upstream return token ids, and does the agent return a reward?"
            )
        metrics = await asyncio.to_thread(trainer.step, samples)
        checkpoint = await asyncio.to_thread(trainer.save, Path(cfg.checkpoint_dir) / f"iter-{iteration + 1}")
        await self.reloader.load(checkpoint)
        return {
            "iteration": iteration + 1,
            "rollouts": len(tasks),
            "succeeded": sum(rid is not None for _task, rid in rolled_out),
            **{k: v for k, v in metrics.items() if k != "samples"},
            "samples": len(samples),
            "train_accuracy": train.accuracy,
            "train_parts": train.parts(),
            "train_replies": train.samples(3),
            "rollout_seconds": round(rolled - started, 2),
            "update_seconds": round(time.monotonic() - rolled, 2),
            "checkpoint": str(checkpoint),
        }

    def _adapter(self) -> Any:
        try:
            return self.get_adapter()
        except ValueError:
            return LlmProxyTraceToTriplet()

    async def evaluate(
        self, store: LightningStore, llm_proxy: LLMProxy | None, tasks: Sequence[Any], tag: str
    ) -> HeldOut:
        """One rollout per held-out task at the evaluation temperature: accuracy by the checker, reward, replies."""
        resources_id = await self._publish(store, llm_proxy, f"policy-eval-{tag}", self.config.eval_temperature)
        result = await evaluate_held_out(
            store,
            tasks,
            resources_id=resources_id,
            checker=self.checker,
            timeout=self.config.rollout_timeout,
            config=self.config.retry,
        )
        self._log({"evaluation": tag, **result.record()})
        return result

    def _log(self, record: dict[str, Any]) -> None:
        if "iteration" in record:
            self.history.append(record)
        # The whole record goes to the metrics file; the log gets one readable line.
        logger.info("seed %d: %s", self.config.seed, progress_line(record))
        if self.config.metrics_path:
            path = Path(self.config.metrics_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(json.dumps({"time": time.time(), "seed": self.config.seed, **record}, default=str) + "\n")
