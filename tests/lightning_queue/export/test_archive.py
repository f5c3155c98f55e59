"""Archive, then retain: nothing is deleted that the archive does not hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.export import ExportError
from lightning_queue.export.archive import archive_and_apply
from lightning_queue.store.retention import RetentionPolicy, apply, write_policy
from tests.lightning_queue.export.test_export import _finished, _read_back


async def test_an_archiving_policy_exports_before_it_deletes(store: RedisLightningStore, tmp_path: Path) -> None:
    ids = [await _finished(store, i) for i in range(4)]
    queued = await store.enqueue_rollout("queued")
    await write_policy(store, RetentionPolicy(keep_newest=1, min_age=0, archive=str(tmp_path / "arch")))
    with pytest.raises(ValueError, match="archives to"):
        await apply(store, now=1e12)  # the store alone cannot archive: it refuses rather than lose data
    assert await archive_and_apply(store, now=1e12) == 3
    archived = [r["rollout_id"] for r in _read_back(tmp_path / "arch", "parquet")["rollouts"]]
    assert archived == ids
    assert [r for r in [*ids, queued.rollout_id] if await store.get_rollout_by_id(r)] == [ids[3], queued.rollout_id]
    # The newest one is kept by keep_newest: a second run has nothing to delete.
    assert await archive_and_apply(store, now=1e12) == 0


async def test_a_failing_archive_deletes_nothing(store: RedisLightningStore, tmp_path: Path) -> None:
    ids = [await _finished(store, i) for i in range(2)]
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    await write_policy(store, RetentionPolicy(keep_newest=0, min_age=0, archive=str(blocker)))
    with pytest.raises(ExportError, match="not a directory"):
        await archive_and_apply(store, now=1e12)
    assert [r for r in ids if await store.get_rollout_by_id(r)] == ids


def test_policy_numbers_must_be_finite() -> None:
    with pytest.raises(ValueError, match="max_age"):
        RetentionPolicy(max_age=float("nan"))
    with pytest.raises(ValueError, match="min_age"):
        RetentionPolicy(keep_newest=1, min_age=float("inf"))
