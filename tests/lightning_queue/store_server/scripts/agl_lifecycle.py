"""Run inside the agentlightning==0.3.0 virtualenv: drive its own LightningStoreClient against a URL."""

import asyncio
import sys

import aiohttp
from agentlightning.store.client_server import LightningStoreClient


async def main(url: str) -> None:
    store = LightningStoreClient(url, retry_delays=(), health_retry_delays=())
    rollout = await store.enqueue_rollout(input={"q": 1}, mode="train")
    claimed = await store.dequeue_rollout(worker_id="w1")
    assert claimed is not None and claimed.rollout_id == rollout.rollout_id, claimed
    await store.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="running")
    seq = await store.get_next_span_sequence_id(claimed.rollout_id, claimed.attempt.attempt_id)
    assert seq >= 1
    resources = await store.add_resources(
        {"p": {"resource_type": "prompt_template", "template": "hi", "engine": "f-string"}}
    )
    assert (await store.get_latest_resources()).resources_id == resources.resources_id
    page = await store.query_rollouts(status_in=["running"], limit=1, offset=0)
    assert page.total == 1 and len(page.items) == 1, page
    workers = await store.query_workers()
    assert [w.worker_id for w in workers.items] == ["w1"], workers
    await store.update_attempt(claimed.rollout_id, "latest", status="succeeded")
    done = await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=0.1)
    assert [r.status for r in done] == ["succeeded"], done
    try:
        await store.update_rollout("ro-missing", status="failed")
    except aiohttp.ClientResponseError as exc:
        assert exc.status == 404, exc.status
    else:
        raise AssertionError("unknown rollout accepted")
    await store.close()
    print("OK")


asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
