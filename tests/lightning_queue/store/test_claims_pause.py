"""Issue 17: the claims pause of a weight sync, its TTL and its holder."""

from __future__ import annotations

import asyncio
import logging

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.store.errors import PauseHeld


async def test_pause_and_resume_with_the_returned_token(store: RedisLightningStore) -> None:
    assert await store.claims_paused() is False

    holder = await store.pause_claims(30)

    assert await store.claims_paused() is True
    status = await store.pause_status()
    assert status.holder == holder and status.remaining_seconds is not None and 0 < status.remaining_seconds <= 30
    assert await store.resume_claims(holder) is True
    assert await store.claims_paused() is False
    assert await store.resume_claims(holder) is False


async def test_another_holder_cannot_pause_or_resume_a_held_pause(store: RedisLightningStore) -> None:
    mine = await store.pause_claims(30, holder="sync-1")

    with pytest.raises(PauseHeld, match="already paused by holder 'sync-1'"):
        await store.pause_claims(30, holder="sync-2")
    assert await store.resume_claims("sync-2") is False
    assert await store.claims_paused() is True
    # Pausing again as the same holder renews.
    assert await store.pause_claims(30, holder=mine) == mine
    # None ends whoever's pause (an operator after a crash).
    assert await store.resume_claims(None) is True
    assert await store.claims_paused() is False


async def test_the_pause_expires_after_its_ttl_and_the_expiry_is_visible(store: RedisLightningStore) -> None:
    holder = await store.pause_claims(0.2)

    await asyncio.sleep(0.4)

    status = await store.pause_status()
    assert (status.paused, status.expired_holder) == (False, holder)
    assert await store.renew_pause(holder, 5) is False
    assert await store.resume_claims(holder) is False
    assert (await store.pause_status()).expired_holder is None


async def test_renew_extends_the_pause(store: RedisLightningStore) -> None:
    holder = await store.pause_claims(0.3)

    for _ in range(4):
        await asyncio.sleep(0.15)
        assert await store.renew_pause(holder, 0.3) is True

    assert await store.claims_paused() is True


@pytest.mark.parametrize("ttl", [0, -1, float("nan"), float("inf"), "5", True])
async def test_bad_ttls_are_refused_naming_the_value(store: RedisLightningStore, ttl: object) -> None:
    with pytest.raises(ValueError, match="pause ttl must be a positive number of seconds"):
        await store.pause_claims(ttl)  # type: ignore[arg-type]
    assert await store.claims_paused() is False


async def test_a_ttl_over_a_week_is_refused(store: RedisLightningStore) -> None:
    with pytest.raises(ValueError, match=r"at most 604800 seconds \(a week\), got 1e\+300"):
        await store.pause_claims(1e300)
    assert await store.claims_paused() is False


async def test_a_bad_holder_is_refused(store: RedisLightningStore) -> None:
    with pytest.raises(ValueError, match="invalid holder"):
        await store.pause_claims(5, holder="a b")


async def test_the_context_manager_renews_in_the_background_and_resumes_on_exit(store: RedisLightningStore) -> None:
    async with store.claims_pause(0.3) as holder:
        await asyncio.sleep(0.8)  # well past the TTL: only the background renewal keeps it
        status = await store.pause_status()
        assert (status.paused, status.holder) == (True, holder)

    assert await store.claims_paused() is False


async def test_the_context_manager_resumes_when_the_block_raises(store: RedisLightningStore) -> None:
    with pytest.raises(RuntimeError, match="sync failed"):
        async with store.claims_pause(30):
            raise RuntimeError("sync failed")

    assert await store.claims_paused() is False


async def test_a_lost_pause_is_taken_again_and_logged(
    store: RedisLightningStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="lightning_queue.store.pause")
    async with store.claims_pause(0.3) as holder:
        await store.resume_claims(None)  # as if the TTL had passed between two renewals
        await asyncio.sleep(0.25)
        assert (await store.pause_status()).holder == holder

    assert "expired before it was renewed" in caplog.text
    assert await store.claims_paused() is False
