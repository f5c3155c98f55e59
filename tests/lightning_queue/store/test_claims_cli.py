"""Issue 17 on the command line: `lq claims pause|resume|status`, `lq staleness set|show|clear`, `lq status`."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator

import pytest
from click.testing import CliRunner, Result

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main


@pytest.fixture
async def cli_store(redis_url: str) -> AsyncIterator[RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=f"cli-{uuid.uuid4().hex[:8]}")
    yield store
    try:
        await store.purge()
    finally:
        await store.aclose()


async def lq(store: RedisLightningStore, *args: str) -> Result:
    # The CLI runs its own event loop, so it runs in a thread beside this test's loop.
    where = ["--redis-url", store.url or "", "--namespace", store.namespace]
    return await asyncio.to_thread(CliRunner().invoke, main, [*args, *where])


async def test_pause_status_resume(cli_store: RedisLightningStore) -> None:
    paused = await lq(cli_store, "claims", "pause", "--ttl", "30", "--holder", "ops-1")
    assert paused.exit_code == 0, paused.output
    assert "holder ops-1" in paused.output
    assert await cli_store.claims_paused()

    status = await lq(cli_store, "claims", "status")
    assert status.exit_code == 0, status.output
    assert "paused by ops-1" in status.output and "no bound" in status.output

    held = await lq(cli_store, "claims", "pause", "--ttl", "30")
    assert held.exit_code == 1 and "already paused by holder 'ops-1'" in held.output

    resumed = await lq(cli_store, "claims", "resume", "--holder", "ops-1")
    assert resumed.exit_code == 0 and not await cli_store.claims_paused()
    again = await lq(cli_store, "claims", "resume")
    assert again.exit_code == 1 and "no pause in force" in again.output


async def test_bad_ttl_and_holder_are_refused(cli_store: RedisLightningStore) -> None:
    ttl = await lq(cli_store, "claims", "pause", "--ttl", "0")
    assert ttl.exit_code == 2 and "--ttl" in ttl.output
    holder = await lq(cli_store, "claims", "pause", "--holder", "a:b")
    assert holder.exit_code == 1 and "invalid holder 'a:b'" in holder.output
    assert not await cli_store.claims_paused()


async def test_staleness_set_show_clear(cli_store: RedisLightningStore) -> None:
    set_ = await lq(cli_store, "staleness", "set", "-s", "2", "-b", "8", "--mode", "train", "--mode", "none")
    assert set_.exit_code == 0, set_.output
    assert "max_staleness 2, batch_size 8, modes train, (no mode)" in set_.output
    bound = await cli_store.get_staleness()
    assert bound is not None and bound.modes == ("train", None) and bound.limit == 24

    shown = await lq(cli_store, "staleness", "show")
    assert "admitted 0 of 24" in shown.output

    cleared = await lq(cli_store, "staleness", "clear")
    assert cleared.exit_code == 0 and "no bound" in cleared.output
    assert await cli_store.get_staleness() is None


async def test_staleness_set_refuses_bad_values(cli_store: RedisLightningStore) -> None:
    negative = await lq(cli_store, "staleness", "set", "-s", "-1", "-b", "8")
    assert negative.exit_code == 2 and "--max-staleness" in negative.output
    mode = await lq(cli_store, "staleness", "set", "-s", "1", "-b", "8", "--mode", "training")
    assert mode.exit_code == 2 and "'training'" in mode.output
    assert await cli_store.get_staleness() is None


async def test_lq_status_shows_version_pause_and_staleness(cli_store: RedisLightningStore) -> None:
    await cli_store.update_resources("main", {})
    await cli_store.set_staleness(1, 4)
    holder = await cli_store.pause_claims(30)

    report = await lq(cli_store, "status", "--json")
    assert report.exit_code == 0, report.output
    claims = json.loads(report.output)["claims"]
    assert (claims["policy_version"], claims["paused"], claims["pause_holder"]) == (1, True, holder)
    assert "max_staleness 1, batch_size 4" in claims["staleness"]

    text = await lq(cli_store, "status")
    assert f"paused by {holder}" in text.output and "version 1" in text.output
