"""The calls a proxy has admitted and not finished (span stored, answer sent): what a drain waits for."""

from __future__ import annotations

import asyncio
import time


class DrainTimeout(TimeoutError):
    """Calls were still in flight when a drain's time ran out."""


class InFlight:
    """A counter of admitted calls with a wait for zero; used from the proxy's event loop only."""

    def __init__(self) -> None:
        self.count = 0
        self._zero = asyncio.Event()
        self._zero.set()

    def enter(self) -> None:
        self.count += 1
        self._zero.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._zero.set()

    async def wait_zero(self, timeout: float | None) -> float:
        """Seconds waited until no call was in flight; DrainTimeout naming the count if `timeout` passed first."""
        if timeout is not None and (timeout != timeout or timeout < 0):
            raise ValueError(f"drain timeout must be None or a number of seconds >= 0, got {timeout!r}")
        started = time.monotonic()
        try:
            await asyncio.wait_for(self._zero.wait(), timeout)
        except asyncio.TimeoutError:
            raise DrainTimeout(
                f"{self.count} call(s) were still in flight after {timeout:g} s; they keep running "
                "(nothing was cut): wait longer, or swap the weights knowing these calls span both versions"
            ) from None
        return time.monotonic() - started
