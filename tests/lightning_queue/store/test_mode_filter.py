"""`query_rollouts(mode=...)`: this store's own filter (the dashboard's), from the per-mode index or a scan."""

from __future__ import annotations

from typing import Any

import pytest

from lightning_queue import RedisLightningStore

MODES: list[Any] = ["train", "val", None, "train", "test", "train", None, "val", "train"]


async def enqueue(store: RedisLightningStore) -> list[Any]:
    return [await store.enqueue_rollout({"i": i}, mode=m) for i, m in enumerate(MODES)]


def expected(rollouts: list[Any], mode: str, order: str, limit: int, offset: int) -> list[str]:
    ids = [r.rollout_id for r in rollouts if r.mode == mode]
    ids = ids[::-1] if order == "desc" else ids
    return ids[offset:] if limit == -1 else ids[offset : offset + limit]


@pytest.mark.parametrize("sort_by", [None, "start_time"])
@pytest.mark.parametrize("order", ["asc", "desc"])
@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (2, 1), (10, 3)])
async def test_mode_pages_like_filtering_everything(
    store: RedisLightningStore, sort_by: Any, order: Any, limit: int, offset: int
) -> None:
    rollouts = await enqueue(store)
    page = await store.query_rollouts(mode="train", sort_by=sort_by, sort_order=order, limit=limit, offset=offset)
    assert [r.rollout_id for r in page.items] == expected(rollouts, "train", order, limit, offset)
    assert page.total == 4


async def test_mode_with_a_status_filter_or_another_sort_is_scanned_and_still_filtered(
    store: RedisLightningStore,
) -> None:
    rollouts = await enqueue(store)
    claimed = await store.dequeue_rollout(worker_id="w-1")  # the first: train
    assert claimed is not None and claimed.mode == "train"
    page = await store.query_rollouts(mode="train", status_in=["queuing"], sort_by="start_time", sort_order="desc")
    assert [r.rollout_id for r in page.items] == expected(rollouts, "train", "desc", -1, 0)[:-1]
    assert page.total == 3
    # "or" joins the contract's filters; the mode still applies to what they select.
    either = await store.query_rollouts(
        mode="val", status_in=["preparing"], rollout_id_contains="zzz", filter_logic="or"
    )
    assert either.items == []
    by_status = await store.query_rollouts(mode="val", sort_by="status")
    assert sorted(r.rollout_id for r in by_status.items) == sorted(expected(rollouts, "val", "asc", -1, 0))


async def test_without_the_mode_index_the_answer_is_the_same(store: RedisLightningStore) -> None:
    rollouts = await enqueue(store)
    # A namespace written before the mode index existed: the store scans instead.
    await store._redis.delete(store.keys.mode_index("train"))
    page = await store.query_rollouts(mode="train", sort_by="start_time", sort_order="desc", limit=2)
    assert [r.rollout_id for r in page.items] == expected(rollouts, "train", "desc", 2, 0)
    assert page.total == 4


async def test_a_mode_changed_later_is_found_under_the_new_one(store: RedisLightningStore) -> None:
    rollouts = await enqueue(store)
    await store.update_rollout(rollouts[1].rollout_id, mode="train")
    page = await store.query_rollouts(mode="train")
    assert rollouts[1].rollout_id in [r.rollout_id for r in page.items]
    assert page.total == 5
    assert rollouts[1].rollout_id not in [r.rollout_id for r in (await store.query_rollouts(mode="val")).items]


async def test_unknown_mode_is_refused_naming_it(store: RedisLightningStore) -> None:
    with pytest.raises(ValueError, match="trian"):
        await store.query_rollouts(mode="trian")  # type: ignore[arg-type]
