"""Build a Trainer component from what the caller wrote: an instance, a class, a factory, an import string, a dict.

The forms are Agent-Lightning v0.3's (`Trainer(algorithm="agentlightning.Baseline")`,
`adapter={"type": ..., **kwargs}`): an import string names `package.module.Name` (or
`package.module:Name`), and a leading `agentlightning.` reads as `lightning_queue.`, so a
configuration written for Agent-Lightning resolves to the same names here.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

AL_PREFIX = "agentlightning."
OWN_PREFIX = "lightning_queue."

# Keyword -> value (or a zero-argument factory of it) passed to a constructor only when it accepts it.
OptionalDefaults = Mapping[str, Callable[[], Any]]


def own_path(path: str) -> str:
    """`path` with Agent-Lightning's package prefix replaced by this package's."""
    if path == "agentlightning" or path.startswith(AL_PREFIX):
        return OWN_PREFIX + path[len(AL_PREFIX) :] if path != "agentlightning" else "lightning_queue"
    return path


def load_symbol(path: str, spec_name: str) -> Any:
    """The object named by `package.module.Name` or `package.module:Name` (Agent-Lightning's prefix mapped)."""
    mapped = own_path(path.strip())
    module_name, sep, attr = mapped.partition(":")
    if not sep:
        module_name, _, attr = mapped.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{spec_name} {path!r} is not an import path like 'package.module.Name'")
    shown = path if mapped == path else f"{path!r} (read as {mapped!r})"
    try:
        obj: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"{spec_name} {shown}: cannot import {module_name!r}: {exc}") from exc
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ValueError(f"{spec_name} {shown}: {module_name!r} has no attribute {attr!r}") from None
    return obj


def instantiate(cls: type[Any], kwargs: Mapping[str, Any], optional_defaults: OptionalDefaults, spec_name: str) -> Any:
    """`cls(**kwargs)`, adding each optional default its constructor accepts and the caller did not give."""
    given = dict(kwargs)
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        parameters = {}  # type: ignore[assignment]
    for name, factory in optional_defaults.items():
        if name not in given and name in parameters:
            given[name] = factory()
    try:
        return cls(**given)
    except TypeError as exc:
        raise ValueError(f"{spec_name}: {cls.__qualname__}(**{sorted(given)}) failed: {exc}") from exc


def build_component(
    spec: Any,
    *,
    spec_name: str,
    expected: type[Any] | tuple[type[Any], ...] | None,
    default: Callable[[], Any] | None = None,
    optional_defaults: OptionalDefaults | None = None,
    dict_default: type[Any] | None = None,
    registry: Mapping[str, Any] | None = None,
) -> Any:
    """The component `spec` describes, checked to be an `expected` instance (None: any object).

    `spec` is an instance (returned as is), None (`default()`, or None without a default), a class
    (built), a zero-argument factory (called), an import string or registry key, or a dict whose
    `type` (or `name`, a registry key) says the class and whose other entries are its keywords; a
    dict without either is built as `dict_default`. `registry` maps short names (`"shm"`) to classes.
    """
    optional = optional_defaults or {}
    if expected is not None and isinstance(spec, expected):
        return spec
    if spec is None:
        return None if default is None else _checked(default(), expected, spec_name, "the default")
    if isinstance(spec, str):
        return _checked(
            _build_named(spec, {}, optional, spec_name, registry, expected), expected, spec_name, repr(spec)
        )
    if isinstance(spec, Mapping):
        kwargs = {str(k): v for k, v in spec.items()}
        name = kwargs.pop("type", None)
        if name is None and registry is not None and "name" in kwargs:
            name = kwargs.pop("name")
        if name is None:
            if dict_default is None:
                raise ValueError(f"{spec_name} dict {dict(spec)!r} needs a 'type' key naming the class")
            built = instantiate(dict_default, kwargs, optional, spec_name)
        elif isinstance(name, str):
            built = _build_named(name, kwargs, optional, spec_name, registry, expected)
        elif inspect.isclass(name):
            built = instantiate(name, kwargs, optional, spec_name)
        else:
            raise ValueError(f"{spec_name} dict 'type' must be a class or an import string, got {name!r}")
        return _checked(built, expected, spec_name, repr(dict(spec)))
    if inspect.isclass(spec):
        if expected is not None and not issubclass(spec, expected):
            raise ValueError(f"{spec_name} class {spec.__qualname__} is not a {_names(expected)}")
        return instantiate(spec, {}, optional, spec_name)
    if callable(spec) and expected is not None:
        return _checked(spec(), expected, spec_name, f"the factory {getattr(spec, '__qualname__', spec)!r}")
    if expected is None:
        return spec
    raise ValueError(
        f"{spec_name} {spec!r} is a {type(spec).__name__}; expected a {_names(expected)} instance or class, "
        "an import string, a {'type': ...} dict or None"
    )


def _build_named(
    name: str,
    kwargs: Mapping[str, Any],
    optional: OptionalDefaults,
    spec_name: str,
    registry: Mapping[str, Any] | None,
    expected: type[Any] | tuple[type[Any], ...] | None,
) -> Any:
    target = registry.get(name, registry.get(own_path(name))) if registry is not None else None
    obj = target if target is not None else load_symbol(name, spec_name)
    if inspect.isclass(obj):
        return instantiate(obj, kwargs, optional, spec_name)
    if kwargs:
        raise ValueError(f"{spec_name} {name!r} names a {type(obj).__name__}, not a class: it takes no keywords")
    if (expected is not None and isinstance(obj, expected)) or not callable(obj):
        return obj
    return obj()  # a factory


def _checked(obj: Any, expected: type[Any] | tuple[type[Any], ...] | None, spec_name: str, source: str) -> Any:
    if expected is not None and not isinstance(obj, expected):
        raise ValueError(f"{spec_name} {source} gave a {type(obj).__name__}, not a {_names(expected)}")
    return obj


def _names(expected: type[Any] | tuple[type[Any], ...]) -> str:
    kinds = expected if isinstance(expected, tuple) else (expected,)
    return " or ".join(k.__name__ for k in kinds)
