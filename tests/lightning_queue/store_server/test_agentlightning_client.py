"""Agent-Lightning 0.3.0's own client, from a virtualenv of its own, against `lq store-server` processes."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import urllib.request
from pathlib import Path

import pytest

from lightning_queue.store import RedisLightningStore
from lightning_queue.types import Span
from tests.lightning_queue.store_server import processes

SCRIPTS = Path(__file__).parent / "scripts"
VENV = Path(os.environ.get("LQ_CACHE_DIR", Path.home() / ".cache" / "lightning-queue")) / "agentlightning-0.3.0"


@pytest.fixture(scope="module")
def agl_python() -> str:
    from bench.baseline import baseline_python

    try:
        return baseline_python(venv=VENV)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create the agentlightning==0.3.0 virtualenv offline: {exc}")


def _run(agl_python: str, script: str, url: str) -> str:
    # LiteLLM (imported by agentlightning) would otherwise try to fetch its cost map from the internet.
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [agl_python, str(SCRIPTS / script), url]
    run = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


async def _spans(redis_url: str, namespace: str, rollout_id: str, attempt_id: str) -> list[Span]:
    store = RedisLightningStore(redis_url, namespace=namespace)
    try:
        return list(await store.query_spans(rollout_id, attempt_id))
    finally:
        await store.aclose()


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_agentlightning_client_drives_the_lifecycle(agl_python: str, redis_url: str, workers: int) -> None:
    with processes.running(redis_url, processes.unique_namespace(f"agl-{workers}"), workers) as (_, url):
        assert "OK" in _run(agl_python, "agl_lifecycle.py", url)


@pytest.mark.slow
def test_agentlightning_tracer_exports_spans_to_the_attempt(agl_python: str, redis_url: str) -> None:
    namespace = processes.unique_namespace("agl-otel")
    with processes.running(redis_url, namespace) as (_, url):
        report = json.loads(_run(agl_python, "agl_tracer.py", url).strip().splitlines()[-1])
        with urllib.request.urlopen(url + "/v1/prometheus", timeout=5) as resp:
            scrape = resp.read().decode()
    # The spans came through OTLP/HTTP (AL's exporter), not through its span processor's add_span calls.
    exports = [line for line in scrape.splitlines() if 'route="/v1/traces"' in line and "_total" in line]
    assert exports and 'status="200"' in exports[0] and float(exports[0].split()[-1]) >= 1, exports
    assert not [line for line in scrape.splitlines() if 'route="/v1/agl/spans"' in line and "_total" in line]
    spans = asyncio.run(_spans(redis_url, namespace, report["rollout_id"], report["attempt_id"]))
    by_name = {span.name: span for span in spans}
    assert {"agl-step", "agl-child"} <= set(by_name), sorted(by_name)
    assert all(s.rollout_id == report["rollout_id"] and s.attempt_id == report["attempt_id"] for s in spans)
    assert by_name["agl-step"].attributes["step.index"] == 7
    assert by_name["agl-child"].parent_id == by_name["agl-step"].span_id
    assert len({s.sequence_id for s in spans}) == len(spans), "the server issues each span its own sequence id"
    rewards = [s for s in spans if s.name == "agentlightning.annotation"]
    assert rewards, f"emit_reward's span is missing: {sorted(by_name)}"
    # Agent-Lightning's client sees a 422 ClientResponseError (it does not retry 4xx); the body has
    # FastAPI's `detail` list shape. A bad enqueue mode never leaves the client: its pydantic model refuses it.
    search_error, enqueue_error, raw = report["errors"]
    assert search_error["type"] == "ClientResponseError" and search_error["status"] == 422
    assert enqueue_error["type"] == "ValidationError" and "mode" in enqueue_error["message"]
    assert raw["status"] == 422 and raw["body"]["detail"][0]["loc"] == ["body", "status_in", 0]
