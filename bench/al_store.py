"""The baseline: the no-op workload on Agent-Lightning 0.3.0's client-server store.

Runs under the baseline's own virtualenv (see `bench.baseline`), never under lightning-queue's, and
imports only agentlightning and `bench.workload`:

    python -m bench.al_store server              # LightningStoreServer + the algorithm, one process
    python -m bench.al_store worker --consumer w1 # a LightningStoreClient worker

This is Agent-Lightning's own multi-process layout (what `agl store` and its trainer run): the
algorithm calls the server object in the process that owns the in-memory store; workers talk HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from typing import Any

# Must be set before agentlightning (litellm) is imported, or the import fetches a cost map online.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from agentlightning.store import InMemoryLightningStore, LightningStoreClient, LightningStoreServer
from agentlightning.types import EnqueueRolloutRequest, Span, SpanCoreFields, TraceStatus

from bench.workload import (
    SPAN_ATTRIBUTES,
    SPANS_PER_ROLLOUT,
    algorithm_round,
    emit,
    serve,
    span_name,
    worker_round,
)


class ServerRole:
    """One fresh in-memory store and server per round, so rounds do not slow each other down."""

    def __init__(self) -> None:
        self.server: Any = None

    async def __call__(self, command: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
        phase = command["phase"]
        if phase == "serve":
            port = int(command["port"])
            self.server = LightningStoreServer(InMemoryLightningStore(thread_safe=True), "127.0.0.1", port)
            await self.server.start()
            return {"url": f"http://127.0.0.1:{port}"}
        if phase == "algorithm":
            return await self.algorithm(command)
        if phase == "close":
            if self.server is not None:
                await self.server.stop()
                self.server = None
            return {"closed": True}
        raise ValueError(f"unknown phase {phase!r}")

    async def algorithm(self, command: dict[str, Any]) -> dict[str, Any]:
        server = self.server
        wait_slice = float(command["wait_slice"])

        async def enqueue(inputs: list[dict[str, Any]]) -> list[tuple[str, float]]:
            made = await server.enqueue_many_rollouts([EnqueueRolloutRequest(input=x) for x in inputs])
            return [(r.rollout_id, r.start_time) for r in made]

        async def wait(pending: list[str]) -> list[tuple[str, float | None]]:
            # Poll with timeout=0 and sleep, as Agent-Lightning's own algorithms do: with a timeout its
            # in-memory store waits on one thread per rollout, which stalls with thousands pending.
            await asyncio.sleep(wait_slice)
            done = await server.wait_for_rollouts(rollout_ids=pending, timeout=0)
            return [(r.rollout_id, r.end_time) for r in done]

        async def read_spans(rid: str) -> int:
            return len(await server.query_spans(rid))

        return await algorithm_round(
            enqueue=enqueue,
            wait=wait,
            read_spans=read_spans,
            rollouts=int(command["rollouts"]),
            chunk=int(command["chunk"]),
            window=int(command["window"]),
            read_concurrency=int(command["read_concurrency"]),
            deadline_seconds=float(command["deadline_seconds"]),
        )


async def worker_role(command: dict[str, Any], stop: asyncio.Event, consumer: str, batch: int) -> dict[str, Any]:
    client = LightningStoreClient(command["url"])
    try:
        await client.statistics()  # opens the session before the timed round
        emit({"started": True})

        async def claim(count: int) -> list[tuple[str, str]]:
            claimed = await client.dequeue_many_rollouts(limit=count, worker_id=consumer)
            return [(r.rollout_id, r.attempt.attempt_id) for r in claimed]

        async def finish(rid: str, aid: str) -> None:
            spans = [
                Span.from_core_fields(
                    SpanCoreFields(
                        name=span_name(seq),
                        status=TraceStatus(status_code="OK"),
                        attributes=SPAN_ATTRIBUTES,
                        start_time=time.time(),
                        end_time=None,
                    ),
                    rollout_id=rid,
                    attempt_id=aid,
                    sequence_id=seq,
                )
                for seq in range(1, SPANS_PER_ROLLOUT + 1)
            ]
            await client.add_many_spans(spans)
            await client.update_attempt(rid, aid, status="succeeded")

        # Its runner polls every 5 s when the queue is empty; 50 ms keeps the baseline from idling.
        return await worker_round(claim, finish, stop, batch=batch, idle_sleep=float(command["poll_interval"]))
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("role", choices=("server", "worker"))
    parser.add_argument("--consumer", default="al-worker")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    # Its per-request INFO logs would cost the baseline time that has nothing to do with the store.
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("agentlightning").setLevel(logging.WARNING)

    if args.role == "server":
        asyncio.run(serve(ServerRole()))
    else:

        async def run_round(command: dict[str, Any], stop: asyncio.Event) -> dict[str, Any]:
            return await worker_role(command, stop, args.consumer, args.batch)

        asyncio.run(serve(run_round))


if __name__ == "__main__":
    main()
