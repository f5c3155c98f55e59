"""The lease thread: keeps a worker's claims leased and the watchdog sweeping, whatever its event loop does.

An async agent that blocks the worker's event loop (CPU-bound code, `time.sleep` in `async def`) would
stop renewals running on that loop: its rollout would be reclaimed and run again elsewhere while it
still runs here, and its result dropped. So renewals and the sweep run in a thread of their own, with
its own event loop and therefore its own Redis client (the store keeps one per loop). A blocked loop
keeps its leases (the process is alive, its agent only busy) and is logged, naming the rollout; a
stopped (SIGSTOP) or dead process stops this thread too, so its leases still lapse. Rollout timeouts
still end a blocked agent's attempt: the sweep here enforces them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable

from lightning_queue.store import RedisLightningStore
from lightning_queue.store.auto_retention import AutoRetention

from . import metrics
from .health import REDIS_ERRORS, Health

logger = logging.getLogger(__name__)

# How often the thread checks that the worker's loop still runs callbacks.
_WATCH_SECONDS = 0.25
# How long the thread's own Redis calls may take to wind down on stop.
_CLOSE_SECONDS = 2.0
_CLOSE_ERRORS: tuple[type[Exception], ...] = (asyncio.TimeoutError, *REDIS_ERRORS)

LostCallback = Callable[[str, str], None]


class LeaseKeeper:
    """Renews the leases of the entries `hold()` names, from a daemon thread, until `stop()`.

    `on_lost(entry_id, why)` is called on the worker's loop for an entry that is no longer held (or
    could not be renewed for `lease_seconds`); `on_failed()` if the thread itself dies. A loop that
    runs no callback for `block_warn_seconds` is logged as blocked, naming the task that blocks it
    (`lq rollout <rid> attempt <aid>`).
    """

    def __init__(
        self,
        store: RedisLightningStore,
        consumer: str,
        *,
        lease_seconds: float,
        renew_seconds: float,
        sweep_seconds: float,
        on_lost: LostCallback,
        agent: str,
        on_failed: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.consumer = consumer
        self.lease_seconds = lease_seconds
        self.renew_seconds = renew_seconds
        self.sweep_seconds = sweep_seconds
        self.block_warn_seconds = max(1.0, min(5.0, lease_seconds / 3))
        self.on_lost = on_lost
        self.on_failed = on_failed
        self.agent = agent
        self.retention = AutoRetention(store)
        self._lock = threading.Lock()
        self._renewed: dict[str, float] = {}  # held entry -> when it was last known held (monotonic)
        self._reported: set[str] = set()  # entries reported lost: no longer renewed, their time kept
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._owner_loop: asyncio.AbstractEventLoop | None = None
        self._owner_thread: threading.Thread | None = None
        self._ping_sent: float | None = None
        self._blocked_logged = False

    # --- called on the worker's loop --------------------------------------------------------------
    def start(self) -> None:
        """Start the thread; call on the worker's loop (the one `on_lost` runs on and that is watched)."""
        self._owner_loop = asyncio.get_running_loop()
        self._owner_thread = threading.current_thread()
        self._thread = threading.Thread(target=self._main, name=f"lq-leases {self.consumer}", daemon=True)
        self._thread.start()

    def hold(self, entry_id: str) -> None:
        with self._lock:
            self._renewed[entry_id] = time.monotonic()

    def forget(self, entry_id: str) -> None:
        with self._lock:
            self._renewed.pop(entry_id, None)
            self._reported.discard(entry_id)

    def since_renewed(self, entry_id: str) -> float:
        """Seconds since the entry was last known held (0 for an entry not held)."""
        with self._lock:
            renewed = self._renewed.get(entry_id)
        return 0.0 if renewed is None else time.monotonic() - renewed

    def stop(self, timeout: float) -> bool:
        """Stop the thread and close its Redis client; wait up to `timeout`. True once it has ended."""
        self._stopping.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            # RuntimeError: its loop already closed, the thread is ending.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(wake.set)
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _pong(self) -> None:
        # Runs on the worker's loop: it got round to a callback, so it is not blocked.
        with self._lock:
            sent, logged = self._ping_sent, self._blocked_logged
            self._ping_sent, self._blocked_logged = None, False
        if sent is not None:
            metrics.LOOP_LAG.set(time.monotonic() - sent)
        if logged and sent is not None:
            blocked = time.monotonic() - sent
            logger.warning("worker %s: its event loop ran again after being blocked for %.1fs", self.consumer, blocked)

    # --- the thread -------------------------------------------------------------------------------
    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run(loop))
        except Exception:
            # Never silent: without this thread the worker's leases lapse and its rollouts are reclaimed,
            # so the worker must stop claiming (and its process exit to be replaced), not run on unrenewed.
            logger.exception("worker %s: the lease thread failed; its leases will lapse", self.consumer)
            if self.on_failed is not None:
                self._call_owner(self.on_failed)
        finally:
            loop.close()

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._wake = asyncio.Event()
        self._loop = loop
        renewal = Health(f"worker {self.consumer}: lease renewal", logger)
        sweeping = Health(f"worker {self.consumer}: watchdog sweep", logger)
        retaining = Health(f"worker {self.consumer}: retention step", logger)
        now = time.monotonic()
        next_renew, next_sweep = now + self.renew_seconds, now + self.sweep_seconds
        try:
            while not self._stopping.is_set() and self._owner_alive():
                now = time.monotonic()
                self._watch(now)
                if now >= next_renew:
                    await self._renew(renewal)
                    next_renew = time.monotonic() + self.renew_seconds
                if now >= next_sweep and not self._stopping.is_set():
                    await self._sweep(sweeping)
                    next_sweep = time.monotonic() + self.sweep_seconds
                if time.monotonic() >= self.retention.next_tick and not self._stopping.is_set():
                    await self._retain(retaining)
                wake = min(next_renew, next_sweep, self.retention.next_tick, time.monotonic() + _WATCH_SECONDS)
                pause = wake - time.monotonic()
                self._wake.clear()
                if not self._stopping.is_set():
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, pause))
        finally:
            # The client of this thread's loop; the worker's own client is closed by whoever owns the store.
            try:
                await asyncio.wait_for(self.store.aclose(), _CLOSE_SECONDS)
            except _CLOSE_ERRORS as exc:
                logger.warning("worker %s: the lease thread's Redis client did not close: %s", self.consumer, exc)

    def _owner_alive(self) -> bool:
        owner_loop, owner_thread = self._owner_loop, self._owner_thread
        return (
            owner_loop is not None
            and not owner_loop.is_closed()
            and owner_thread is not None
            and owner_thread.is_alive()
        )

    async def _renew(self, health: Health) -> None:
        with self._lock:
            entries = [e for e in self._renewed if e not in self._reported]
        if not entries:
            return
        try:
            held = await self.store.leases.renew_leases(self.consumer, entries)
        except REDIS_ERRORS as exc:
            metrics.redis_error("renew")
            health.failed(exc)
            now = time.monotonic()
            with self._lock:
                lapsed = [e for e in entries if now - self._renewed.get(e, now) > self.lease_seconds]
                self._reported.update(lapsed)
            for entry in lapsed:
                metrics.lease_lost("renew_failed")
                self._lost(entry, f"its lease could not be renewed for {self.lease_seconds}s ({exc})")
            return
        health.ok()
        now = time.monotonic()
        lost = []
        with self._lock:
            for entry in entries:
                if entry not in self._renewed:
                    continue  # its rollout ended meanwhile
                if entry in held:
                    self._renewed[entry] = now
                    metrics.LEASE_RENEWALS.inc()
                else:
                    self._reported.add(entry)
                    lost.append(entry)
        for entry in lost:
            metrics.lease_lost("reclaimed")
            self._lost(entry, "its stream entry was reclaimed or its attempt ended by the watchdog")

    async def _sweep(self, health: Health) -> None:
        try:
            # Forced, i.e. without the store's sweep lock: that lock's TTL is the *caller's* debounce, so
            # one reader with a long debounce (`lq status` uses 3600 s) would stall every reclaim.
            _, reclaimed = await self.store.sweep(force=True)
        except REDIS_ERRORS as exc:
            metrics.redis_error("sweep")
            health.failed(exc)
        else:
            metrics.RECLAIMS.inc(reclaimed)
            health.ok()

    async def _retain(self, health: Health) -> None:
        # The namespace's retention policy, one bounded step at a time (store/auto_retention.py).
        try:
            await self.retention.tick()
        except REDIS_ERRORS as exc:
            self.retention.next_tick = time.monotonic() + self.sweep_seconds  # retried, not spun on
            health.failed(exc)
        else:
            health.ok()

    def _lost(self, entry_id: str, why: str) -> None:
        # Runs when the worker's loop gets to it: at once, or as soon as a blocking agent lets go.
        self._call_owner(self.on_lost, entry_id, why)

    def _call_owner(self, callback: Callable[..., None], *args: object) -> None:
        if self._owner_loop is None:
            return
        try:
            self._owner_loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the worker's loop closed: nothing left to tell or keep
            self._stopping.set()

    def _watch(self, now: float) -> None:
        with self._lock:
            sent = self._ping_sent
            if sent is None:
                self._ping_sent = now
            blocked = sent is not None and now - sent >= self.block_warn_seconds and not self._blocked_logged
            if blocked:
                self._blocked_logged = True
        if sent is None:
            self._call_owner(self._pong)
        elif blocked:
            logger.warning(
                "worker %s: its event loop has been blocked for %.1fs by %s of agent %s, at %s. An async agent "
                "must not block (await, or use asyncio.to_thread, or write a sync agent); its leases are still "
                "renewed, but other rollouts of this worker wait",
                self.consumer,
                now - sent,
                self._culprit(),
                self.agent,
                self._blocked_at(),
            )

    def _culprit(self) -> str:
        owner = self._owner_loop
        task = asyncio.current_task(owner) if owner is not None else None
        if task is None:
            return "a callback outside any task"
        name = task.get_name()
        return name[3:] if name.startswith("lq ") else f"task {name!r}"

    def _blocked_at(self) -> str:
        thread = self._owner_thread
        frame = sys._current_frames().get(thread.ident) if thread is not None and thread.ident else None
        if frame is None:
            return "an unknown place"
        code = frame.f_code
        return f"{code.co_filename}:{frame.f_lineno} in {code.co_name}"
