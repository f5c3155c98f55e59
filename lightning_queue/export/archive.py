"""Archive, then retain: export a namespace into its policy's `archive` directory, then apply the policy.

Only rollouts the export has written (ended before its checkpoint) may be deleted, so an archived
namespace loses nothing even when the export stops half-way or fails.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..store import RedisLightningStore
from ..store.retention import STEP, apply, read_policy
from .run import MANIFEST, export_namespace


async def archive_and_apply(store: RedisLightningStore, *, now: float | None = None, step: int = STEP) -> int:
    """Apply the namespace's policy (exporting first if it archives); returns how many rollouts were deleted."""
    policy = await read_policy(store)
    if policy is None:
        return 0
    if policy.archive is None:
        return await apply(store, now=now, step=step)
    directory = Path(policy.archive)
    await export_namespace(store, directory)
    last = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))["last_end_time"]
    # Rollouts at exactly the checkpoint's end_time wait for the next run (ties may still be arriving).
    return await apply(store, now=now, step=step, archived_before=float("-inf") if last is None else float(last))
