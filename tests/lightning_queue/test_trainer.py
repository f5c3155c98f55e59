"""Trainer end to end: stand-in model, proxy, 2 local worker processes, a seed-style algorithm."""

from __future__ import annotations

import uuid
from typing import Any

import psutil
import pytest

from lightning_queue import (
    Algorithm,
    LLMProxy,
    LlmProxyTraceToTriplet,
    RedisLightningStore,
    algo,
    with_llm_proxy,
    with_store,
)
from lightning_queue.store.base import LightningStore
from lightning_queue.testing import StandInModelServer
from lightning_queue.trainer import Trainer, agent_import_path
from workers.examples import echo, math_agent

pytestmark = pytest.mark.slow


class CollectTriplets(Algorithm):
    """The seed's pattern: publish the proxy, enqueue every task, wait, turn spans into triplets."""

    @with_llm_proxy(required=True, auto_start=True)
    @with_store
    async def run(
        self, store: LightningStore, llm_proxy: LLMProxy, train_dataset: Any = None, val_dataset: Any = None
    ) -> dict[str, Any]:
        res = await store.add_resources({"main_llm": llm_proxy.as_resource()})
        rollouts = [
            await store.enqueue_rollout(input=sample, mode="train", resources_id=res.resources_id)
            for sample in train_dataset
        ]
        done = await store.wait_for_rollouts(rollout_ids=[r.rollout_id for r in rollouts], timeout=60)
        adapter = self.get_adapter()
        triplets = {r.rollout_id: adapter.adapt((await store.query_spans(r.rollout_id, "latest")).items) for r in done}
        return {"done": done, "triplets": triplets, "proxy_running_inside": llm_proxy.is_running()}


def namespace() -> str:
    return f"trainer-{uuid.uuid4().hex[:8]}"


async def test_fit_runs_rollouts_through_two_worker_processes_and_cleans_up(redis_url: str) -> None:
    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)
    async with StandInModelServer(token_ids="always") as model:
        proxy = LLMProxy(model_list=[{"name": "policy", "base_url": model.url, "model": model.model}])
        trainer = Trainer(
            algorithm=CollectTriplets(),
            store=store,
            llm_proxy=proxy,
            adapter=LlmProxyTraceToTriplet(),
            n_workers=2,
            worker_concurrency=2,
            stop_timeout=5,
        )
        tasks = [{"question": f"### {i} ###", "target": i} for i in range(12)]
        result = await trainer.fit_async(math_agent, tasks)
    try:
        assert sorted(r.status for r in result["done"]) == ["succeeded"] * 12
        assert result["proxy_running_inside"] and not proxy.is_running()
        for triplets in result["triplets"].values():
            assert len(triplets) == 1
            assert triplets[0].reward == 1.0
            assert triplets[0].prompt["token_ids"] and triplets[0].response["token_ids"]
        # Worker ids end in the process id: every process that worked is gone now.
        workers = {a.worker_id for r in result["done"] for a in await store.query_attempts(r.rollout_id)}
        pids = {int(str(w).rsplit("-", 1)[1]) for w in workers}
        assert 1 <= len(pids) <= 2
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in pids)
        assert await store.pending_entries() == 0
        assert trainer.worker_pids() == []
    finally:
        await store.purge()
        await store.aclose()


async def test_fit_with_no_local_workers_leaves_the_work_to_external_pools(redis_url: str) -> None:
    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)

    @algo
    @with_store
    async def enqueue_only(store: Any, train_dataset: Any = None) -> list[str]:
        rollouts = [await store.enqueue_rollout(x) for x in train_dataset]
        return [
            r.status for r in await store.wait_for_rollouts(rollout_ids=[r.rollout_id for r in rollouts], timeout=0)
        ]

    try:
        assert await Trainer(algorithm=enqueue_only, store=store, n_workers=0).fit_async(echo, [1, 2]) == []
        assert await store.queue_depth() == 2
    finally:
        await store.purge()
        await store.aclose()


async def test_a_failing_algorithm_still_stops_the_workers(redis_url: str) -> None:
    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)

    @algo
    async def broken(train_dataset: Any) -> None:
        raise RuntimeError("the algorithm broke")

    trainer = Trainer(algorithm=broken, store=store, n_workers=1, stop_timeout=3)
    try:
        with pytest.raises(RuntimeError, match="the algorithm broke"):
            await trainer.fit_async(echo, [1])
        assert trainer.worker_pids() == [] and trainer.pool is None
    finally:
        await store.purge()
        await store.aclose()


def test_dev_runs_every_task_once_with_the_baseline(redis_url: str) -> None:
    import asyncio

    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)
    summary = Trainer(store=store, n_workers=1, stop_timeout=3).dev(
        echo, [{"reward": 1.0}, {"reward": 0.0}], val_dataset=[{"reward": 0.5}]
    )
    assert summary == {
        "train": {"rollouts": 2.0, "succeeded": 2.0, "mean_reward": 0.5},
        "val": {"rollouts": 1.0, "succeeded": 1.0, "mean_reward": 0.5},
    }
    asyncio.run(store.purge())


def test_agent_import_path_names_module_level_agents() -> None:
    assert agent_import_path(math_agent) == "workers.examples:math_agent"
    assert agent_import_path("pkg.mod:agent") == "pkg.mod:agent"


def test_agent_that_workers_cannot_import_is_a_clear_error() -> None:
    from lightning_queue.litagent import rollout

    @rollout
    def local_agent(task: Any) -> float:
        return 1.0

    with pytest.raises(ValueError, match="not a module-level name"):
        agent_import_path(local_agent)


def test_fit_without_an_algorithm_says_to_use_dev(redis_url: str) -> None:
    with pytest.raises(ValueError, match="dev"):
        Trainer(store=RedisLightningStore(redis_url, namespace=namespace()), n_workers=0).fit(echo, [1])


CTRL_C_SCRIPT = """
import asyncio, sys, time, threading
from lightning_queue import RedisLightningStore, Trainer, algo
from workers.examples import echo

@algo
async def forever(train_dataset):
    await asyncio.sleep(3600)

store = RedisLightningStore(sys.argv[1], namespace=sys.argv[2])
trainer = Trainer(algorithm=forever, store=store, n_workers=2, stop_timeout=2)

def report_pids():
    while len(trainer.worker_pids()) < 2:
        time.sleep(0.05)
    print("pids", *trainer.worker_pids(), flush=True)

threading.Thread(target=report_pids, daemon=True).start()
trainer.fit(echo, [1])
"""


def test_ctrl_c_stops_the_algorithm_and_every_worker_process(redis_url: str, tmp_path: Any) -> None:
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C_SCRIPT)
    proc = subprocess.Popen(
        [sys.executable, str(script), redis_url, namespace()], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("pids"), proc.stderr.read() if proc.stderr else line
        pids = [int(p) for p in line.split()[1:]]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
            time.sleep(0.1)
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_fit_recycles_worker_processes_with_max_rollouts_per_process(redis_url: str) -> None:
    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)

    @algo
    @with_store
    async def enqueue_and_wait(store: Any, train_dataset: Any = None) -> list[Any]:
        rollouts = [await store.enqueue_rollout(x) for x in train_dataset]
        return await store.wait_for_rollouts(rollout_ids=[r.rollout_id for r in rollouts], timeout=60)

    trainer = Trainer(algorithm=enqueue_and_wait, store=store, n_workers=1, worker_max_rollouts_per_process=2)
    try:
        done = await trainer.fit_async(echo, list(range(6)))
        assert sorted(r.status for r in done) == ["succeeded"] * 6
        assert len({r.attempt.worker_id for r in done}) >= 3, "each process ran at most 2 rollouts"
    finally:
        await store.purge()
        await store.aclose()


def test_bad_recycling_limits_fail_when_the_trainer_is_built() -> None:
    with pytest.raises(ValueError, match="worker_max_memory_mb must be a whole number of at least 1, or None; got 0"):
        Trainer(worker_max_memory_mb=0)
