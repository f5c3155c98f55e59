"""Resolve `package.module:attribute` to an agent, a hook or a tracer, with errors that say what to fix."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any, TypeVar

from lightning_queue.litagent import Hook, LitAgent
from lightning_queue.tracer import OtelTracer

T = TypeVar("T")


class AgentLoadError(ValueError):
    """`--agent` / `--hook` does not name something the worker can run."""


def load_object(spec: str, what: str = "--agent") -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise AgentLoadError(f"{what} {spec!r} is not of the form 'package.module:attribute'")
    # Like `python -m`, look in the current directory first, so `--agent my_agent:agent` just works.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AgentLoadError(
                f"{what} {spec!r}: no module named {exc.name!r} "
                f"(searched the current directory {os.getcwd()!r} and PYTHONPATH)"
            ) from exc
        raise AgentLoadError(f"{what} {spec!r}: importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise AgentLoadError(f"{what} {spec!r}: importing {module_name!r} raised {type(exc).__name__}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise AgentLoadError(f"{what} {spec!r}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def load_agent(spec: str) -> LitAgent[Any]:
    """The agent named by `spec`: a LitAgent instance, or a LitAgent subclass built without arguments."""
    obj = load_object(spec, "--agent")
    if isinstance(obj, LitAgent):
        return obj
    if inspect.isclass(obj) and issubclass(obj, LitAgent):
        try:
            instance: LitAgent[Any] = obj()
        except TypeError as exc:
            raise AgentLoadError(
                f"--agent {spec!r}: the class {obj.__name__} cannot be built without arguments ({exc}); "
                "point --agent at an instance instead"
            ) from exc
        return instance
    if callable(obj):
        raise AgentLoadError(
            f"--agent {spec!r} is the {type(obj).__name__} {getattr(obj, '__qualname__', obj)!r}, not an agent: "
            "decorate it with @workers.rollout (or subclass workers.LitAgent)"
        )
    raise AgentLoadError(
        f"--agent {spec!r} is a {type(obj).__name__}, not an agent: "
        "name a function decorated with @workers.rollout or a workers.LitAgent"
    )


def _instance(spec: str, option: str, cls: type[T]) -> T:
    """The object `spec` names: an instance of `cls`, or a subclass of it built without arguments."""
    obj = load_object(spec, option)
    if isinstance(obj, cls):
        return obj
    if inspect.isclass(obj) and issubclass(obj, cls):
        try:
            instance: T = obj()
        except TypeError as exc:
            raise AgentLoadError(f"{option} {spec!r}: {obj.__name__}() needs arguments ({exc})") from exc
        return instance
    raise AgentLoadError(f"{option} {spec!r} is a {type(obj).__name__}, not a {cls.__module__}.{cls.__name__}")


def load_hook(spec: str) -> Hook:
    """The hook named by `spec`: a Hook instance, or a Hook subclass built without arguments."""
    return _instance(spec, "--hook", Hook)


def load_tracer(spec: str) -> OtelTracer:
    """The tracer named by `spec`: an `OtelTracer` (or `AgentOpsTracer`) instance, or such a class."""
    return _instance(spec, "--tracer", OtelTracer)
