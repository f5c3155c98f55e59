"""Against the real `lq serve-model`: a weight load during a call through the proxy never gives that call
a half-loaded model, and the spans say which weights answered."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.llm_proxy import UpstreamModel
from tests.support.proxy import ProxyFactory, client_of

torch = pytest.importorskip("torch", reason="needs the local-llm extra")
model_server = pytest.importorskip("lightning_queue.model_server")

pytestmark = [pytest.mark.model, pytest.mark.slow]

ADMIN_TOKEN = "weight-sync-test-admin-token"
QUESTION = [{"role": "user", "content": "Name three colours, then three animals."}]
# Long enough that the load (about a second) ends while the answer is still being generated.
GREEDY: dict[str, Any] = {"temperature": 0, "max_tokens": 96, "logprobs": True}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """SmolLM2 served with /v1/load on, and a checkpoint with different weights (final norm halved)."""
    loaded = model_server.load_default_model()
    root = tmp_path_factory.mktemp("checkpoints")
    changed = copy.deepcopy(loaded.model)
    with torch.no_grad():
        changed.model.norm.weight.mul_(0.5)
    changed.save_pretrained(root / "step-1")
    server = model_server.ModelServer(loaded, threads=1, admin_token=ADMIN_TOKEN, checkpoint_root=root)
    with model_server.ServerThread(server) as url:
        yield url, root / "step-1"


async def load(url: str, path: Path) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/load", json={"path": str(path)}, headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        result: dict[str, Any] = await response.json()
        return result


def logprobs_of(chunks: list[Any]) -> list[float]:
    return [e.logprob for c in chunks if c.choices and c.choices[0].logprobs for e in c.choices[0].logprobs.content]


async def test_a_load_during_a_streamed_call_leaves_the_call_on_the_old_weights_and_the_span_says_so(
    make_proxy: ProxyFactory, store: RedisLightningStore, served: tuple[str, Path]
) -> None:
    url, checkpoint = served
    proxy = await make_proxy(model_list=[UpstreamModel(name="smol", base_url=url, model="default")])
    attempt = await store.start_rollout(input=None)
    async with aiohttp.ClientSession() as session, session.get(url.removesuffix("/v1") + "/health") as response:
        before = int((await response.json())["version"])  # the server is shared by both store backends
    async with client_of(proxy, attempt) as client:
        reference = await client.chat.completions.create(model="smol", messages=QUESTION, stream=True, **GREEDY)  # type: ignore[call-overload]
        expected = logprobs_of([c async for c in reference])

        stream = await client.chat.completions.create(model="smol", messages=QUESTION, stream=True, **GREEDY)  # type: ignore[call-overload]
        chunks = []
        loading: asyncio.Task[dict[str, Any]] | None = None
        loaded_at: int | None = None
        async for chunk in stream:
            chunks.append(chunk)
            if loading is None:
                loading = asyncio.create_task(load(url, checkpoint))  # new weights arrive mid-generation
            elif loaded_at is None and loading.done():
                loaded_at = len(chunks)
        assert loading is not None
        assert loaded_at is not None and loaded_at < len(chunks)  # the new weights were in before the answer ended
        assert (await loading)["version"] == before + 1

        after = await client.chat.completions.create(model="smol", messages=QUESTION, **GREEDY)  # type: ignore[call-overload]

    assert {c.system_fingerprint for c in chunks} == {f"weights-v{before}"}
    # Bit for bit the old model's answer: no token came from new or half-loaded weights.
    assert logprobs_of(chunks) == pytest.approx(expected, abs=1e-4)
    assert after.system_fingerprint == f"weights-v{before + 1}"
    spans = sorted(await store.query_spans(attempt.rollout_id), key=lambda s: s.sequence_id)
    assert [s.attributes["lq.upstream.weights_version"] for s in spans] == [before, before, before + 1]
    assert [s.attributes["lq.policy.version_changed"] for s in spans] == [False, False, False]
