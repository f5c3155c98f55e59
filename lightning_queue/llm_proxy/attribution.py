"""Which rollout attempt a request belongs to, and whether that attempt may still spend LLM time.

Path ids are checked for syntax, then the rollout is read in one round trip: a call is forwarded only
for the latest attempt of a rollout that is not finished, and only while that attempt has not reported
its own end; the same read gives the attempt's policy version. An attempt the store merely gave up on
(`unresponsive`, `timeout`) is still the latest one and may be finishing (its worker was paused), so its
calls are served.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

from ..store.base import LightningStore
from ..store.keys import is_valid_id
from ..types import TERMINAL_STATUSES, AttemptedRollout
from .errors import ProxyError

logger = logging.getLogger(__name__)

# Statuses in which the attempt itself reported that it is over.
_ENDED_ATTEMPT = frozenset({"succeeded", "failed"})
# A dead verdict is kept this long: repeated calls of dead work cost no round trip, and a rollout the
# user revives (update_rollout) is served again soon after. Live verdicts are never kept.
DEAD_VERDICT_SECONDS = 2.0


def _dead(message: str) -> ProxyError:
    return ProxyError(409, message, "attempt_not_running")


class AttemptDirectory:
    """Confirms that (rollout, attempt) exists and is live before any of its keys is written."""

    def __init__(self, store: LightningStore, cache_size: int = 10_000) -> None:
        self.store = store
        self.cache_size = cache_size
        # (rollout, attempt) -> (expiry, message); a fresh error per refusal, so no traceback piles up.
        self._dead: OrderedDict[tuple[str, str], tuple[float, str]] = OrderedDict()

    async def check(self, rollout_id: str, attempt_id: str) -> int | None:
        """The attempt's policy version (None if it has none) once it is found live; a ProxyError otherwise."""
        # The syntax check comes first: ids reach Redis key names only once they pass it.
        for kind, value in (("rollout", rollout_id), ("attempt", attempt_id)):
            if not is_valid_id(value):
                raise ProxyError(
                    404,
                    f"invalid {kind} id {value[:100]!r} in the path: use 1-128 characters from A-Z a-z 0-9 _ . @ = + -",
                    "not_found",
                )
        pair = (rollout_id, attempt_id)
        cached = self._dead.get(pair)
        if cached is not None:
            if time.monotonic() < cached[0]:
                raise _dead(cached[1])
            del self._dead[pair]
        verdict = await self._verdict(rollout_id, attempt_id)
        if isinstance(verdict, int) or verdict is None:
            return verdict
        if verdict.status == 409:
            self._dead[pair] = (time.monotonic() + DEAD_VERDICT_SECONDS, verdict.message)
            if len(self._dead) > self.cache_size:
                self._dead.popitem(last=False)
        raise verdict

    async def _verdict(self, rollout_id: str, attempt_id: str) -> ProxyError | int | None:
        rollout = await self.store.get_rollout_by_id(rollout_id)
        if rollout is None:
            return ProxyError(404, f"rollout {rollout_id!r} does not exist in the proxy's store", "not_found")
        latest = rollout.attempt if isinstance(rollout, AttemptedRollout) else None
        if latest is None or latest.attempt_id != attempt_id:
            # Off the hot path: only calls that are refused anyway pay this second round trip.
            attempts = await self.store.query_attempts(rollout_id)
            if not any(a.attempt_id == attempt_id for a in attempts):
                return ProxyError(404, f"attempt {attempt_id!r} does not exist in rollout {rollout_id!r}", "not_found")
            newer = f"; the latest is {latest.attempt_id!r}" if latest is not None else ""
            return _dead(f"attempt {attempt_id!r} of rollout {rollout_id!r} was superseded by a newer attempt{newer}")
        if rollout.status in TERMINAL_STATUSES:
            return _dead(f"rollout {rollout_id!r} is {rollout.status}: its calls are no longer served")
        if latest.status in _ENDED_ATTEMPT:
            return _dead(
                f"attempt {attempt_id!r} of rollout {rollout_id!r} is {latest.status}: its calls are no longer served"
            )
        # Read with the liveness check, so stamping the version costs no round trip of its own.
        return latest.policy_version
