"""`Algorithm`: the training strategy a Trainer runs against the store."""

from __future__ import annotations

import inspect
import weakref
from typing import TYPE_CHECKING, Any

from ..store.base import LightningStore
from ..types import NamedResources

if TYPE_CHECKING:
    from ..adapter import TraceAdapter
    from ..llm_proxy import LLMProxy


def _deref(ref: weakref.ReferenceType[Any] | None) -> Any:
    return None if ref is None else ref()


class Algorithm:
    """Subclass it and implement `async run(train_dataset=None, val_dataset=None)`.

    The Trainer wires it in this order before calling `run`: trainer, store, adapter, initial
    resources, LLM proxy. Decorate `run` with `@with_store` / `@with_llm_proxy(...)` to receive them
    as arguments instead of calling the getters.
    """

    def __init__(self) -> None:
        self._trainer_ref: weakref.ReferenceType[Any] | None = None
        self._llm_proxy_ref: weakref.ReferenceType[Any] | None = None
        self._adapter_ref: weakref.ReferenceType[Any] | None = None
        self._store: LightningStore | None = None
        self._initial_resources: NamedResources | None = None

    # Subclasses often forget super().__init__(); the getters must still work.
    def __getattr__(self, name: str) -> Any:
        if name in ("_trainer_ref", "_llm_proxy_ref", "_adapter_ref", "_store", "_initial_resources"):
            return None
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def set_trainer(self, trainer: Any) -> None:
        self._trainer_ref = weakref.ref(trainer)

    def get_trainer(self) -> Any:
        trainer = _deref(self._trainer_ref)
        if trainer is None:
            raise ValueError(f"{type(self).__name__} has no trainer: run it through Trainer.fit or call set_trainer")
        return trainer

    def set_store(self, store: LightningStore) -> None:
        self._store = store

    def get_store(self) -> LightningStore:
        if self._store is None:
            raise ValueError(f"{type(self).__name__} has no store: run it through Trainer.fit or call set_store")
        return self._store

    def set_llm_proxy(self, llm_proxy: LLMProxy | None) -> None:
        self._llm_proxy_ref = None if llm_proxy is None else weakref.ref(llm_proxy)

    def get_llm_proxy(self) -> LLMProxy | None:
        return _deref(self._llm_proxy_ref)  # type: ignore[no-any-return]

    def set_adapter(self, adapter: TraceAdapter[Any]) -> None:
        self._adapter_ref = weakref.ref(adapter)

    def get_adapter(self) -> TraceAdapter[Any]:
        adapter = _deref(self._adapter_ref)
        if adapter is None:
            raise ValueError(f"{type(self).__name__} has no adapter: pass adapter= to the Trainer or call set_adapter")
        return adapter  # type: ignore[no-any-return]

    def set_initial_resources(self, resources: NamedResources) -> None:
        self._initial_resources = resources

    def get_initial_resources(self) -> NamedResources | None:
        return self._initial_resources

    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.run) or getattr(self.run, "_lq_async", False)

    async def run(self, train_dataset: Any = None, val_dataset: Any = None) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement async run(train_dataset, val_dataset)")
