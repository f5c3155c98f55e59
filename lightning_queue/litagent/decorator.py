"""Functions as agents: `FunctionalLitAgent` and the `@rollout`, `@llm_rollout`, `@prompt_rollout` decorators."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from lightning_queue.types import LLM, AttemptedRollout, NamedResources, PromptTemplate, ProxyLLM

from .litagent import LitAgent, RolloutRawResult

# Parameters a functional agent may name; the worker supplies each by name.
INJECTABLE = ("llm", "prompt_template", "rollout", "resources")


class FunctionalLitAgent(LitAgent[Any]):
    """A function turned into an agent; it stays callable as the original function.

    The function's first parameter receives the task; the others are supplied by name: `llm` (the
    first LLM resource, a `ProxyLLM` turned into the attempt's own URL when `strip_proxy`),
    `prompt_template` (the first PromptTemplate), `rollout` (the AttemptedRollout) and `resources`
    (all of them). Parameters with defaults that are not among those are left alone.
    """

    def __init__(self, func: Callable[..., Any], *, strip_proxy: bool = True) -> None:
        super().__init__()
        self.func = func
        self.strip_proxy = strip_proxy
        self._is_async = inspect.iscoroutinefunction(func)
        self.wants = _injected_parameters(func)
        functools.update_wrapper(self, func)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<FunctionalLitAgent {_name(self.func)}>"

    def is_async(self) -> bool:
        return self._is_async

    def rollout(self, task: Any, resources: NamedResources, rollout: AttemptedRollout) -> RolloutRawResult:
        if self._is_async:
            raise RuntimeError(f"agent {_name(self.func)} is async; call rollout_async instead")
        result: RolloutRawResult = self.func(task, **self._arguments(resources, rollout))
        return result

    async def rollout_async(self, task: Any, resources: NamedResources, rollout: AttemptedRollout) -> RolloutRawResult:
        if not self._is_async:
            raise RuntimeError(f"agent {_name(self.func)} is not async; call rollout instead")
        result: RolloutRawResult = await self.func(task, **self._arguments(resources, rollout))
        return result

    def _arguments(self, resources: NamedResources, rollout: AttemptedRollout) -> dict[str, Any]:
        kwargs: dict[str, Any] = {}
        if "llm" in self.wants:
            llm = _first(resources, LLM, "an LLM", _name(self.func))
            if isinstance(llm, ProxyLLM) and self.strip_proxy:
                llm = llm.with_attempted_rollout(rollout)
            kwargs["llm"] = llm
        if "prompt_template" in self.wants:
            kwargs["prompt_template"] = _first(resources, PromptTemplate, "a PromptTemplate", _name(self.func))
        if "rollout" in self.wants:
            kwargs["rollout"] = rollout
        if "resources" in self.wants:
            kwargs["resources"] = resources
        return kwargs


R = TypeVar("R")


def _first(resources: NamedResources, kind: type[R], what: str, agent: str) -> R:
    for resource in resources.values():
        if isinstance(resource, kind):
            return resource
    names = ", ".join(f"{k} ({v.resource_type})" for k, v in resources.items()) or "none"
    raise ValueError(f"agent {agent} needs {what} resource, but the rollout's resources have none (found: {names})")


def _name(func: Callable[..., Any]) -> str:
    return f"{getattr(func, '__module__', '?')}.{getattr(func, '__qualname__', repr(func))}"


def _injected_parameters(func: Callable[..., Any]) -> frozenset[str]:
    """The injectable names `func` takes; a TypeError for any parameter the worker cannot supply."""
    if not callable(func):
        raise TypeError(f"an agent function must be callable, got {type(func).__name__}: {func!r:.100}")
    params = [
        p
        for p in inspect.signature(func).parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if not params or params[0].name != "task":
        found = params[0].name if params else "no parameters"
        raise TypeError(f"agent function {_name(func)} must take `task` as its first parameter, found {found!r}")
    wants = set()
    for p in params[1:]:
        if p.name in INJECTABLE:
            wants.add(p.name)
        elif p.default is inspect.Parameter.empty:
            raise TypeError(
                f"agent function {_name(func)} has parameter {p.name!r} the worker cannot supply; "
                f"name parameters after `task` from {', '.join(INJECTABLE)} or give it a default"
            )
    return frozenset(wants)


def _decorator(
    func: Callable[..., Any] | None, strip_proxy: bool, required: str | None, name: str
) -> FunctionalLitAgent | Callable[[Callable[..., Any]], FunctionalLitAgent]:
    def wrap(f: Callable[..., Any]) -> FunctionalLitAgent:
        agent = FunctionalLitAgent(f, strip_proxy=strip_proxy)
        if required is not None and required not in agent.wants:
            raise TypeError(f"@{name} needs a parameter named {required!r} in {_name(f)}")
        return agent

    return wrap if func is None else wrap(func)


@overload
def rollout(func: Callable[..., Any], *, strip_proxy: bool = True) -> FunctionalLitAgent: ...
@overload
def rollout(*, strip_proxy: bool = True) -> Callable[[Callable[..., Any]], FunctionalLitAgent]: ...
def rollout(
    func: Callable[..., Any] | None = None, *, strip_proxy: bool = True
) -> FunctionalLitAgent | Callable[[Callable[..., Any]], FunctionalLitAgent]:
    """Make an agent of `func(task, [llm], [prompt_template], [rollout], [resources])`, sync or async."""
    return _decorator(func, strip_proxy, None, "rollout")


@overload
def llm_rollout(func: Callable[..., Any], *, strip_proxy: bool = True) -> FunctionalLitAgent: ...
@overload
def llm_rollout(*, strip_proxy: bool = True) -> Callable[[Callable[..., Any]], FunctionalLitAgent]: ...
def llm_rollout(
    func: Callable[..., Any] | None = None, *, strip_proxy: bool = True
) -> FunctionalLitAgent | Callable[[Callable[..., Any]], FunctionalLitAgent]:
    """Like `@rollout`, for `func(task, llm[, rollout])`: the `llm` parameter is required."""
    return _decorator(func, strip_proxy, "llm", "llm_rollout")


@overload
def prompt_rollout(func: Callable[..., Any]) -> FunctionalLitAgent: ...
@overload
def prompt_rollout() -> Callable[[Callable[..., Any]], FunctionalLitAgent]: ...
def prompt_rollout(
    func: Callable[..., Any] | None = None,
) -> FunctionalLitAgent | Callable[[Callable[..., Any]], FunctionalLitAgent]:
    """Like `@rollout`, for `func(task, prompt_template[, rollout])`: `prompt_template` is required."""
    return _decorator(func, True, "prompt_template", "prompt_rollout")
