"""Helpers of the worker tests (a module, not conftest, so tests can import them)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import psutil

from lightning_queue import RedisLightningStore
from workers.runner import default_worker_id

T = TypeVar("T")


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
