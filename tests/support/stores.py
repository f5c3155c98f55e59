"""Types of the store fixtures, for tests' annotations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from lightning_queue import RedisLightningStore

StoreFactory = Callable[..., RedisLightningStore]
ObserverFactory = Callable[[str], Awaitable[RedisLightningStore]]
