"""Real `lq worker` pools for the worker and reliability suites, and polling helpers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import psutil

from lightning_queue import RedisLightningStore
from workers.runner import default_worker_id

T = TypeVar("T")

REPO = Path(__file__).resolve().parents[2]


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


class Pool:
    """One `lq worker` supervisor started as a subprocess, its log in a file."""

    def __init__(self, args: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lightning_queue.cli", "worker", *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        self.seen: set[int] = set()

    def children(self) -> list[int]:
        try:
            pids = [c.pid for c in psutil.Process(self.proc.pid).children() if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            pids = []
        self.seen.update(pids)
        return pids

    def worker_ids(self) -> dict[str, int]:
        return {default_worker_id(pid): pid for pid in self.children()}

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"lq worker did not exit within {timeout}s; log:\n{self.log()}")
            await asyncio.sleep(0.05)
        return self.proc.returncode

    def kill(self) -> None:
        self.children()
        for pid in [*self.seen, self.proc.pid]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
        self.proc.wait(timeout=10)
        self._log.close()


async def claimed_by(store: RedisLightningStore, rollout_ids: list[str], worker_ids: Any) -> bool:
    """True when every rollout's latest attempt was claimed by one of `worker_ids`."""
    found = await store.query_rollouts(rollout_id_in=rollout_ids)
    return len(found) == len(rollout_ids) and all(
        getattr(r, "attempt", None) is not None and r.attempt.worker_id in worker_ids for r in found
    )


PoolFactory = Callable[..., Pool]


def worker_env() -> dict[str, str]:
    """This environment with the repository root on PYTHONPATH (so `tests.support.*` agents import) and no
    ambient Redis settings."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    for name in ("LQ_REDIS_URL", "REDIS_URL", "LQ_NAMESPACE"):
        env.pop(name, None)
    return env


@contextmanager
def pool_starter(namespace: str, tmp_path: Path) -> Iterator[PoolFactory]:
    """Start `lq worker` pools on `namespace` at any URL; all their processes die when the block ends."""
    pools: list[Pool] = []
    env = worker_env()

    def factory(
        url: str,
        agent: str = "tests.support.agents:scripted",
        *,
        processes: int = 1,
        concurrency: int = 1,
        lease: float = 1.0,
        grace: float = 5.0,
        heartbeat: float = 0.5,
        extra: tuple[str, ...] = (),
        url_in_env: bool = False,
    ) -> Pool:
        # A URL with a password belongs in the environment, where `ps` does not show it.
        where = [] if url_in_env else ["--redis-url", url]
        args = [
            "--agent", agent,
            "-n", str(processes),
            "--concurrency", str(concurrency),
            *where,
            "--namespace", namespace,
            "--lease-seconds", str(lease),
            "--grace-seconds", str(grace),
            "--heartbeat-seconds", str(heartbeat),
            *extra,
        ]  # fmt: skip
        pool = Pool(args, tmp_path / f"pool{len(pools)}.log", {**env, "LQ_REDIS_URL": url} if url_in_env else env)
        pools.append(pool)
        return pool

    try:
        yield factory
    finally:
        for pool in pools:
            pool.kill()
