"""The claims pause of a weight sync (issue 17): the barrier workers' claims honour.

The pause is a Redis key holding its holder's token with a TTL (Redis's clock): an algorithm that
crashes while paused stops the namespace for one TTL at most. A second key remembers the holder without a
TTL, so an expiry nobody resumed stays visible (`status().expired_holder`). A holder renews its pause while
its sync runs; `hold()` (the store's `claims_pause()`) does so in the background and resumes on exit, also
when the block raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .errors import PauseHeld
from .keys import check_id, generate_id

if TYPE_CHECKING:
    from .base import LightningStore
    from .redis import RedisLightningStore

logger = logging.getLogger(__name__)

DEFAULT_PAUSE_TTL = 60.0
# A pause is a weight sync's barrier, renewed while it runs; a TTL of a week is already a mistake.
MAX_PAUSE_TTL = 7 * 86400.0


@dataclass(frozen=True)
class PauseStatus:
    """What `lq claims status` shows: the pause in force (if any) and an expired one nobody resumed."""

    paused: bool
    holder: str | None
    remaining_seconds: float | None
    expired_holder: str | None


def check_ttl(ttl: object) -> int:
    """A pause TTL in seconds as whole milliseconds (at least 1)."""
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
        raise ValueError(f"pause ttl must be a positive number of seconds, got {ttl!r}")
    if ttl > MAX_PAUSE_TTL:
        raise ValueError(f"pause ttl must be at most {MAX_PAUSE_TTL:g} seconds (a week), got {ttl!r}")
    return max(1, round(ttl * 1000))


def new_holder() -> str:
    return "pause-" + generate_id(12)


class ClaimsPause:
    """The pause API of one store (its namespace and Lua transitions)."""

    def __init__(self, store: RedisLightningStore) -> None:
        self.store = store

    async def pause(self, ttl: float = DEFAULT_PAUSE_TTL, *, holder: str | None = None) -> str:
        """Pause claims for `ttl` seconds (the holder renews it); returns the holder token.

        Pausing again with the same holder renews the pause. A pause of another holder raises PauseHeld
        (one weight sync at a time); wait for it, or end it with `resume(None)` if its holder is gone.
        """
        ttl_ms = check_ttl(ttl)
        holder = new_holder() if holder is None else check_id("holder", holder)
        await self.store._checked()
        done, current, remaining = await self.store.transitions.pause("pause", holder, ttl_ms)
        if not done:
            raise PauseHeld(
                f"claims are already paused by holder {current.decode()!r} for {int(remaining) / 1000:.1f} s more; "
                "wait for it to resume, or resume_claims(None) if its holder is gone"
            )
        logger.info("claims paused in namespace %r by holder %r for %.1f s", self.store.namespace, holder, ttl)
        return holder

    async def renew(self, holder: str, ttl: float = DEFAULT_PAUSE_TTL) -> bool:
        """Extend `holder`'s pause to `ttl` seconds from now; False if it no longer holds it (expired, resumed)."""
        ttl_ms = check_ttl(ttl)
        check_id("holder", holder)
        done, _current, _remaining = await self.store.transitions.pause("renew", holder, ttl_ms)
        return bool(done)

    async def resume(self, holder: str | None) -> bool:
        """End `holder`'s pause (None: whoever holds it); False if there was no such pause in force."""
        if holder is not None:
            check_id("holder", holder)
        done, current, _remaining = await self.store.transitions.pause("resume", holder or "", 1)
        if done:
            logger.info("claims resumed in namespace %r (pause of holder %r)", self.store.namespace, current.decode())
        return bool(done)

    async def status(self) -> PauseStatus:
        paused, holder, remaining, expired = await self.store.transitions.pause("status", "", 1)
        return PauseStatus(
            paused=bool(paused),
            holder=holder.decode() if paused else None,
            remaining_seconds=int(remaining) / 1000 if paused else None,
            expired_holder=expired.decode() or None,
        )


@contextlib.asynccontextmanager
async def hold(
    store: LightningStore, ttl: float = DEFAULT_PAUSE_TTL, *, holder: str | None = None
) -> AsyncIterator[str]:
    """Pause `store`'s claims for the block, renewing every ttl/3 in the background; resume on exit (also on error).

    If the pause is lost meanwhile (the renewals were late by a whole TTL: a stalled loop), it is taken
    again when free and the loss is logged: claims ran in between, which the caller should know.
    """
    check_ttl(ttl)
    token = await store.pause_claims(ttl, holder=holder)
    renewer = asyncio.create_task(_renew_forever(store, token, ttl), name=f"claims-pause-{token}")
    try:
        yield token
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        await store.resume_claims(token)


async def _renew_forever(store: LightningStore, holder: str, ttl: float) -> None:
    while True:
        await asyncio.sleep(ttl / 3)
        try:
            if await store.renew_pause(holder, ttl):
                continue
            logger.warning(
                "the claims pause of holder %r expired before it was renewed (claims may have run meanwhile); "
                "pausing again",
                holder,
            )
            await store.pause_claims(ttl, holder=holder)
        except PauseHeld as exc:
            logger.error("the claims pause of holder %r was lost: %s", holder, exc)
        except Exception:
            # A Redis outage: the next tick retries, and the TTL bounds what a lost renewal costs.
            logger.exception("renewing the claims pause of holder %r failed; retrying in %.1f s", holder, ttl / 3)
