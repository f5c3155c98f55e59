"""Runs in the agentlightning==0.3.0 virtualenv: one AL client doing no-op rollouts against a store URL.

    python bench/al_client_loop.py URL ROLLOUTS WORKER_ID

Each rollout is enqueue → dequeue → one span → succeeded, all through AL's own LightningStoreClient.
Prints one JSON line: {"rollouts": N, "seconds": wall time of the loop}.
"""

import asyncio
import json
import os
import sys
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before agentlightning imports litellm

from agentlightning.store.client_server import LightningStoreClient
from agentlightning.types import Span, SpanCoreFields, TraceStatus


async def main(url: str, rollouts: int, worker_id: str) -> None:
    store = LightningStoreClient(url)
    await store.statistics()  # open the session before timing
    started = time.perf_counter()
    done = 0
    while done < rollouts:
        await store.enqueue_rollout(input={"i": done})
        claimed = await store.dequeue_rollout(worker_id=worker_id)
        if claimed is None:  # another client took ours; theirs will be ours next time
            continue
        rid, aid = claimed.rollout_id, claimed.attempt.attempt_id
        core = SpanCoreFields(
            name="noop", status=TraceStatus(status_code="OK"), attributes={}, start_time=time.time(), end_time=None
        )
        await store.add_span(Span.from_core_fields(core, rollout_id=rid, attempt_id=aid, sequence_id=1))
        await store.update_attempt(rid, aid, status="succeeded")
        done += 1
    print(json.dumps({"rollouts": done, "seconds": time.perf_counter() - started}))
    await store.close()


asyncio.run(asyncio.wait_for(main(sys.argv[1], int(sys.argv[2]), sys.argv[3]), 600))
