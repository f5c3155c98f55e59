"""`@algo`: turn a plain (sync or async) function into an Algorithm, injecting by parameter name."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

from .base import Algorithm

INJECTABLE = ("store", "adapter", "llm_proxy", "initial_resources", "train_dataset", "val_dataset")


def _original(func: Callable[..., Any]) -> Callable[..., Any]:
    while hasattr(func, "__wrapped__"):
        func = func.__wrapped__
    return func


class FunctionalAlgorithm(Algorithm):
    """An Algorithm whose `run` calls a function with the wired objects it asks for by name."""

    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__()
        self._func = func
        self._needs_algorithm = bool(getattr(func, "_lq_needs_algorithm", False))
        injected_by_decorators = set(getattr(func, "_lq_injected", ()))
        params = inspect.signature(_original(func)).parameters
        self._takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        self._wanted = [n for n in params if n in INJECTABLE and n not in injected_by_decorators]
        self._async = inspect.iscoroutinefunction(func) or bool(getattr(func, "_lq_async", False))
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._func(*args, **kwargs)

    def is_async(self) -> bool:
        return self._async

    def _arguments(self, train_dataset: Any, val_dataset: Any) -> dict[str, Any]:
        for name, dataset in (("train_dataset", train_dataset), ("val_dataset", val_dataset)):
            if dataset is not None and name not in self._wanted and not self._takes_kwargs:
                raise TypeError(f"{self._func.__qualname__} does not accept {name}, but one was given")
        available: dict[str, Callable[[], Any]] = {
            "store": self.get_store,
            "adapter": self.get_adapter,
            "llm_proxy": self.get_llm_proxy,
            "initial_resources": self.get_initial_resources,
            "train_dataset": lambda: train_dataset,
            "val_dataset": lambda: val_dataset,
        }
        return {name: available[name]() for name in self._wanted}

    async def run(self, train_dataset: Any = None, val_dataset: Any = None) -> Any:
        kwargs = self._arguments(train_dataset, val_dataset)
        args = (self,) if self._needs_algorithm else ()
        if self._async:
            return await self._func(*args, **kwargs)
        # A sync algorithm may block for long; keep the event loop (and the proxy on it) serving.
        return await asyncio.to_thread(self._func, *args, **kwargs)


def algo(func: Callable[..., Any]) -> FunctionalAlgorithm:
    """Decorate a function `f(store=..., train_dataset=..., ...)` to use it as an Algorithm."""
    return FunctionalAlgorithm(func)
