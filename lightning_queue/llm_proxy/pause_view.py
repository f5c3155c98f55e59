"""The namespace's claims pause and policy version as this proxy last read them, re-read every `interval`.

Calls read the cached view, so admitting one costs no Redis round trip; the proxy learns of a pause (or a
resume, or a new policy version) within one interval plus a round trip. One read loop per proxy costs
two small commands per interval (bench/pause_view.py measures it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from ..store.base import LightningStore

logger = logging.getLogger(__name__)

# A store that cannot be read is retried at the next interval; its failures are logged at most this often.
_LOG_EVERY_SECONDS = 30.0
# stop() waits this long past one interval for a read in progress, then cancels it.
_STOP_GRACE_SECONDS = 5.0


class PauseView:
    """`paused` and `policy_version` of the store's namespace, kept fresh by a task in the proxy's loop.

    Stores without a claims pause (`NotSupported`, a NotImplementedError) leave the view unpaused and
    without a version: the proxy then serves as before, and says so once in its log.
    """

    def __init__(
        self,
        store: LightningStore,
        interval: float,
        after_refresh: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.interval = interval
        self.after_refresh = after_refresh
        self.paused = False
        self.policy_version: int | None = None
        self.supported = True
        # Monotonic time of the last read that succeeded; None until the first one.
        self.read_at: float | None = None
        self.read_errors = 0
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._urgent: asyncio.Task[None] | None = None
        self._stopping = False
        self._last_log = 0.0

    async def refresh(self) -> None:
        """Read the pause, then the version: a resume is always seen with the version bumped before it."""
        if not self.supported:
            return
        async with self._lock:
            try:
                paused = await self.store.claims_paused()
                version = await self.store.policy_version()
            except NotImplementedError as exc:
                self.supported = False
                logger.warning(
                    "the proxy's store has no claims pause (%s): calls are served during weight syncs and "
                    "spans carry no policy version",
                    exc,
                )
                return
            self.paused, self.policy_version = bool(paused), int(version)
            self.read_at = time.monotonic()

    def wake(self) -> None:
        """Refresh (and publish) now instead of at the end of the interval."""
        if self._task is not None and (self._urgent is None or self._urgent.done()):
            self._urgent = asyncio.get_running_loop().create_task(self._tick(), name="lq-proxy-pause-view-now")

    async def _tick(self) -> None:
        try:
            await self.refresh()
            if self.after_refresh is not None:
                await self.after_refresh()
        except (RedisError, OSError, ConnectionError) as exc:
            # The last view stays in force; the next interval tries again.
            self.read_errors += 1
            now = time.monotonic()
            if now - self._last_log >= _LOG_EVERY_SECONDS:
                self._last_log = now
                logger.warning(
                    "cannot read the claims pause from the store (%s: %s); keeping the last view "
                    "(paused=%s) and retrying every %.2f s",
                    type(exc).__name__,
                    exc,
                    self.paused,
                    self.interval,
                )
        except Exception:
            # A bug must not silently stop the view: the proxy would serve through every pause.
            logger.exception("reading the claims pause failed unexpectedly; retrying in %.2f s", self.interval)

    async def _run(self) -> None:
        while self.supported and not self._stopping:
            await self._tick()
            await asyncio.sleep(self.interval)

    async def start(self) -> None:
        """Read once before serving (a proxy started during a pause refuses its first call), then keep reading."""
        try:
            await self.refresh()
        except (RedisError, OSError, ConnectionError) as exc:
            self.read_errors += 1
            logger.warning("cannot read the claims pause at start (%s); retrying in the background", exc)
        self._task = asyncio.get_running_loop().create_task(self._run(), name="lq-proxy-pause-view")

    async def stop(self) -> None:
        # The loop is asked to end rather than cancelled mid-sleep: cancelling it there was seen to leave
        # the task waiting forever (Python 3.11), and with it the proxy's shutdown.
        self._stopping = True
        tasks = {t for t in (self._task, self._urgent) if t is not None}
        self._task = self._urgent = None
        if not tasks:
            return
        _done, pending = await asyncio.wait(tasks, timeout=self.interval + _STOP_GRACE_SECONDS)
        for task in pending:
            task.cancel()
