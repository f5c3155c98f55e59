"""The proxy's side of the weight-sync barrier: refuse new calls while claims are paused, count the rest.

While the namespace's claims are paused, a new completion call gets 503 with `Retry-After` (the OpenAI
client retries it by itself); calls admitted before the proxy saw the pause run to their end and are
recorded. `drain()` waits for those; on a Redis store the proxy also publishes its count, so an algorithm
can wait for every proxy of the namespace (`registry.wait_proxies_drained`).
"""

from __future__ import annotations

import logging
import math

from redis.exceptions import RedisError

from ..store.base import LightningStore
from ..store.errors import NotSupported
from .errors import ProxyError
from .in_flight import InFlight
from .pause_view import PauseView
from .registry import ProxyRegistry

logger = logging.getLogger(__name__)


class Barrier:
    """Admission of completion calls by the pause view, and the in-flight count a drain waits for."""

    def __init__(self, store: LightningStore, *, retry_after: float, interval: float) -> None:
        self.retry_after = retry_after
        self.in_flight = InFlight()
        self.view = PauseView(store, interval, after_refresh=self._publish)
        self.registry: ProxyRegistry | None = None
        self.refused = 0
        self._ack: str | None = None

    # --- admission ---------------------------------------------------------------------------------
    def admit(self) -> None:
        """Count the call in, or refuse it with 503 while claims are paused (no await: the check and the
        count happen in one step of the loop, so a drain never misses a call)."""
        if self.view.paused:
            self.refused += 1
            raise self._refusal()
        self.in_flight.enter()

    def leave(self) -> None:
        self.in_flight.leave()
        if self.in_flight.count == 0 and self.view.paused:
            # A drain is waiting for this: publish the 0 now rather than at the end of the interval.
            self.view.wake()

    def _refusal(self) -> ProxyError:
        seconds = max(1, math.ceil(self.retry_after))
        error = ProxyError(
            503,
            "claims are paused for a weight sync: the model is being updated; retry in "
            f"{self.retry_after:g} s (OpenAI clients retry by themselves, max_retries times)",
            "weight_sync_in_progress",
        )
        # Retry-After takes whole seconds; OpenAI clients read retry-after-ms first, so short waits stay short.
        error.headers = {"Retry-After": str(seconds), "retry-after-ms": str(max(1, round(self.retry_after * 1000)))}
        return error

    # --- draining ----------------------------------------------------------------------------------
    async def drain(self, timeout: float | None) -> float:
        """Wait until no admitted call is left; the claims pause must be in force (it is read afresh)."""
        await self.view.refresh()
        if not self.view.supported:
            raise NotSupported(self.view.store, "drain() (it needs the claims pause)")
        if not self.view.paused:
            raise RuntimeError(
                "drain() waits out the calls of a weight sync, but claims are not paused, so new calls keep "
                "coming: async with store.claims_pause(ttl): await proxy.drain(timeout)"
            )
        return await self.in_flight.wait_zero(timeout)

    # --- lifecycle and publication -----------------------------------------------------------------
    async def start(self, registry: ProxyRegistry | None) -> None:
        self.registry = registry
        await self.view.start()

    async def announce(self, endpoint: str) -> None:
        """Publish this proxy's status at once, so a drain started right after `start()` waits for it too."""
        if self.registry is None:
            return
        self.registry.endpoint = endpoint
        try:
            await self._publish()
        except (RedisError, OSError, ConnectionError) as exc:
            logger.warning("could not publish this proxy's status (%s); the pause view retries each interval", exc)

    async def stop(self) -> None:
        await self.view.stop()
        if self.registry is not None:
            try:
                await self.registry.withdraw()
            except Exception as exc:  # the record expires by itself; a stopping proxy must still stop
                logger.warning("could not remove this proxy's status from the store (%s); it expires by itself", exc)

    async def _publish(self) -> None:
        if self.registry is None:
            return
        view = self.view
        token = await self.registry.publish(self.in_flight.count, view.paused, view.policy_version, self._ack)
        if token is not None and token != self._ack and view.paused:
            # The view saw the pause before the token was read: no call can be admitted until it ends.
            self._ack = token
            await self.registry.publish(self.in_flight.count, view.paused, view.policy_version, self._ack)

    def health(self) -> dict[str, int]:
        counts = {"in_flight": self.in_flight.count, "refused_paused": self.refused}
        if self.view.supported:
            counts["claims_paused"] = int(self.view.paused)
            if self.view.policy_version is not None:
                counts["policy_version"] = self.view.policy_version
        return counts
