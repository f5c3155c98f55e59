"""The worker's Redis rules for storing a result: what cannot be stored, and waiting out Redis OOM.

The result rules themselves (check_result, spans_for, failure_spans, ...) are in
`lightning_queue.litagent.results`, shared with the in-process `LitAgentRunner`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from redis.exceptions import OutOfMemoryError

from lightning_queue.resilience import Backoff

logger = logging.getLogger(__name__)
T = TypeVar("T")

# A result the store refuses (over a size limit, not serialisable) or Redis refuses (OOM under noeviction):
# waiting will not help, so the attempt fails saying why. Not every ResponseError: a failover's READONLY
# or a cluster's TRYAGAIN pass, and a good result must not be failed for them.
UNSTORABLE: tuple[type[Exception], ...] = (ValueError, TypeError, OutOfMemoryError)


async def through_oom(op: Callable[[], Awaitable[T]], *, seconds: float) -> T:
    """Run `op`, retrying for up to `seconds` while Redis answers OOM.

    Right after Redis refused a big result, that call's buffers still count against maxmemory for a
    moment, so the small write recording the failure is refused too; a little later it fits.
    """
    deadline = time.monotonic() + seconds
    backoff = Backoff(first=0.1, cap=1.0)
    while True:
        try:
            return await op()
        except OutOfMemoryError as exc:
            delay = backoff.next()
            if time.monotonic() + delay > deadline:
                raise
            logger.warning("Redis is out of memory (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
