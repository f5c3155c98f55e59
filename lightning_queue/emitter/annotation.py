"""`emit_annotation`, and `operation`: a block or a function recorded as one `agentlightning.operation` span."""

from __future__ import annotations

import functools
import inspect
import json
import logging
from collections.abc import Callable
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, TypeVar, overload

from lightning_queue import semconv
from lightning_queue.tracer import get_active_tracer
from lightning_queue.types import SpanCoreFields

from .spans import emit_span, flatten_attributes

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., Any])


def emit_annotation(annotation: dict[str, Any], propagate: bool = True) -> SpanCoreFields:
    """Record an annotation span (tags, metadata, rewards) in the current rollout; nested dicts are flattened."""
    if not isinstance(annotation, dict):
        raise TypeError(f"an annotation is a dict of attributes, got {type(annotation).__name__}: {annotation!r:.80}")
    return emit_span("emit_annotation", semconv.SPAN_ANNOTATION, flatten_attributes(annotation), propagate=propagate)


def _encoded(value: Any) -> str:
    return json.dumps(value, default=repr, ensure_ascii=False)


class OperationContext:
    """One `agentlightning.operation` span around a block: `set_input(...)`, `set_output(...)` on it."""

    def __init__(self, name: str, attributes: dict[str, Any], propagate: bool = True) -> None:
        self.name = name
        self.attributes = {semconv.OPERATION_NAME: name, **flatten_attributes(attributes)}
        self.propagate = propagate
        self._manager: AbstractContextManager[Any] | None = None
        self._recorder: Any = None
        self._span: SpanCoreFields | None = None

    def __enter__(self) -> OperationContext:
        tracer = get_active_tracer() if self.propagate else None
        if tracer is None:
            if self.propagate:
                logger.warning("operation %r outside a traced rollout: not recorded", self.name)
            return self
        self._manager = tracer.operation_context(semconv.SPAN_OPERATION, attributes=self.attributes)
        self._recorder = self._manager.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._manager is not None:
            self._manager.__exit__(exc_type, exc, tb)
            self._span = self._recorder.get_recorded_span()
        self._manager = self._recorder = None

    def span(self) -> SpanCoreFields:
        """The recorded span, once the block has ended (a RuntimeError before, or when nothing was recorded)."""
        if self._span is None:
            raise RuntimeError(f"operation {self.name!r} has no recorded span (still running, or outside a rollout)")
        return self._span

    def set_input(self, *args: Any, **kwargs: Any) -> None:
        attrs = {f"{semconv.OPERATION_INPUT_PREFIX}{i}": _encoded(v) for i, v in enumerate(args)}
        attrs.update({f"{semconv.OPERATION_INPUT_PREFIX}{k}": _encoded(v) for k, v in kwargs.items()})
        if self._recorder is not None:
            self._recorder.record_attributes(attrs)

    def set_output(self, output: Any) -> None:
        if self._recorder is not None:
            self._recorder.record_attributes({semconv.OPERATION_OUTPUT_PREFIX.rstrip("."): _encoded(output)})


def _traced(fn: F, name: str, attributes: dict[str, Any], propagate: bool) -> F:
    signature = inspect.signature(fn)

    def record_input(ctx: OperationContext, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        bound = signature.bind_partial(*args, **kwargs)
        ctx.set_input(**bound.arguments)

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with OperationContext(name, attributes, propagate) as ctx:
                record_input(ctx, args, kwargs)
                result = await fn(*args, **kwargs)
                ctx.set_output(result)
                return result

        return run_async  # type: ignore[return-value]

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with OperationContext(name, attributes, propagate) as ctx:
            record_input(ctx, args, kwargs)
            result = fn(*args, **kwargs)
            ctx.set_output(result)
            return result

    return run  # type: ignore[return-value]


class Operation(OperationContext):
    """What `operation(...)` returns: a context manager, or a decorator when called on a function."""

    def __init__(self, name: str | None, attributes: dict[str, Any], propagate: bool) -> None:
        super().__init__(name or "operation", attributes, propagate)
        self._given_name = name
        self._given_attributes = attributes

    def __call__(self, func: F) -> F:
        return _traced(func, self._given_name or func.__name__, self._given_attributes, self.propagate)


@overload
def operation(fn: F, *, name: str | None = None, propagate: bool = True, **attributes: Any) -> F: ...
@overload
def operation(*, name: str | None = None, propagate: bool = True, **attributes: Any) -> Operation: ...
def operation(fn: Any = None, *, name: str | None = None, propagate: bool = True, **attributes: Any) -> Any:
    """`@operation` records each call (inputs, output) as a span; `with operation(...) as op:` a block.

    `@operation(name=...)` names the operation (default: the function's name); a context manager is
    named by `name` or "operation".
    """
    if fn is not None:
        return _traced(fn, name or fn.__name__, attributes, propagate)
    return Operation(name, attributes, propagate)
