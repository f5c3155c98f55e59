"""Which rollout attempt a request belongs to: path ids checked for syntax, then for existence."""

from __future__ import annotations

import logging
from collections import OrderedDict

from ..store.base import LightningStore
from ..store.keys import is_valid_id
from .errors import ProxyError

logger = logging.getLogger(__name__)


class AttemptDirectory:
    """Confirms that (rollout, attempt) exists before any of its keys is written.

    Attempts are never deleted while their rollout lives, so confirmed pairs are cached (bounded, LRU)
    and later calls of the same attempt cost only the sequence-id round trip.
    """

    def __init__(self, store: LightningStore, cache_size: int = 10_000) -> None:
        self.store = store
        self.cache_size = cache_size
        self._known: OrderedDict[tuple[str, str], None] = OrderedDict()

    async def check(self, rollout_id: str, attempt_id: str) -> None:
        # The syntax check comes first: ids reach Redis key names only once they pass it.
        for kind, value in (("rollout", rollout_id), ("attempt", attempt_id)):
            if not is_valid_id(value):
                raise ProxyError(
                    404,
                    f"invalid {kind} id {value[:100]!r} in the path: use 1-128 characters from A-Z a-z 0-9 _ . @ = + -",
                    "not_found",
                )
        pair = (rollout_id, attempt_id)
        if pair in self._known:
            self._known.move_to_end(pair)
            return
        attempts = await self.store.query_attempts(rollout_id)
        if not any(a.attempt_id == attempt_id for a in attempts):
            if not attempts and await self.store.get_rollout_by_id(rollout_id) is None:
                raise ProxyError(404, f"rollout {rollout_id!r} does not exist in the proxy's store", "not_found")
            raise ProxyError(404, f"attempt {attempt_id!r} does not exist in rollout {rollout_id!r}", "not_found")
        self._known[pair] = None
        if len(self._known) > self.cache_size:
            self._known.popitem(last=False)
