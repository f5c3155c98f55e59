"""Asynchronous REINFORCE: B rollouts per step, nothing staler than S, a clean namespace, its CLI flags."""

from __future__ import annotations

import json
import statistics
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from algorithms.reinforce import AsyncReinforce, ReinforceConfig
from algorithms.reinforce.asynchronous import Group, admitted_limit, check_staleness_options, drain_proxy, histogram
from algorithms.reinforce.cli import reinforce_command
from algorithms.reinforce.policy import Sample
from algorithms.tasks import make_tasks
from lightning_queue import LLMProxy, LlmProxyTraceToTriplet, RedisLightningStore, Trainer
from lightning_queue.llm_proxy import DrainTimeout
from lightning_queue.store.base import LightningStore
from lightning_queue.testing import StandInModelServer
from lightning_queue.types import Attempt, PaginatedResult, Triplet

from .test_reinforce import RecordingReloader, alternating_answers


class StandInPolicy:
    """The update step without a model: records each batch, takes `seconds` (the workers run meanwhile)."""

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.batches: list[list[Sample]] = []

    def step(self, samples: Sequence[Sample]) -> dict[str, float]:
        time.sleep(self.seconds)
        self.batches.append(list(samples))
        rewards = [s.reward for s in samples]
        return {"loss": 0.0, "grad_norm": 1.0, "reward_mean": statistics.fmean(rewards), "reward_std": 0.0}

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "config.json").write_text("{}")
        return directory


class StandInAsync(AsyncReinforce):
    def __init__(self, config: ReinforceConfig, reloader: RecordingReloader, policy: StandInPolicy) -> None:
        super().__init__(config, reloader)
        self.policy = policy

    def _load_policy(self) -> Any:
        return self.policy


def config(tmp_path: Path, **overrides: Any) -> ReinforceConfig:
    settings: dict[str, Any] = dict(
        iterations=4, tasks_per_iteration=2, samples_per_task=2, checkpoint_dir=str(tmp_path / "ckpt"),
        metrics_path=str(tmp_path / "metrics.jsonl"), rollout_timeout=60, checker="algorithms.tasks:check",
        max_staleness=1, worker_slots=4,
    )  # fmt: skip
    return ReinforceConfig(**{**settings, **overrides})


@pytest.mark.slow
async def test_async_loop_trains_on_b_rollouts_per_step_within_the_bound_and_leaves_the_namespace_clean(
    redis_url: str, tmp_path: Path
) -> None:
    store = RedisLightningStore(redis_url, namespace=f"rf-async-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=0)
    policy = StandInPolicy(seconds=0.5)  # long enough for rollouts of the next batch to finish meanwhile
    reloader = RecordingReloader()
    cfg = config(tmp_path)
    try:
        async with StandInModelServer(responder=alternating_answers(), token_ids="always") as model:
            proxy = LLMProxy(model_list=[{"name": "policy", "base_url": model.url, "model": model.model}])
            trainer = Trainer(
                algorithm=StandInAsync(cfg, reloader, policy), store=store, llm_proxy=proxy,
                adapter=LlmProxyTraceToTriplet(), n_workers=1, worker_concurrency=4, stop_timeout=5,
            )  # fmt: skip
            result = await trainer.fit_async(
                "algorithms.tasks:arithmetic_agent", make_tasks(6, seed=1), val_dataset=make_tasks(2, seed=2)
            )
        rollouts = (await store.query_rollouts()).items
        attempts = {r.rollout_id: (await store.query_attempts(r.rollout_id)).items for r in rollouts}
        paused = await store.claims_paused()
    finally:
        await store.purge()
        await store.aclose()
    records = result["iterations"]
    assert [r["iteration"] for r in records] == [1, 2, 3, 4]
    assert reloader.loaded == [tmp_path / "ckpt" / f"iter-{i}" for i in (1, 2, 3, 4)]
    # B = 2 tasks × 2 samples consumed per step; every sample trained on or dropped as too stale.
    assert all(r["rollouts"] == 4 and r["samples"] + r["dropped_stale"] == 4 for r in records)
    assert [len(b) for b in policy.batches] == [r["samples"] for r in records]
    for r in records:
        assert max(map(int, r["staleness"])) <= cfg.max_staleness
        assert sum(r["staleness"].values()) == r["samples"]
        assert r["policy_version_after"] == r["policy_version"] + 1
        assert r["drain_seconds"] >= 0 and r["sync_seconds"] >= r["drain_seconds"]
    assert [r["policy_version"] for r in records[1:]] == [r["policy_version_after"] for r in records[:-1]]
    # A batch holds whole groups (both samples of a task: the per-task baseline's pair) unless one was dropped.
    for batch, r in zip(policy.batches, records, strict=True):
        if r["dropped_stale"] == 0:
            assert all(sum(s.group == g for s in batch) % 2 == 0 for g in {s.group for s in batch})
    # AReaL's bound on the claims: at version v no more than (S + (v - v0) + 1)·B rollouts admitted.
    first = records[0]["policy_version"]
    train = [r for r in rollouts if r.mode == "train"]
    admitted_at = [first_claim_version(attempts[r.rollout_id]) for r in train if attempts[r.rollout_id]]
    for v in range(first, records[-1]["policy_version_after"] + 1):
        assert sum(a <= v for a in admitted_at) <= admitted_limit(1, 4, v - first)
    # Nothing stranded, claims running again.
    assert not paused
    assert {r.status for r in train} <= {"succeeded", "failed", "cancelled"}
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    kinds = [line.get("evaluation") or line.get("iteration") or line.get("training") for line in lines]
    assert kinds == ["before", 1, 2, 3, 4, "async", "after"]
    summary = lines[5]
    assert sum(summary["staleness"].values()) == summary["samples_consumed"] == sum(r["samples"] for r in records)
    assert summary["worker_slots"] == 4 and 0 <= summary["worker_idle_fraction"] < 1
    assert summary["enqueued"] == len(train)
    # What was enqueued and not trained on is accounted for: cancelled, or rolled out for nothing.
    assert summary["unconsumed_at_end"] == summary["enqueued"] - summary["rollouts_consumed"]
    assert summary["cancelled_at_end"] + summary["rolled_out_unused"] == summary["unconsumed_at_end"]


def first_claim_version(attempts: Sequence[Attempt]) -> int:
    versions = [a.policy_version for a in attempts]
    assert None not in versions, "every attempt records the policy version it was claimed under"
    return min(v for v in versions if v is not None)


class SpansOf:
    """The two store calls `_samples` makes, answered from a table: rollout id -> attempt version."""

    def __init__(self, versions: dict[str, int]) -> None:
        self.versions = versions

    async def query_spans(self, rollout_id: str, attempt_id: str) -> PaginatedResult[Any]:
        return PaginatedResult(items=[], limit=-1, offset=0, total=0)

    async def get_latest_attempt(self, rollout_id: str) -> Attempt:
        return Attempt(
            rollout_id=rollout_id, attempt_id="at-1", sequence_id=1, start_time=0.0,
            policy_version=self.versions[rollout_id],
        )  # fmt: skip


class OneCallEach:
    """An adapter giving each rollout one trainable call; the proxy's version on it when `labelled`."""

    def __init__(self, labelled: dict[str, int] | None = None) -> None:
        self.labelled = labelled or {}
        self.rollout = ""

    def adapt(self, spans: Any) -> list[Triplet]:
        metadata = {"policy_version": self.labelled[self.rollout]} if self.rollout in self.labelled else {}
        return [Triplet(prompt={"token_ids": [1]}, response={"token_ids": [2]}, reward=1.0, metadata=metadata)]


async def test_a_sample_staler_than_s_is_counted_not_trained_on(tmp_path: Path) -> None:
    algorithm = AsyncReinforce(config(tmp_path, max_staleness=1), RecordingReloader())
    versions = {"ro-a": 10, "ro-b": 9, "ro-c": 8, "ro-d": 8}
    # ro-d was claimed at 8, and a sync during it made the proxy label its call 9; the proxy's label of
    # ro-b lags the publish (7): a call never runs on weights older than its claim's, so 9 it is.
    adapter = OneCallEach(labelled={"ro-d": 9, "ro-b": 7})
    store = SpansOf(versions)
    original = store.query_spans

    async def spans(rollout_id: str, attempt_id: str) -> PaginatedResult[Any]:
        adapter.rollout = rollout_id
        return await original(rollout_id, attempt_id)

    store.query_spans = spans  # type: ignore[method-assign]
    algorithm._adapter = lambda: adapter  # type: ignore[method-assign]
    batch = [
        Group({"question": "What is 1 + 2?", "answer": 3}, ["ro-a", "ro-b"],
              {"ro-a": "succeeded", "ro-b": "succeeded"}),
        Group({"question": "What is 2 + 2?", "answer": 4}, ["ro-c", "ro-d", "ro-e"],
              {"ro-c": "succeeded", "ro-d": "succeeded", "ro-e": "failed"}),
    ]  # fmt: skip
    samples, staleness, stale, scored = await algorithm._samples(store, batch, version=10)  # type: ignore[arg-type]
    # ro-a is fresh, ro-b and ro-d one behind; ro-c (8) is more than S=1 behind.
    assert (len(samples), sorted(staleness), stale) == (3, [0, 1, 1], 1)
    assert len(scored) == 5 and scored[-1].reply is None  # the failed one is scored, as wrong


async def test_async_without_the_store_features_is_a_clear_error(tmp_path: Path) -> None:
    algorithm = AsyncReinforce(config(tmp_path), RecordingReloader())
    proxy = LLMProxy(model_list=[{"name": "policy", "base_url": "http://127.0.0.1:9/v1"}])
    # run() checks first, before loading the model; the base store has no policy versions or pause.
    needs = r"--async needs a store with policy versions, pause_claims/resume_claims and set_staleness .*; Lightn"
    with pytest.raises(ValueError, match=needs):
        await algorithm._check_ready(LightningStore(), proxy)


async def test_async_with_an_external_proxy_it_cannot_drain_is_a_clear_error(tmp_path: Path) -> None:
    algorithm = AsyncReinforce(config(tmp_path, proxy_url="http://127.0.0.1:9/v1"), RecordingReloader())
    algorithm.set_store(LightningStore())
    with pytest.raises(ValueError, match=r"--async drains the LLM proxy .* drop --proxy-url"):
        await algorithm.run(train_dataset=make_tasks(1, seed=1))


def test_async_needs_a_staleness_bound_and_names_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"needs ReinforceConfig.max_staleness"):
        AsyncReinforce(config(tmp_path, max_staleness=None), RecordingReloader())
    with pytest.raises(ValueError, match=r"max_staleness must be .* got -1"):
        AsyncReinforce(config(tmp_path, max_staleness=-1), RecordingReloader())
    with pytest.raises(ValueError, match=r"batch_size must be .* got 0"):
        check_staleness_options(1, 0)
    with pytest.raises(ValueError, match=r"max_staleness must be .* got True"):
        check_staleness_options(True, 4)


def test_the_bound_and_the_histogram() -> None:
    assert [admitted_limit(1, 32, v) for v in (0, 1, 5)] == [64, 96, 224]
    assert admitted_limit(0, 8, 0) == 8  # S = 0: one batch at a time, as the synchronous loop
    assert histogram([0, 2, 0, 0]) == {"0": 3, "1": 0, "2": 1} and histogram([]) == {}


def test_async_cli_flags_parse_and_bad_values_are_named() -> None:
    runner = CliRunner()
    assert "--max-staleness" in runner.invoke(reinforce_command, ["--help"]).output
    negative = runner.invoke(reinforce_command, ["--async", "--max-staleness", "-1"])
    assert negative.exit_code == 2 and "--max-staleness" in negative.output and "-1" in negative.output
    word = runner.invoke(reinforce_command, ["--async", "--max-staleness", "two"])
    assert word.exit_code == 2 and "'two' is not a valid integer" in word.output
    alone = runner.invoke(reinforce_command, ["--max-staleness", "2"])
    assert alone.exit_code == 2 and "add --async" in alone.output
    minutes = runner.invoke(reinforce_command, ["--max-minutes", "0"])
    assert minutes.exit_code == 2 and "--max-minutes" in minutes.output


async def test_a_drain_that_times_out_is_logged_and_the_sync_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Stuck:
        async def drain(self, timeout: float) -> float:
            raise DrainTimeout(f"2 calls still in flight after {timeout} s")

    assert await drain_proxy(Stuck(), 0.5) == 0.5  # type: ignore[arg-type]
    assert "did not drain within" in caplog.text and "2 calls still in flight" in caplog.text
