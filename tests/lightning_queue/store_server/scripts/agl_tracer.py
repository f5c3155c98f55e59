"""Run inside the agentlightning==0.3.0 virtualenv: trace a rollout with its OtelTracer, then send bad bodies.

Prints one JSON line (`{"rollout_id": ..., "attempt_id": ..., "errors": [...]}`) for the test to check
against our own store; every span goes through Agent-Lightning's own LightningStoreOTLPExporter.
"""

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

import aiohttp
from agentlightning.emitter import emit_reward
from agentlightning.store.client_server import LightningStoreClient
from agentlightning.tracer.otel import OtelTracer


async def _error_of(call: Callable[[], Awaitable[object]]) -> dict[str, object]:
    try:
        await call()
    except aiohttp.ClientResponseError as exc:
        return {"type": type(exc).__name__, "status": exc.status, "message": exc.message}
    except ValueError as exc:  # pydantic's ValidationError: refused before any request is sent
        return {"type": type(exc).__name__, "message": str(exc)}
    raise AssertionError("a bad value was accepted")


async def main(url: str) -> None:
    store = LightningStoreClient(url, retry_delays=(), health_retry_delays=())
    assert store.capabilities.get("otlp_traces") is True
    tracer = OtelTracer()
    tracer.init_worker(0, store)
    await store.enqueue_rollout(input={"q": 1}, mode="train")
    claimed = await store.dequeue_rollout(worker_id="w1")
    assert claimed is not None
    rollout_id, attempt_id = claimed.rollout_id, claimed.attempt.attempt_id
    async with tracer.trace_context("rollout", rollout_id=rollout_id, attempt_id=attempt_id) as otel:
        with otel.start_as_current_span("agl-step") as span:
            span.set_attribute("step.index", 7)
            with otel.start_as_current_span("agl-child"):
                pass
        emit_reward(0.5)
    tracer.teardown_worker(0)
    await store.update_attempt(rollout_id, attempt_id, status="succeeded")

    # What Agent-Lightning's client raises on a value the server rejects, and on one its models reject.
    errors = [
        await _error_of(lambda: store.query_rollouts(status_in=["nope"])),
        await _error_of(lambda: store.enqueue_rollout(input={"q": 1}, mode="nope")),
    ]
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/agl/rollouts/search", json={"status_in": ["nope"]}) as resp:
            errors.append({"status": resp.status, "body": await resp.json()})
    await store.close()
    print(json.dumps({"rollout_id": rollout_id, "attempt_id": attempt_id, "errors": errors}))


asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
