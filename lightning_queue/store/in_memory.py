"""`InMemoryLightningStore`: the Redis store on a private in-process server, for tests and debugging.

Agent-Lightning's in-memory store is a second implementation of the contract; here it is the same code as
`RedisLightningStore` (the same Lua transitions, statuses, leases and limits) running on an in-process
fakeredis server, so what a script does against it is what it will do against Redis. It needs the
`embedded` extra. Its data lives as long as the store object; it is not shared with other processes.
"""

from __future__ import annotations

from typing import Any

from .embedded import in_process_client_factory
from .memory import MemoryInfo
from .redis import RedisLightningStore


class InMemoryLightningStore(RedisLightningStore):
    """A `RedisLightningStore` on a fresh in-process server: no Redis needed, nothing kept after the process.

    Keyword arguments are those of `RedisLightningStore` (`namespace`, `lease_seconds`, `default_config`,
    size limits, ...), except `url` and `client_factory`: the server is this store's own. Every coroutine,
    thread and event loop of the process using this object sees the same data, so Agent-Lightning's
    `thread_safe` is accepted either way: there is no faster unsafe mode to choose.
    """

    def __init__(self, *, thread_safe: bool = True, **kwargs: Any) -> None:
        if not isinstance(thread_safe, bool):
            raise TypeError(f"thread_safe must be a bool, got {thread_safe!r:.80}")
        for taken in ("url", "client_factory"):
            if taken in kwargs:
                raise TypeError(
                    f"InMemoryLightningStore has its own in-process server and takes no {taken!r}; "
                    "use RedisLightningStore(url) for a Redis server"
                )
        super().__init__(client_factory=in_process_client_factory(), **kwargs)

    def __repr__(self) -> str:
        return f"InMemoryLightningStore(namespace={self.namespace!r})"

    async def memory(self) -> MemoryInfo:
        """Unknown: the in-process server answers no INFO memory, and it never evicts (nothing to check)."""
        self._loop_client().memory_checked = True
        return MemoryInfo(None, None, None)
