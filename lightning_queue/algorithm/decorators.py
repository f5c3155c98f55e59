"""`with_store` and `with_llm_proxy`: inject what an algorithm's `run` needs as arguments.

Each decorator passes its object as the first positional argument after `self`; stacked, the outer
decorator's object comes after the inner one's, which is the order the seed examples write:

    @with_llm_proxy(required=True)
    @with_store
    async def run(self, store, llm_proxy, train_dataset=None, val_dataset=None): ...
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

logger = logging.getLogger(__name__)


def _mark(wrapper: Any, func: Any, injected: str) -> None:
    wrapper._lq_needs_algorithm = True
    wrapper._lq_injected = (*getattr(func, "_lq_injected", ()), injected)
    wrapper._lq_async = inspect.iscoroutinefunction(func) or getattr(func, "_lq_async", False)


def _is_async(func: Any) -> bool:
    return inspect.iscoroutinefunction(func) or bool(getattr(func, "_lq_async", False))


def _call_target(func: Any) -> Any:
    """How to call `func` given the algorithm: methods and inner wrappers get it, plain functions don't.

    `@algo @with_store async def f(store, train_dataset)` has no `self`, yet its wrapper receives the
    FunctionalAlgorithm (to read the store from) like a method's would.
    """
    if getattr(func, "_lq_needs_algorithm", False):
        return func
    params = list(inspect.signature(func).parameters)
    if params and params[0] == "self":
        return func
    return lambda _algorithm, *args, **kwargs: func(*args, **kwargs)


def with_store(func: Callable[..., Any]) -> Callable[..., Any]:
    """Call `func(self, store, ...)` with `self.get_store()`."""
    target = _call_target(func)
    if _is_async(func):

        @functools.wraps(func)
        async def async_wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            return await target(self, self.get_store(), *args, **kwargs)

        _mark(async_wrapper, func, "store")
        return async_wrapper

    @functools.wraps(func)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        return target(self, self.get_store(), *args, **kwargs)

    _mark(wrapper, func, "store")
    return wrapper


def with_llm_proxy(
    required: bool = False, auto_start: bool = True, allow_unattributed: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Call `func(self, llm_proxy, ...)` with `self.get_llm_proxy()`.

    `required=True` raises ValueError before the body runs when no proxy is set. With `auto_start`,
    a stopped proxy is started for the call and stopped afterwards; a proxy that was already running
    is left running. `allow_unattributed=True` says the body makes LLM calls of its own (of no
    rollout, so unrecorded) through the proxy: a proxy started here serves them, and one already
    running without `allow_unattributed` is refused with ValueError (it would answer them 404).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        if not _is_async(func):
            raise TypeError(
                f"@with_llm_proxy needs an async function (starting the proxy is async), got {func.__qualname__}"
            )
        target = _call_target(func)

        @functools.wraps(func)
        async def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            proxy = self.get_llm_proxy()
            if proxy is None:
                if required:
                    raise ValueError(
                        f"{func.__qualname__} needs an LLM proxy but none is set: pass llm_proxy= to the Trainer "
                        "or call set_llm_proxy()"
                    )
                return await target(self, None, *args, **kwargs)
            started_here = False
            allowed_before = bool(getattr(proxy, "allow_unattributed", False))
            if allow_unattributed and proxy.is_running() and not allowed_before:
                raise ValueError(
                    f"{func.__qualname__} makes unrecorded calls of its own through the LLM proxy, which is running "
                    "without allow_unattributed: start it with LLMProxy(..., allow_unattributed=True), or leave it "
                    "stopped so that it is started here"
                )
            if auto_start and not proxy.is_running():
                if allow_unattributed:
                    proxy.allow_unattributed = True
                await proxy.start()
                started_here = True
            try:
                return await target(self, proxy, *args, **kwargs)
            finally:
                if started_here:
                    await _stop_quietly(proxy.stop(), func.__qualname__)
                    if allow_unattributed:
                        proxy.allow_unattributed = allowed_before

        _mark(wrapper, func, "llm_proxy")
        return wrapper

    return decorate


async def _stop_quietly(stopping: Awaitable[Any], where: str) -> None:
    try:
        await stopping
    except Exception:
        # The body's own result or exception matters more than a failed cleanup; log it loudly.
        logger.exception("stopping the LLM proxy started for %s failed", where)
