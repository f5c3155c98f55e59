"""The Redis client of one event loop, with its loaded Lua scripts, done feed and consumer group state."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ResponseError

from .schema import GROUP
from .scripts import SCRIPT_NAMES, script_source
from .waiting import DoneFeed


class LoopClient:
    """The clients and loaded scripts of one event loop (asyncio Redis clients are loop-bound)."""

    def __init__(self, redis_client: aioredis.Redis) -> None:
        self.redis = redis_client
        self._feed: DoneFeed | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self.group_ready = False
        self.memory_checked = False

    def script(self, name: str) -> AsyncScript:
        script = self._scripts.get(name)
        if script is None:
            assert name in SCRIPT_NAMES, name
            script = self.redis.register_script(script_source(name))
            self._scripts[name] = script
        return script

    def done_feed(self, done_key: str) -> DoneFeed:
        if self._feed is None:
            self._feed = DoneFeed(self.redis, done_key)
        return self._feed

    async def close(self) -> None:
        if self._feed is not None:
            await self._feed.close()
        await self.redis.aclose()

    @property
    def blocking(self) -> Any:
        # Blocking reads share the pool: each waiter holds its own connection while it blocks.
        return self.redis

    async def ensure_group(self, queue: str) -> None:
        if self.group_ready:
            return
        try:
            await self.redis.xgroup_create(queue, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self.group_ready = True
