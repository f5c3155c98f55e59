"""One reader of the `done` stream per event loop, waking only the waiters whose rollouts finished.

With a reader per waiter, every completion woke every waiter and each re-read all its statuses:
100 waiters cost milliseconds of CPU per completion. Here one blocking XREAD serves them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

logger = logging.getLogger(__name__)

# A read blocks this long at most, so an idle feed notices soon that nobody waits any more.
BLOCK_MS = 1000


class DoneFeed:
    def __init__(self, redis: Any, done_key: str) -> None:
        self._redis = redis
        self._done_key = done_key
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._task: asyncio.Task[None] | None = None
        self._cursor: bytes | str = "0-0"

    async def subscribe(self, rollout_ids: Iterable[str], event: asyncio.Event) -> None:
        """Set `event` whenever one of the rollouts reaches a terminal status from now on."""
        for rid in rollout_ids:
            self._waiters.setdefault(rid, set()).add(event)
        if self._task is None or self._task.done():
            # Start from the stream's current end: the subscriber reads statuses after this returns,
            # so whatever finished before is in that read and whatever finishes after is in the feed.
            newest = await self._redis.xrevrange(self._done_key, count=1)
            self._cursor = newest[0][0] if newest else "0-0"
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._run(), name="lq-done-feed")

    def unsubscribe(self, rollout_ids: Iterable[str], event: asyncio.Event) -> None:
        for rid in rollout_ids:
            events = self._waiters.get(rid)
            if events is not None:
                events.discard(event)
                if not events:
                    del self._waiters[rid]

    async def _run(self) -> None:
        failures = 0
        while self._waiters:
            try:
                reply = await self._redis.xread({self._done_key: self._cursor}, count=1000, block=BLOCK_MS)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Waiters fall back on their own periodic status reads; back off instead of spinning.
                failures += 1
                logger.warning("reading the done stream failed (%s); retrying", exc)
                await asyncio.sleep(min(2.0, 0.05 * 2**failures))
                continue
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._cursor = entry_id
                    rid = fields.get(b"rid", b"").decode()
                    for event in self._waiters.get(rid, ()):
                        event.set()

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
