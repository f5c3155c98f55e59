"""End to end: real Redis, an `lq worker` pool whose agent calls the LLM through a real `lq proxy` in front
of the stand-in model, and `lq dashboard`, all as processes; Debian's headless chromium loads every page and
the test reads the rendered DOM (counts, a rollout's LLM spans with their token-id counts, hostile input as
text, the reward chart's points, a live update). The pool's and the proxy's /metrics, scraped in the same
run, count what was run. Screenshots go to the test's tmp dir; with LQ_UPDATE_SCREENSHOTS=1 to docs/img/
(the committed ones), so a test run does not rewrite tracked files with rendering noise."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from lightning_queue import EnqueueRolloutRequest, ProxyLLM, RedisLightningStore
from lightning_queue.testing import StandInModelServer
from tests.support.metrics import free_port, scrape, value
from tests.support.pools import REPO, eventually, pool_starter, worker_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium"),
]
HOSTILE = "<script>document.title='pwned'</script>"
AGENT = "tests.support.reliability_agents:llm_calls"
DOCS_SHOTS = REPO / "docs" / "img"


def serve(args: list[str], log: Path, first_words: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start `lq <args>`; return the process and the URL it prints on its first line."""
    command = [sys.executable, "-m", "lightning_queue.cli", *args]
    with log.open("wb") as stderr:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, env=worker_env())
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()  # the process prints its URL first (or dies)
    if not line.startswith(first_words):
        proc.kill()
        raise AssertionError(line + log.read_text())
    return proc, line.rsplit(" ", 1)[1].strip()


@pytest.fixture
def namespace() -> str:
    return f"dash-{uuid.uuid4().hex[:8]}"


@pytest.fixture
async def store(redis_url: str, namespace: str) -> AsyncIterator[RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=namespace)
    try:
        yield store
    finally:
        keys = [k async for k in store._redis.scan_iter(match=f"*{namespace}*")]
        if keys:
            await store._redis.delete(*keys)
        await store.aclose()


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    """The test's service processes; killed when it ends."""
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)


async def rollouts(store: RedisLightningStore, calls: list[int]) -> list[str]:
    """Enqueue one rollout per entry, making that many LLM calls; wait until all succeeded."""
    requests = [EnqueueRolloutRequest(input={"delays": [0] * n, "mark": HOSTILE}, mode="train") for n in calls]
    ids = [r.rollout_id for r in await store.enqueue_many_rollouts(requests)]
    done = await store.wait_for_rollouts(rollout_ids=ids, timeout=30)
    assert [r.status for r in done] == ["succeeded"] * len(ids)
    return ids


async def test_dashboard_end_to_end_in_chromium(
    redis_url: str,
    namespace: str,
    store: RedisLightningStore,
    procs: list[subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    playwright = pytest.importorskip("playwright.async_api")
    shots = DOCS_SHOTS if os.environ.get("LQ_UPDATE_SCREENSHOTS") == "1" else tmp_path / "img"
    shots.mkdir(parents=True, exist_ok=True)
    common = ["--redis-url", redis_url, "--namespace", namespace]
    async with StandInModelServer() as model:
        # token_ids: ask the upstream for them, as a vLLM policy is asked
        proxy_args = ["proxy", *common, "--model", f"policy={model.url},token_ids"]
        proxy, proxy_url = serve(proxy_args, tmp_path / "proxy.log", "lq proxy: serving policy")
        procs.append(proxy)
        dashboard, url = serve(
            ["dashboard", *common, "--port", "0", "--sample-seconds", "0.3", "--refresh-seconds", "0.3"],
            tmp_path / "dashboard.log",
            "",
        )
        procs.append(dashboard)
        await store.add_resources({"llm": ProxyLLM(endpoint=proxy_url, model="policy")})
        metrics_port = free_port()
        with pool_starter(namespace, tmp_path) as start_pool:
            pool = start_pool(redis_url, AGENT, concurrency=2, extra=("--metrics-port", str(metrics_port)))
            first = (await rollouts(store, [2, 1, 1]))[0]
            async with playwright.async_playwright() as p:
                browser = await p.chromium.launch(executable_path=CHROMIUM)
                # Playwright's waits evaluate strings, which the page's CSP forbids; the CSP has its own test.
                context = await browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 800})
                page = await context.new_page()
                await page.goto(url)
                await page.wait_for_function("document.querySelector('#chart-reward').dataset.points === '3'")
                assert await page.inner_text("#status-counts tr[data-status=succeeded] td") == "3"
                assert await page.inner_text("#queue-depth") == "0"
                assert await page.evaluate("window.lqDashboard.charts['chart-reward'].data[1]") == [1.0, 1.0, 1.0]
                # live: a rollout finishing now shows up without a reload
                await rollouts(store, [2])
                await page.wait_for_function(
                    "document.querySelector('#status-counts tr[data-status=succeeded] td').textContent === '4'",
                    timeout=15000,
                )
                await page.wait_for_function("document.querySelector('#chart-reward').dataset.points === '4'")
                await page.screenshot(path=str(shots / "dashboard-overview.png"))

                await page.goto(url + "rollouts?status=succeeded")
                await page.wait_for_function("document.querySelectorAll('#rollouts tbody tr').length === 4")
                assert HOSTILE in await page.inner_text("#rollouts tbody td.input")
                await page.screenshot(path=str(shots / "dashboard-rollouts.png"))

                await page.goto(url + f"rollouts/{first}")
                await page.wait_for_function("document.querySelectorAll('#spans .badge.tokens').length >= 2")
                tokens = await page.eval_on_selector_all("#spans .badge.tokens", "ns => ns.map(n => n.textContent)")
                # The proxy's spans of the two calls carry the stand-in's token ids (the client's own spans do not).
                counted_ids = [t for t in tokens if re.fullmatch(r"prompt ids [1-9]\d* · response ids [1-9]\d*", t)]
                assert len(counted_ids) == 2, tokens
                assert "reward 1" in await page.inner_text("#spans")
                assert HOSTILE in await page.inner_text("#rollout-input")
                assert await page.title() != "pwned"
                await page.screenshot(path=str(shots / "dashboard-rollout.png"))

                for name, expected in (("workers", pool.worker_ids()), ("resources", ["rs-"])):
                    await page.goto(url + name)
                    await page.wait_for_function(f"document.querySelectorAll('#{name} tbody tr').length >= 1")
                    text = await page.inner_text(f"#{name}")
                    assert any(e in text for e in expected), text
                    await page.screenshot(path=str(shots / f"dashboard-{name}.png"))
                await browser.close()

            async def counted() -> Any:
                samples = await scrape(f"http://127.0.0.1:{metrics_port}/metrics")
                return samples if value(samples, "lq_rollouts_total", outcome="succeeded") == 4 else None

            samples = await eventually(counted, 20, "4 succeeded rollouts on the pool's /metrics")
            assert value(samples, "lq_rollouts_total", outcome="failed") == 0
            proxy_samples = await scrape(f"{proxy_url}/metrics")
            assert value(proxy_samples, "lq_proxy_calls_total", model="policy", status="200") == 6
            assert len(model.requests) == 6
    names = ("overview", "rollouts", "rollout", "workers", "resources")
    assert all(os.path.getsize(shots / f"dashboard-{n}.png") > 1000 for n in names)  # noqa: ASYNC240
