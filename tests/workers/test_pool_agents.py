"""What a pool's users see: why a rollout failed, and the workers' telemetry (`query_workers`, `lq status`)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from click.testing import CliRunner

from lightning_queue import RedisLightningStore, RolloutConfig
from lightning_queue.cli import main
from tests.support.pools import eventually


async def test_raising_wrong_type_and_hanging_agents_end_with_the_status_and_a_readable_record(
    start_pool: Any, observer: RedisLightningStore
) -> None:
    start_pool(processes=1, concurrency=3)
    raising = await observer.enqueue_rollout({"raise": "tool exploded"})
    wrong = await observer.enqueue_rollout({"return": "forty-two"})
    hanging = await observer.enqueue_rollout({"sleep": 60}, config=RolloutConfig(timeout_seconds=1.0))
    ids = [raising.rollout_id, wrong.rollout_id, hanging.rollout_id]

    done = {r.rollout_id: r for r in await observer.wait_for_rollouts(rollout_ids=ids, timeout=30)}

    expected = {
        raising.rollout_id: ("failed", "RuntimeError", "tool exploded"),
        wrong.rollout_id: ("failed", "TypeError", "agent returned str 'forty-two'; expected None, a float reward"),
        hanging.rollout_id: ("timeout", "AgentTimeout", "ran past the rollout's timeout_seconds=1.0"),
    }
    for rid, (attempt_status, error_type, message) in expected.items():
        attempt = done[rid].attempt  # type: ignore[attr-defined]
        assert (done[rid].status, attempt.status) == ("failed", attempt_status)
        error = attempt.metadata["error"]
        assert error["type"] == error_type and message in error["message"]
        [span] = (await observer.query_spans(rid)).items
        assert span.name == "agentlightning.exception"
        assert span.attributes["exception.type"] == error_type
        assert message in span.attributes["exception.message"]
    assert await observer.pending_entries() == 0


async def test_worker_telemetry_is_visible_in_query_workers_and_lq_status(
    start_pool: Any, observer: RedisLightningStore, redis_url: str, namespace: str
) -> None:
    pool = start_pool(processes=2, concurrency=2, heartbeat=0.3)
    ids = [(await observer.enqueue_rollout({"sleep": 0.05})).rollout_id for _ in range(6)]
    await observer.wait_for_rollouts(rollout_ids=ids, timeout=30)

    async def reports() -> dict[int, dict[str, Any]] | None:
        stats = {
            w.heartbeat_stats["pid"]: w.heartbeat_stats for w in await observer.query_workers() if w.heartbeat_stats
        }
        done = sum(s["completed"] for s in stats.values())
        return stats if set(stats) == set(pool.children()) and done == 6 else None

    stats = await eventually(reports, 15, "both workers to report 6 completed rollouts")
    for pid, report in stats.items():
        assert report["pid"] == pid and report["host"]
        assert report["concurrency"] == 2 and report["in_flight"] == 0 and report["state"] == "running"
        assert isinstance(report["cpu_pct"], float) and report["mem_mb"] > 0

    args = ["status", "--redis-url", redis_url, "--namespace", namespace]
    as_json = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--json"])
    assert as_json.exit_code == 0, as_json.output
    listed = {w["heartbeat_stats"]["pid"] for w in json.loads(as_json.output)["workers"]}
    assert listed == set(stats)
    text = await asyncio.to_thread(CliRunner().invoke, main, args)
    assert all(f"pid={pid}" in text.output for pid in stats)
    assert "completed=" in text.output
