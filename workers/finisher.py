"""Group commit of rollout results: the ends of rollouts that finish together go to Redis in one round trip.

Each attempt's end is its own atomic script call (`Leases.finish_many`: lease check, spans, status); only
the round trip is shared. One batch is in flight at a time: the ends that arrive meanwhile form the next,
so batches grow with the load and a lone end goes out after a few loop passes, with no timer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from lightning_queue.store.leases import Finish, FinishOutcome

# Loop passes a batch waits for more ends to join it: rollouts claimed together reach their end within a
# few passes of each other. A pass costs microseconds, next to the round trip it saves.
_GATHER_PASSES = 3
# Ends per round trip: bounds one reply's size and the wait of the first end in a batch.
MAX_BATCH = 64

FinishMany = Callable[[Sequence[Finish]], Awaitable[list[FinishOutcome | Exception]]]


class Finisher:
    """Sends `finish()` calls made on one event loop in batches through `finish_many`."""

    def __init__(self, finish_many: FinishMany, *, max_batch: int = MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch!r}")
        self._finish_many = finish_many
        self._max_batch = max_batch
        self._pending: list[tuple[Finish, asyncio.Future[FinishOutcome]]] = []
        self._sender: asyncio.Task[None] | None = None
        self.batches = 0  # round trips made, for tests and telemetry
        self.finished = 0

    async def finish(self, finish: Finish) -> FinishOutcome:
        """Store `finish` with the others of its batch; its outcome, or the error of its request or of the batch."""
        future: asyncio.Future[FinishOutcome] = asyncio.get_running_loop().create_future()
        # Retrieved here too: the error of a caller that was cancelled meanwhile must not warn "never retrieved".
        future.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._pending.append((finish, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send(), name="lq-finisher")
        # Shielded: a caller cancelled while its batch is in flight must not cancel the others' round trip.
        return await asyncio.shield(future)

    async def _send(self) -> None:
        while self._pending:
            seen = -1
            for _ in range(_GATHER_PASSES):
                if len(self._pending) in (seen, self._max_batch):
                    break
                seen = len(self._pending)
                await asyncio.sleep(0)
            batch, self._pending = self._pending[: self._max_batch], self._pending[self._max_batch :]
            batch = [(f, fut) for f, fut in batch if not fut.cancelled()]
            if not batch:
                continue
            try:
                outcomes = await self._finish_many([f for f, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"finish_many answered {len(outcomes)} of {len(batch)} finishes")
            except BaseException as exc:  # every caller gets the batch's error, then the next batch goes
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            self.batches += 1
            for (_, fut), outcome in zip(batch, outcomes, strict=True):
                if fut.done():
                    continue
                self.finished += 1
                if isinstance(outcome, Exception):
                    fut.set_exception(outcome)
                else:
                    fut.set_result(outcome)
