"""Wire a training run: store, inference server, proxy, local workers and the Trainer.

REINFORCE and SFT share it: both train the served policy and reload the server between iterations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from lightning_queue import LLMProxy, LlmProxyTraceToTriplet, RedisLightningStore, Trainer
from lightning_queue.algorithm import Algorithm
from lightning_queue.store.retention import RetentionPolicy, read_policy, write_policy

from .reloaders import LocalServerReloader, Reloader, VllmReloader
from .serving import ModelServerProcess, free_port, wait_until_healthy

logger = logging.getLogger(__name__)

POLICY_MODEL = "policy"
# The built-in sums task (algorithms/tasks.py), by name: what the CLIs run when given no agent.
BUILTIN_AGENT = "algorithms.tasks:arithmetic_agent"
BUILTIN_CHECKER = "algorithms.tasks:check"
# What a ready algorithm's namespace keeps while it trains (unless --keep-data): each batch is read as
# it finishes (its wait's read marks hold it meanwhile), so older finished rollouts only take memory.
RUN_RETENTION = RetentionPolicy(keep_newest=5_000, min_age=300)


@dataclass
class Upstream:
    """Where rollouts' LLM calls are served.

    kind: "local" starts `lq serve-model`; "vllm" restarts `vllm serve` per checkpoint (GPU machines);
        "external" uses an `lq serve-model` already running at `base_url` (e.g. a Procfile's), which
        loads checkpoints when given its `admin_token` (and our checkpoint dir is inside its root).
    """

    kind: str = "local"
    base_url: str | None = None
    admin_token: str | None = None
    admin_token_file: Path | None = None
    model_server_threads: int = 1
    vllm_port: int | None = None
    vllm_args: tuple[str, ...] = ()
    vllm_executable: tuple[str, ...] = ("vllm",)

    def model_entry(self, url: str) -> dict[str, Any]:
        """The proxy's model list entry for the policy served at `url`."""
        if self.kind == "vllm":
            # vLLM (>= 0.10.2) returns token ids only when asked; it serves under our policy name.
            return {
                "name": POLICY_MODEL,
                "base_url": url,
                "model": POLICY_MODEL,
                "extra_body": {"return_token_ids": True},
            }
        # `lq serve-model` answers to the alias "default" whatever checkpoint it serves.
        return {"name": POLICY_MODEL, "base_url": url, "model": "default"}


@contextlib.contextmanager
def serving(upstream: Upstream, model_dir: str | None, checkpoint_root: str | Path) -> Iterator[tuple[str, Reloader]]:
    """Make the policy servable; yield its /v1 URL and the reloader that swaps in the checkpoints the
    algorithm writes inside `checkpoint_root`."""
    if upstream.kind == "local":
        with ModelServerProcess(
            model_dir, threads=upstream.model_server_threads, checkpoint_root=checkpoint_root
        ) as server:
            yield server.url, LocalServerReloader(server.url, admin_token=server.admin_token)
    elif upstream.kind == "external":
        if not upstream.base_url:
            raise ValueError("an external upstream needs base_url (the /v1 URL of a running lq serve-model)")
        # Started beside us (a Procfile starts everything at once): wait until it serves.
        root = upstream.base_url.rstrip("/").removesuffix("/v1")
        wait_until_healthy(f"{root}/health", timeout=600)
        # The server writes its token file before it serves, so it exists once /health answers.
        token = upstream.admin_token_file.read_text().strip() if upstream.admin_token_file else upstream.admin_token
        yield upstream.base_url, LocalServerReloader(upstream.base_url, admin_token=token)
    elif upstream.kind == "vllm":
        from lightning_queue.model_server import resolve_default_model_dir

        vllm = VllmReloader(
            port=upstream.vllm_port or free_port(),
            served_model_name=POLICY_MODEL,
            extra_args=upstream.vllm_args,
            executable=upstream.vllm_executable,
        )
        asyncio.run(vllm.load(Path(model_dir) if model_dir else resolve_default_model_dir()))
        try:
            yield vllm.base_url, vllm
        finally:
            asyncio.run(vllm.stop())
    else:
        raise ValueError(f"upstream must be 'local', 'external' or 'vllm', got {upstream.kind!r}")


def run_training(
    make_algorithm: Callable[[Reloader], Algorithm],
    agent: Any,
    train: list[Any],
    val: list[Any] | None = None,
    *,
    checkpoint_root: str | Path,
    model_dir: str | None = None,
    upstream: Upstream | None = None,
    use_proxy: bool = True,
    n_workers: int = 2,
    worker_concurrency: int = 4,
    redis_url: str | None = None,
    namespace: str | None = None,
    keep_data: bool = False,
) -> dict[str, Any]:
    """Serve the policy, run the algorithm through a Trainer with `n_workers` local workers, clean up.

    The inference server loads checkpoints only from `checkpoint_root`, where the algorithm writes them.

    With `use_proxy=False` no proxy is started here: the algorithm publishes an external `lq proxy`
    (which must record into the same namespace) and reloads the server itself.
    """
    upstream = upstream or Upstream()
    store = RedisLightningStore(redis_url, namespace=namespace or f"train-{uuid.uuid4().hex[:8]}")
    try:
        if not keep_data:
            asyncio.run(_closing(store, retain_run_data(store)))
        with serving(upstream, model_dir, checkpoint_root) as (url, reloader):
            proxy = LLMProxy(model_list=[upstream.model_entry(url)]) if use_proxy else None
            trainer = Trainer(
                algorithm=make_algorithm(reloader),
                store=store,
                llm_proxy=proxy,
                adapter=LlmProxyTraceToTriplet(),
                n_workers=n_workers,
                worker_concurrency=worker_concurrency,
            )
            result: dict[str, Any] = trainer.fit(agent, train, val_dataset=val)
    finally:
        if not keep_data:
            purge_quietly(store)
    result["namespace"] = store.namespace
    return result


async def retain_run_data(store: RedisLightningStore) -> None:
    """Give the run's namespace RUN_RETENTION, unless it has a policy of its own (the contract keeps all)."""
    if await read_policy(store) is None:
        await write_policy(store, RUN_RETENTION)
        logger.info("namespace %s keeps its newest %d finished rollouts", store.namespace, RUN_RETENTION.keep_newest)


async def _closing(store: RedisLightningStore, work: Awaitable[None]) -> None:
    try:
        await work
    finally:
        await store.aclose()


def purge_quietly(store: RedisLightningStore) -> None:
    """Delete the run's namespace; a failure here is logged, never raised over the run's own outcome."""

    async def purge() -> None:
        try:
            await store.purge()
        finally:
            await store.aclose()

    try:
        asyncio.run(purge())
    except Exception as exc:
        logger.warning("could not purge namespace %s: %s", store.namespace, exc)


def checker_for(agent: str, checker: str | None) -> str | None:
    """The checker given, else the built-in task's when the agent is the built-in one (else none)."""
    if checker is None and agent == BUILTIN_AGENT:
        return BUILTIN_CHECKER
    return checker


def load_tasks(path: Path, option: str) -> list[Any]:
    """One JSON value per non-empty line; a bad line is an error naming the file and line."""
    tasks = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                tasks.append(json.loads(line))
            except ValueError as exc:
                raise click.BadParameter(f"line {number} of {path} is not JSON: {exc}", param_hint=option) from None
    if not tasks:
        raise click.BadParameter(f"{path} holds no tasks (one JSON value per line)", param_hint=option)
    return tasks


def setup_logging() -> None:
    """INFO logs for a training script, without a line per HTTP request."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `lq` configured the root at WARNING before `lq demo` runs: the algorithm's progress must show anyway.
    logging.getLogger("algorithms").setLevel(logging.INFO)
    for noisy in ("aiohttp.access", "httpx", "httpx2", "lightning_queue.llm_proxy"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
