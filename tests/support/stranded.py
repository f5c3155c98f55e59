"""What a test prints about rollouts that did not finish: their hashes, attempts, stream entries and indexes.

So a run that strands a rollout in CI shows the state the watchdog left alone, not only a count.
"""

from __future__ import annotations

import time
from typing import Any

from lightning_queue import RedisLightningStore
from lightning_queue.store.schema import GROUP
from lightning_queue.types import Rollout
from lightning_queue.types.core import ROLLOUT_STATUSES

# msgpack blobs: long and unreadable in a failure message.
_BLOBS = {"input", "config", "metadata"}


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _fields(raw: dict[Any, Any]) -> dict[str, str]:
    out = {_text(k): _text(v) for k, v in raw.items()}
    return {k: (f"<{len(raw[k.encode()])} bytes>" if k in _BLOBS else v) for k, v in out.items()}


async def _entry(store: RedisLightningStore, entry_id: str) -> str:
    """Whether a stream entry still exists, and who holds it pending (idle ms, deliveries)."""
    r = store._redis
    exists = bool(await r.xrange(store.keys.queue, entry_id, entry_id))
    try:
        pending = await r.xpending_range(store.keys.queue, GROUP, min=entry_id, max=entry_id, count=1)
    except Exception as exc:  # no group: say so rather than hide the rest
        return f"{entry_id} in stream={exists}, XPENDING failed: {exc}"
    if not pending:
        return f"{entry_id} in stream={exists}, not pending"
    p = pending[0]
    return (
        f"{entry_id} in stream={exists}, pending under {_text(p['consumer'])} "
        f"idle {p['time_since_delivered']} ms, delivered {p['times_delivered']}x"
    )


async def describe_rollouts(store: RedisLightningStore, rollout_ids: list[str]) -> str:
    """One block per rollout: hash, status indexes it is in, each attempt and the entries they name."""
    r = store._redis
    lines = [f"stream length {await r.xlen(store.keys.queue)}, pending {await store.pending_entries()}"]
    for rid in rollout_ids:
        rollout = _fields(await r.hgetall(store.keys.rollout(rid)))
        indexes = [s for s in ROLLOUT_STATUSES if await r.zscore(store.keys.status_index(s), rid) is not None]
        lines.append(f"rollout {rid}: {rollout}; in status indexes {indexes}")
        if "qentry" in rollout:
            lines.append(f"  qentry {await _entry(store, rollout['qentry'])}")
        for aid in [_text(a) for a in await r.zrange(store.keys.attempts(rid), 0, -1)]:
            attempt = _fields(await r.hgetall(store.keys.attempt(rid, aid)))
            lines.append(f"  attempt {aid}: {attempt}")
            if "entry" in attempt:
                lines.append(f"    entry {await _entry(store, attempt['entry'])}")
    return "\n".join(lines)


async def wait_while_progressing(
    store: RedisLightningStore, rollout_ids: list[str], *, stuck_seconds: float, limit_seconds: float
) -> list[Rollout]:
    """The rollouts that ended, waiting while some still end: give up once none has for `stuck_seconds`
    (or after `limit_seconds`). A fixed deadline either fails a slow run that is still moving or spends
    the test's time budget on a rollout that will never end, leaving none to say why."""
    started = last_progress = time.monotonic()
    finished: dict[str, Rollout] = {}
    while len(finished) < len(rollout_ids):
        now = time.monotonic()
        if now - last_progress > stuck_seconds or now - started > limit_seconds:
            break
        left = [rid for rid in rollout_ids if rid not in finished]
        done = await store.wait_for_rollouts(rollout_ids=left, timeout=1.0)
        if done:
            finished.update((r.rollout_id, r) for r in done)
            last_progress = time.monotonic()
    return list(finished.values())
