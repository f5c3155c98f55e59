"""How every `emit_*` records its span: into the active tracer's trace, or just returned outside one."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from lightning_queue.tracer import get_active_tracer
from lightning_queue.types import SpanCoreFields, TraceStatus

logger = logging.getLogger(__name__)

_SCALARS = (str, bool, int, float)


def flatten_attributes(attributes: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys; values must be what OpenTelemetry stores (a TypeError naming the key)."""
    flat: dict[str, Any] = {}
    for key, value in attributes.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_attributes(value, f"{name}."))
        elif isinstance(value, _SCALARS):
            flat[name] = value
        elif isinstance(value, list | tuple) and all(isinstance(v, _SCALARS) for v in value):
            flat[name] = list(value)
        else:
            raise TypeError(
                f"span attribute {name!r} is a {type(value).__name__} ({value!r:.80}): OpenTelemetry stores "
                "str, bool, int, float or lists of them; encode it (json.dumps) or use emit_object"
            )
    return flat


def emit_span(what: str, name: str, attributes: dict[str, Any], *, propagate: bool) -> SpanCoreFields:
    """Record a zero-length span named `name` in the current rollout (when `propagate`) and return it.

    Outside a traced rollout the span is returned, and logged as stored nowhere: an agent run by hand
    can still hand it back, and a script does not crash (Agent-Lightning raises RuntimeError there).
    """
    status = TraceStatus(status_code="OK")
    if propagate:
        tracer = get_active_tracer()
        if tracer is not None:
            return tracer.create_span(name, attributes=attributes, status=status)
        logger.warning(
            "%s outside a traced rollout: its span is returned but stored nowhere "
            "(emit inside a rollout run by a worker, or return the span from the agent)",
            what,
        )
    now = time.time()
    return SpanCoreFields(name=name, attributes=attributes, status=status, start_time=now, end_time=now)
