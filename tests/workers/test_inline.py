"""Worker processes forked with the agent and hook objects (`workers.inline`), under the real pool."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.litagent import Hook, rollout
from workers import WorkerPool, WorkerSettings
from workers.inline import InlineLauncher
from workers.process import EXIT_CONFIG


def test_a_child_without_settings_exits_with_the_configuration_code() -> None:
    @rollout
    def agent(task: Any) -> float:
        return 1.0

    child = InlineLauncher(agent)(["unused"], {"PATH": os.environ.get("PATH", "")})
    assert child.pid > 0
    assert child.wait() == EXIT_CONFIG and child.poll() == EXIT_CONFIG


def test_the_pool_runs_a_local_agent_and_hook_through_forked_children(redis_url: str, tmp_path: Path) -> None:
    seen = tmp_path / "seen"

    @rollout
    def halve(task: int) -> float:
        return task / 2

    class Seen(Hook):
        async def on_rollout_end(self, *, agent: Any, runner: Any, rollout: Any, spans: Any) -> None:
            seen.write_text(f"{os.getpid()} {rollout.input}")

    namespace = f"inline-{uuid.uuid4().hex[:8]}"
    store = RedisLightningStore(redis_url, namespace=namespace, scan_debounce_seconds=0)

    async def enqueue() -> str:
        return (await store.enqueue_rollout(4)).rollout_id

    async def outcome(rollout_id: str) -> tuple[str, Any]:
        done = await store.wait_for_rollouts(rollout_ids=[rollout_id], timeout=0)
        spans = await store.query_spans(rollout_id, "latest")
        await store.purge()
        return done[0].status, spans.items[-1].attributes

    rollout_id = asyncio.run(enqueue())
    settings = WorkerSettings(agent="(inline)", namespace=namespace, max_rollouts=1, grace_seconds=1)
    pool = WorkerPool(settings, 1, redis_url=redis_url, stop_timeout=2, launcher=InlineLauncher(halve, [Seen()]))
    assert pool.run() == 0  # the child claimed its one rollout and exited 0
    status, attributes = asyncio.run(outcome(rollout_id))
    assert status == "succeeded" and 2.0 in attributes.values()
    pid, task = seen.read_text().split()
    assert int(pid) != os.getpid() and task == "4"


def test_no_fork_no_inline_launcher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("workers.inline.can_fork", lambda: False)

    @rollout
    def agent(task: Any) -> float:
        return 1.0

    with pytest.raises(ValueError, match=r"cannot fork, so worker processes cannot be handed the agent object"):
        InlineLauncher(agent)
