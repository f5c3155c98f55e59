"""Wire a REINFORCE run: store, inference server, proxy, local workers, and the Trainer."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning_queue import LLMProxy, LlmProxyTraceToTriplet, RedisLightningStore, Trainer

from .reinforce import Reinforce, ReinforceConfig
from .reloaders import LocalServerReloader, Reloader, VllmReloader
from .serving import ModelServerProcess, free_port

logger = logging.getLogger(__name__)

POLICY_MODEL = "policy"


@dataclass
class Upstream:
    """Where rollouts' LLM calls are served: the local model server, or vLLM on a GPU machine."""

    kind: str = "local"  # "local" | "vllm"
    model_server_threads: int = 1
    vllm_port: int | None = None
    vllm_args: tuple[str, ...] = ()
    vllm_executable: tuple[str, ...] = ("vllm",)


@contextlib.contextmanager
def serving(upstream: Upstream, model_dir: str | None) -> Iterator[tuple[str, Reloader, Any]]:
    """Start the inference server; yield its /v1 URL, the reloader for checkpoints, and a stopper."""
    if upstream.kind == "local":
        with ModelServerProcess(model_dir, threads=upstream.model_server_threads) as server:
            yield server.url, LocalServerReloader(server.url), server
        return
    if upstream.kind == "vllm":
        from lightning_queue.model_server import resolve_default_model_dir

        vllm = VllmReloader(
            port=upstream.vllm_port or free_port(),
            served_model_name=POLICY_MODEL,
            extra_args=upstream.vllm_args,
            executable=upstream.vllm_executable,
        )
        import asyncio

        asyncio.run(vllm.load(Path(model_dir) if model_dir else resolve_default_model_dir()))
        try:
            yield vllm.base_url, vllm, vllm
        finally:
            asyncio.run(vllm.stop())
        return
    raise ValueError(f"upstream must be 'local' or 'vllm', got {upstream.kind!r}")


def run_reinforce(
    config: ReinforceConfig,
    agent: Any,
    train: list[Any],
    val: list[Any],
    *,
    upstream: Upstream | None = None,
    n_workers: int = 2,
    worker_concurrency: int = 4,
    redis_url: str | None = None,
    namespace: str | None = None,
    keep_data: bool = False,
) -> dict[str, Any]:
    """Run REINFORCE end to end and return its result (held-out reward before/after, per-iteration metrics)."""
    upstream = upstream or Upstream()
    store = RedisLightningStore(redis_url, namespace=namespace or f"reinforce-{uuid.uuid4().hex[:8]}")
    with serving(upstream, config.model_dir) as (url, reloader, _server):
        # The served model returns token ids itself; vLLM needs to be asked for them.
        extra = {"return_token_ids": True} if upstream.kind == "vllm" else {}
        proxy = LLMProxy(
            model_list=[{"name": POLICY_MODEL, "base_url": url, "model": _served_name(upstream), "extra_body": extra}]
        )
        algorithm = Reinforce(config, reloader)
        trainer = Trainer(
            algorithm=algorithm,
            store=store,
            llm_proxy=proxy,
            adapter=LlmProxyTraceToTriplet(),
            n_workers=n_workers,
            worker_concurrency=worker_concurrency,
        )
        try:
            result: dict[str, Any] = trainer.fit(agent, train, val_dataset=val)
        finally:
            if not keep_data:
                _purge(store)
    result["namespace"] = store.namespace
    return result


def _served_name(upstream: Upstream) -> str:
    # `lq serve-model` answers to the alias "default" whatever checkpoint it serves.
    return "default" if upstream.kind == "local" else POLICY_MODEL


def _purge(store: RedisLightningStore) -> None:
    import asyncio

    try:
        asyncio.run(store.purge())
    except Exception as exc:  # cleanup only; the run's own outcome matters more
        logger.warning("could not purge namespace %s: %s", store.namespace, exc)
