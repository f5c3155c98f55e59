"""Agents and hooks the worker processes cannot import by name (a script's `__main__`, inline instances)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from lightning_queue import RedisLightningStore, algo, with_store
from lightning_queue.litagent import Hook, LitAgent
from lightning_queue.reward import find_final_reward
from lightning_queue.testing import StandInModelServer
from lightning_queue.trainer import Trainer
from workers.examples import echo

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).resolve().parents[1] / "support" / "trainer_script.py"
REPO = Path(__file__).resolve().parents[2]


def namespace() -> str:
    return f"trainer-inline-{uuid.uuid4().hex[:8]}"


def keys_of(redis_url: str, ns: str) -> list[bytes]:
    client = redis.Redis.from_url(redis_url)
    try:
        return list(client.scan_iter(match=f"{RedisLightningStore(redis_url, namespace=ns).keys.prefix}*"))
    finally:
        client.close()


@pytest.mark.timeout(200)
async def test_a_script_run_as_a_file_trains_its_main_agent_and_hook(redis_url: str, tmp_path: Path) -> None:
    ns, log = namespace(), tmp_path / "hook.jsonl"
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    store = RedisLightningStore(redis_url, namespace=ns, scan_debounce_seconds=0)
    try:
        async with StandInModelServer(token_ids="always") as model:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, str(SCRIPT), redis_url, ns, model.url, model.model, str(log),
                cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
            communicating = asyncio.ensure_future(proc.communicate())
            # Generous: a forked worker has been seen to stall ~40 s under load until its lease ran out.
            done, _ = await asyncio.wait([communicating], timeout=150)
            if not done:
                os.killpg(proc.pid, signal.SIGKILL)  # the script and the workers it forked
                _, err = await communicating
                pytest.fail(f"the script did not finish in 150 s; its stderr ends:\n{err.decode()[-3000:]}")
            out, err = communicating.result()
        assert proc.returncode == 0, err.decode()[-3000:]
        report = json.loads(out.decode().strip().splitlines()[-1])
        assert report["summary"]["train"] == {"rollouts": 4.0, "succeeded": 4.0, "mean_reward": 1.0}
        # The hook ran in the worker processes (not in the script's), once per rollout, with the spans.
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        assert len(calls) == 4 and {c["pid"] for c in calls}.isdisjoint({report["pid"]})
        assert all(c["spans"] >= 1 for c in calls), calls  # the reward the worker stores
        # Rewards are stored: read back from Redis, not from the script's summary.
        rollouts = await store.query_rollouts()
        assert sorted(r.rollout_id for r in rollouts.items) == sorted(c["rollout_id"] for c in calls)
        for rollout in rollouts.items:
            assert rollout.status == "succeeded"
            spans = (await store.query_spans(rollout.rollout_id, "latest")).items
            assert find_final_reward(spans) == 1.0
            assert len(spans) >= 2, spans  # the proxy recorded the LLM call beside the reward
    finally:
        await store.purge()
        await store.aclose()


def test_dev_with_an_inline_agent_and_hook_defined_in_a_function(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "hook.log"

    class Doubler(LitAgent[int]):
        def __init__(self, factor: float) -> None:
            super().__init__()
            self.factor = factor

        def rollout(self, task: int, resources: Any, rollout: Any) -> float:
            return self.factor * task

    class Recorder(Hook):
        async def on_rollout_start(self, *, agent: Any, runner: Any, rollout: Any) -> None:
            with log.open("a") as out:
                out.write(f"{os.getpid()} {rollout.input}\n")

    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)
    try:
        summary = Trainer(store=store, n_runners=1, hooks=Recorder(), stop_timeout=3).dev(Doubler(0.5), [1, 2, 3])
        assert summary["train"] == {"rollouts": 3.0, "succeeded": 3.0, "mean_reward": 1.0}
        lines = log.read_text().split("\n")[:-1]
        assert sorted(int(line.split()[1]) for line in lines) == [1, 2, 3]
        assert {int(line.split()[0]) for line in lines} != {os.getpid()}
    finally:
        asyncio.run(store.purge())


def test_trainer_without_a_store_leaves_no_keys_behind(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LQ_REDIS_URL", redis_url)
    trainer = Trainer(n_runners=1, stop_timeout=3)
    ns = trainer.store.namespace  # type: ignore[attr-defined]
    assert trainer.dev(echo, [{"reward": 1.0}])["train"]["succeeded"] == 1.0
    assert keys_of(redis_url, ns) == []


def test_keep_keeps_the_trainer_namespace(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LQ_REDIS_URL", redis_url)
    trainer = Trainer(n_runners=1, stop_timeout=3, keep=True)
    ns = trainer.store.namespace  # type: ignore[attr-defined]
    trainer.dev(echo, [{"reward": 1.0}])
    try:
        assert keys_of(redis_url, ns) != []
    finally:
        asyncio.run(RedisLightningStore(redis_url, namespace=ns).purge())


def test_a_given_store_is_never_purged(redis_url: str) -> None:
    ns = namespace()
    Trainer(store=RedisLightningStore(redis_url, namespace=ns), n_runners=1, stop_timeout=3).dev(echo, [{}])
    try:
        assert keys_of(redis_url, ns) != []
    finally:
        asyncio.run(RedisLightningStore(redis_url, namespace=ns).purge())


def test_a_crashed_worker_pool_fails_fit_instead_of_hanging(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from workers.pool import WorkerPool

    def broken_run(self: WorkerPool) -> int:
        raise RuntimeError("supervisor broke")

    monkeypatch.setattr(WorkerPool, "run", broken_run)

    @algo
    @with_store
    async def wait_forever(store: Any, train_dataset: Any = None) -> None:
        rollout = await store.enqueue_rollout(1)
        await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=None)

    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match=r"the worker pool crashed: RuntimeError\('supervisor broke'\)"):
            Trainer(algorithm=wait_forever, store=store, n_runners=1, stop_timeout=1).fit(echo, [1])
        assert time.monotonic() - started < 15
    finally:
        asyncio.run(store.purge())


def test_runner_role_runs_only_the_workers_until_max_rollouts(redis_url: str) -> None:
    ns = namespace()

    async def enqueue() -> list[str]:
        store = RedisLightningStore(redis_url, namespace=ns)
        ids = [(await store.enqueue_rollout({"reward": 1.0})).rollout_id for _ in range(2)]
        await store.aclose()
        return ids

    async def statuses(ids: list[str]) -> list[str]:
        store = RedisLightningStore(redis_url, namespace=ns)
        done = await store.wait_for_rollouts(rollout_ids=ids, timeout=0)
        await store.purge()
        await store.aclose()
        return [r.status for r in done]

    ids = asyncio.run(enqueue())
    trainer = Trainer(
        store=RedisLightningStore(redis_url, namespace=ns),
        strategy={"type": "cs", "role": "runner"},
        n_runners=1,
        max_rollouts=2,
        stop_timeout=3,
    )
    assert trainer.fit(echo) is None
    assert asyncio.run(statuses(ids)) == ["succeeded", "succeeded"]


def test_workers_that_cannot_start_fail_fit_with_their_exit_code(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workers.pool import WorkerPool

    monkeypatch.setattr(WorkerPool, "run", lambda self: 2)

    @algo
    @with_store
    async def wait_forever(store: Any, train_dataset: Any = None) -> None:
        rollout = await store.enqueue_rollout(1)
        await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=None)

    store = RedisLightningStore(redis_url, namespace=namespace(), scan_debounce_seconds=0)
    try:
        with pytest.raises(RuntimeError, match=r"worker processes stopped with exit code 2"):
            Trainer(algorithm=wait_forever, store=store, n_runners=1, stop_timeout=1).fit(echo, [1])
    finally:
        asyncio.run(store.purge())


CTRL_C_SCRIPT = """
import asyncio, sys, time, threading
import lightning_queue as agl

class Inline(agl.LitAgent):
    def rollout(self, task, resources, rollout):
        return 1.0

@agl.algo
@agl.with_store
async def forever(store, train_dataset):
    await store.enqueue_rollout(1)
    await asyncio.sleep(3600)

trainer = agl.Trainer(algorithm=forever, n_runners=2, stop_timeout=2)
print("namespace", trainer.store.namespace, flush=True)

def report_pids():
    while len(trainer.worker_pids()) < 2:
        time.sleep(0.05)
    time.sleep(0.5)  # the inline agent ran its rollout: the namespace has keys
    print("pids", *trainer.worker_pids(), flush=True)

threading.Thread(target=report_pids, daemon=True).start()
trainer.fit(Inline(), [1])
"""


def test_ctrl_c_stops_forked_workers_and_purges_the_trainer_namespace(redis_url: str, tmp_path: Path) -> None:
    import signal

    import psutil

    script = tmp_path / "ctrl_c_inline.py"
    script.write_text(CTRL_C_SCRIPT)
    env = {
        **os.environ,
        "LQ_REDIS_URL": redis_url,
        "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    )
    try:
        assert proc.stdout is not None
        ns = proc.stdout.readline().split()[1]
        line = proc.stdout.readline()
        assert line.startswith("pids"), proc.stderr.read() if proc.stderr else line
        pids = [int(p) for p in line.split()[1:]]
        assert keys_of(redis_url, ns) != []
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(psutil.pid_exists(p) for p in pids):
            time.sleep(0.1)
        assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie" for p in pids)
        assert keys_of(redis_url, ns) == []
    finally:
        if proc.poll() is None:
            proc.kill()
