"""Read marks: the rollouts an algorithm waits for or was just handed, which retention spares.

Each `wait_for_rollouts` call marks its ids in the `reads` zset (rollout id -> a time) with a lease
`WAIT_LEASE` ahead, before it first reads their statuses, and renews it every half lease while it
waits; so when it returns, every id carries a mark at least half a lease in the future. Retention
deletes no rollout whose mark is younger than the policy's `min_age` (checked inside the delete
script), so a batch whose first rollout finished an hour before the last is not thinned while the
algorithm waits, and after the wait the algorithm has `min_age` (plus what is left of the lease) to
read the spans. ZADD GT never moves a mark back, so of two waiters on one rollout the later mark holds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

# How far ahead a waiting call marks its ids (and re-marks them every half of it while it waits).
WAIT_LEASE = 10.0
# Marks older than this are trimmed by every marking call, so a namespace without a policy stays bounded;
# retention also trims those older than its `min_age`.
KEPT_SECONDS = 86_400.0


async def mark(redis: Any, key: str, rollout_ids: Sequence[str], until: float) -> None:
    """Mark the ids with `until` (never lowering a later mark) and trim marks older than KEPT_SECONDS."""
    if not rollout_ids:
        return
    async with redis.pipeline(transaction=False) as pipe:
        pipe.zadd(key, dict.fromkeys(rollout_ids, until), gt=True)
        pipe.zremrangebyscore(key, "-inf", f"({time.time() - KEPT_SECONDS}")
        await pipe.execute()


class WaitMark:
    """The lease of one `wait_for_rollouts` call on its ids; `hold()` each round renews it when due."""

    def __init__(self, redis: Any, key: str, rollout_ids: Sequence[str]) -> None:
        self._redis = redis
        self._key = key
        self._ids = rollout_ids
        self._renew_at = float("-inf")

    async def hold(self) -> None:
        now = time.time()
        if now < self._renew_at:
            return
        await mark(self._redis, self._key, self._ids, now + WAIT_LEASE)
        self._renew_at = now + WAIT_LEASE / 2
