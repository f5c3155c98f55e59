"""The algorithm API: getters, decorator injection and the proxy lifecycle, functional `@algo`."""

from __future__ import annotations

import itertools
from typing import Any
from unittest.mock import AsyncMock

import pytest

from lightning_queue import LLMProxy, RedisLightningStore
from lightning_queue.algorithm import Algorithm, algo, batch_iter_over_dataset, with_llm_proxy, with_store


class RecordingProxy:
    """A test double with the LLMProxy lifecycle surface: it records start/stop calls."""

    def __init__(self, running: bool = False) -> None:
        self.running = running
        self.calls: list[str] = []

    def is_running(self) -> bool:
        return self.running

    async def start(self) -> None:
        self.calls.append("start")
        self.running = True

    async def stop(self) -> None:
        self.calls.append("stop")
        self.running = False


class SeedShaped(Algorithm):
    def __init__(self) -> None:
        super().__init__()
        self.seen: dict[str, Any] = {}

    @with_llm_proxy(required=True, auto_start=True)
    @with_store
    async def run(self, store: Any, llm_proxy: Any, train_dataset: Any = None, val_dataset: Any = None) -> None:
        self.seen = {"store": store, "proxy": llm_proxy, "running": llm_proxy.is_running(), "train": train_dataset}


async def test_decorators_inject_store_then_proxy_in_signature_order(store: RedisLightningStore) -> None:
    algorithm, proxy = SeedShaped(), RecordingProxy()
    algorithm.set_store(store)
    algorithm.set_llm_proxy(proxy)  # type: ignore[arg-type]
    assert algorithm.is_async()
    await algorithm.run([1, 2])
    assert algorithm.seen == {"store": store, "proxy": proxy, "running": True, "train": [1, 2]}


async def test_proxy_started_by_decorator_is_stopped_afterwards(store: RedisLightningStore) -> None:
    algorithm, proxy = SeedShaped(), RecordingProxy(running=False)
    algorithm.set_store(store)
    algorithm.set_llm_proxy(proxy)  # type: ignore[arg-type]
    await algorithm.run()
    assert proxy.calls == ["start", "stop"] and not proxy.running


async def test_running_proxy_is_left_running(store: RedisLightningStore) -> None:
    algorithm, proxy = SeedShaped(), RecordingProxy(running=True)
    algorithm.set_store(store)
    algorithm.set_llm_proxy(proxy)  # type: ignore[arg-type]
    await algorithm.run()
    assert proxy.calls == [] and proxy.running


async def test_proxy_is_stopped_even_when_the_body_raises(store: RedisLightningStore) -> None:
    class Failing(Algorithm):
        @with_llm_proxy()
        async def run(self, llm_proxy: Any, train_dataset: Any = None, val_dataset: Any = None) -> None:
            raise RuntimeError("boom")

    algorithm, proxy = Failing(), RecordingProxy()
    algorithm.set_llm_proxy(proxy)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="boom"):
        await algorithm.run()
    assert proxy.calls == ["start", "stop"]


async def test_required_proxy_missing_raises_before_the_body_runs(store: RedisLightningStore) -> None:
    algorithm = SeedShaped()
    algorithm.set_store(store)
    with pytest.raises(ValueError, match="needs an LLM proxy"):
        await algorithm.run()
    assert algorithm.seen == {}


async def test_optional_proxy_missing_injects_none() -> None:
    class Optional_(Algorithm):
        got: Any = "unset"

        @with_llm_proxy(required=False)
        async def run(self, llm_proxy: Any, train_dataset: Any = None, val_dataset: Any = None) -> None:
            self.got = llm_proxy

    algorithm = Optional_()
    await algorithm.run()
    assert algorithm.got is None


def test_with_llm_proxy_refuses_a_sync_function() -> None:
    with pytest.raises(TypeError, match="async"):

        @with_llm_proxy()
        def run(self: Any, llm_proxy: Any) -> None:
            return None


def test_getters_explain_what_is_missing() -> None:
    algorithm = Algorithm()
    with pytest.raises(ValueError, match="no store"):
        algorithm.get_store()
    with pytest.raises(ValueError, match="no adapter"):
        algorithm.get_adapter()
    with pytest.raises(ValueError, match="no trainer"):
        algorithm.get_trainer()
    assert algorithm.get_llm_proxy() is None and algorithm.get_initial_resources() is None


def test_subclass_without_super_init_still_has_getters() -> None:
    class NoInit(Algorithm):
        def __init__(self) -> None:
            self.x = 1

    algorithm = NoInit()
    assert algorithm.get_llm_proxy() is None
    with pytest.raises(ValueError, match="no store"):
        algorithm.get_store()


async def test_functional_algo_with_store_receives_store_and_dataset(store: RedisLightningStore) -> None:
    @algo
    @with_store
    async def trainer(store: Any, train_dataset: Any = None) -> list[str]:
        rollouts = [await store.enqueue_rollout(x) for x in train_dataset]
        return [r.rollout_id for r in rollouts]

    trainer.set_store(store)
    ids = await trainer.run(train_dataset=["a", "b"])
    assert len(ids) == 2
    assert [r.input for r in await store.query_rollouts()] == ["a", "b"]


async def test_functional_algo_injects_by_parameter_name(store: RedisLightningStore) -> None:
    seen: dict[str, Any] = {}

    @algo
    def sync_trainer(val_dataset: Any, store: Any, initial_resources: Any) -> None:
        seen.update(val=val_dataset, store=store, res=initial_resources)

    sync_trainer.set_store(store)
    sync_trainer.set_initial_resources({})
    assert not sync_trainer.is_async()
    await sync_trainer.run(val_dataset=[3])
    assert seen == {"val": [3], "store": store, "res": {}}


async def test_functional_algo_rejects_a_dataset_it_does_not_accept() -> None:
    @algo
    async def no_val(train_dataset: Any) -> None:
        return None

    with pytest.raises(TypeError, match="does not accept val_dataset"):
        await no_val.run(train_dataset=[1], val_dataset=[2])


def test_functional_algo_stays_callable_as_the_function() -> None:
    @algo
    def double(train_dataset: Any) -> Any:
        return [x * 2 for x in train_dataset]

    assert double([1, 2]) == [2, 4]


def test_batch_iter_covers_the_dataset_each_pass_and_never_ends() -> None:
    data = list(range(10))
    batches = list(itertools.islice(batch_iter_over_dataset(data, 5, seed=1), 6))
    assert all(len(b) == 5 for b in batches)
    for first, second in zip(batches[::2], batches[1::2], strict=True):
        assert sorted(first + second) == data


def test_batch_iter_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        next(batch_iter_over_dataset([1], 0))
    with pytest.raises(ValueError, match="empty"):
        next(batch_iter_over_dataset([], 2))


async def test_functional_algo_with_both_decorators(store: RedisLightningStore) -> None:
    proxy = RecordingProxy()

    @algo
    @with_llm_proxy(required=True)
    @with_store
    async def trainer(store: Any, llm_proxy: Any, train_dataset: Any = None) -> tuple[Any, Any, Any]:
        return store, llm_proxy.is_running(), train_dataset

    trainer.set_store(store)
    trainer.set_llm_proxy(proxy)  # type: ignore[arg-type]
    assert await trainer.run(train_dataset=[7]) == (store, True, [7])
    assert proxy.calls == ["start", "stop"]


class OwnCalls(Algorithm):
    """Makes LLM calls of its own (no rollout) through the proxy, as PromptSearch's critiques do."""

    @with_llm_proxy(allow_unattributed=True)
    async def run(self, llm_proxy: Any, train_dataset: Any = None, val_dataset: Any = None) -> None:
        self.allowed = llm_proxy.allow_unattributed


async def test_a_body_with_calls_of_its_own_gets_a_proxy_that_serves_them() -> None:
    proxy = LLMProxy(model_list=[{"name": "m", "base_url": "http://127.0.0.1:9/v1"}], store=None)
    algorithm = OwnCalls()
    algorithm.set_llm_proxy(proxy)
    proxy.start = AsyncMock()  # type: ignore[method-assign]
    proxy.stop = AsyncMock()  # type: ignore[method-assign]

    await algorithm.run()

    assert algorithm.allowed is True and proxy.allow_unattributed is False  # restored once stopped


async def test_a_running_proxy_that_refuses_such_calls_is_reported() -> None:
    proxy = LLMProxy(model_list=[{"name": "m", "base_url": "http://127.0.0.1:9/v1"}])
    proxy.is_running = lambda: True  # type: ignore[method-assign]
    algorithm = OwnCalls()
    algorithm.set_llm_proxy(proxy)

    with pytest.raises(ValueError, match="allow_unattributed=True"):
        await algorithm.run()
