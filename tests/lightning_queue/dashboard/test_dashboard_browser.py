"""`lq dashboard` as a process over real Redis, loaded in Debian's headless chromium: the rendered DOM shows
the counts, a rollout's spans (hostile input as text), the reward chart's points and a live update.
Screenshots go to docs/img/."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.reward import emit_reward
from lightning_queue.types import LLM
from tests.support.pools import REPO, worker_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]
HOSTILE = "<script>document.title='pwned'</script>"


async def finish(store: RedisLightningStore, reward: float) -> str:
    claimed = await store.dequeue_rollout(worker_id="w-test")
    await store.add_otel_span(claimed.rollout_id, claimed.attempt.attempt_id, emit_reward(reward, propagate=False))
    await store.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="succeeded")
    return claimed.rollout_id


async def test_pages_in_chromium(redis_url: str) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    namespace = f"dash-{uuid.uuid4().hex[:8]}"
    store = RedisLightningStore(redis_url, namespace=namespace)
    command = [sys.executable, "-m", "lightning_queue.cli", "dashboard", "--redis-url", redis_url]
    command += ["--namespace", namespace, "--port", "0", "--sample-seconds", "0.3", "--refresh-seconds", "0.3"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, env=worker_env())  # noqa: ASYNC220 (started once)
    shots = REPO / "docs" / "img"
    shots.mkdir(parents=True, exist_ok=True)
    try:
        await store.add_resources({"llm": LLM(endpoint="http://x", model="m")})
        for i in range(4):
            await store.enqueue_rollout({"q": HOSTILE, "i": i}, mode="train")
        first = await finish(store, 0.25)
        await finish(store, 0.75)
        assert proc.stdout is not None
        url = proc.stdout.readline().decode().rsplit(" ", 1)[1].strip()
        async with playwright.async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM)
            # Playwright's waits evaluate strings, which the page's CSP forbids; the CSP has its own test.
            page = await (
                await browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 800})
            ).new_page()
            await page.goto(url)
            await page.wait_for_function("document.querySelector('#chart-reward').dataset.points === '2'")
            assert await page.inner_text("#status-counts tr[data-status=succeeded] td") == "2"
            assert await page.inner_text("#queue-depth") == "2"
            assert await page.evaluate("window.lqDashboard.charts['chart-reward'].data[1]") == [0.25, 0.75]
            # live: a rollout finishing now shows up without a reload
            await finish(store, 1.0)
            await page.wait_for_function(
                "document.querySelector('#status-counts tr[data-status=succeeded] td').textContent === '3'",
                timeout=15000,
            )
            await page.wait_for_function("document.querySelector('#chart-reward').dataset.points === '3'")
            await page.screenshot(path=str(shots / "dashboard-overview.png"))

            await page.goto(url + "rollouts?status=queuing")
            await page.wait_for_function("document.querySelectorAll('#rollouts tbody tr').length === 1")
            assert HOSTILE in await page.inner_text("#rollouts tbody td.input")
            await page.screenshot(path=str(shots / "dashboard-rollouts.png"))

            await page.goto(url + f"rollouts/{first}")
            await page.wait_for_function("document.querySelectorAll('#spans li.span').length === 1")
            assert "reward 0.250" in await page.inner_text("#spans")
            assert HOSTILE in await page.inner_text("#rollout-input")
            assert await page.title() != "pwned"
            await page.screenshot(path=str(shots / "dashboard-rollout.png"))

            for name, expected in (("workers", "w-test"), ("resources", "rs-")):
                await page.goto(url + name)
                await page.wait_for_function(f"document.querySelectorAll('#{name} tbody tr').length >= 1")
                assert expected in await page.inner_text(f"#{name}")
            await browser.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
        keys = [k async for k in store._redis.scan_iter(match=f"*{namespace}*")]
        if keys:
            await store._redis.delete(*keys)
        await store.aclose()
    assert all(os.path.getsize(shots / f"dashboard-{n}.png") > 1000 for n in ("overview", "rollouts", "rollout"))  # noqa: ASYNC240
