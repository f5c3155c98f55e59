"""Redis memory: the eviction policy the store refuses, and the numbers `lq status` shows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from redis.exceptions import ResponseError

logger = logging.getLogger(__name__)
_warned_refused = False

FIX = "CONFIG SET maxmemory-policy noeviction"


class EvictingRedisError(RuntimeError):
    """The Redis may delete keys when full: rollout records would vanish without a trace."""


@dataclass(frozen=True)
class MemoryInfo:
    """What `INFO memory` says; None where the server would not tell (managed Redis may refuse INFO)."""

    policy: str | None
    used_bytes: int | None
    max_bytes: int | None

    def describe(self) -> str:
        if self.policy is None:
            return "unknown (INFO memory refused)"
        used = "?" if self.used_bytes is None else _human(self.used_bytes)
        cap = "no maxmemory" if not self.max_bytes else f"maxmemory {_human(self.max_bytes)}"
        return f"{used} used, {cap}, maxmemory-policy {self.policy}"


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


async def read_memory_info(client: Any) -> MemoryInfo:
    """`INFO memory`, not `CONFIG GET`: managed Redis often refuses CONFIG, rarely INFO."""
    try:
        info = await client.info("memory")
    except ResponseError as exc:
        global _warned_refused
        if not _warned_refused:  # once per process: the embedded server (fakeredis) always refuses
            _warned_refused = True
            logger.warning("Redis refused INFO memory (%s): cannot check its maxmemory-policy for eviction", exc)
        return MemoryInfo(None, None, None)
    policy = info.get("maxmemory_policy")
    return MemoryInfo(
        None if policy is None else str(policy),
        _int(info.get("used_memory")),
        _int(info.get("maxmemory")),
    )


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def check_policy(memory: MemoryInfo, where: str) -> None:
    """Refuse a policy that may evict the store's keys.

    `volatile-*` policies evict only keys with a TTL, and no record of the store has one (only the
    watchdog's debounce lock does), so under them a full Redis answers OOM like `noeviction`.
    """
    if memory.policy is not None and memory.policy.startswith("allkeys-"):
        raise EvictingRedisError(
            f"Redis at {where} has maxmemory-policy {memory.policy}: when full it deletes keys, and rollout "
            f"records would silently vanish (waits return early, counts disagree with the data). "
            f"Run `{FIX}` (or set it in the server's config / your provider's parameter group)."
        )
