"""msgpack on the wire, and turning Redis hash replies back into models."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
from pydantic import ValidationError

from ..types import Attempt, AttemptedRollout, ResourcesUpdate, Rollout, RolloutConfig, Span, Worker


def _reject(obj: Any) -> Any:
    raise TypeError(f"value of type {type(obj).__name__} is not msgpack-serialisable: {obj!r:.200}")


def pack(value: Any) -> bytes:
    """Encode with msgpack; anything msgpack cannot represent is a TypeError naming it."""
    try:
        return msgpack.packb(value, use_bin_type=True, default=_reject, strict_types=False)  # type: ignore[no-any-return]
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"value is not msgpack-serialisable: {exc}") from exc


def unpack(raw: bytes, *, key: str) -> Any:
    """Decode a stored record; a corrupt one is a ValueError naming its key, not a crash."""
    try:
        return msgpack.unpackb(raw, raw=False, strict_map_key=False)
    except Exception as exc:
        raise ValueError(f"corrupt msgpack record in Redis key {key!r}: {exc}") from exc


R = TypeVar("R")


def names_key(build: Callable[..., R]) -> Callable[..., R]:
    """A record that decodes but has the wrong shape is a ValueError naming its key, like a corrupt one."""

    @functools.wraps(build)
    def wrapper(*args: Any, key: str, **kwargs: Any) -> R:
        try:
            return build(*args, key=key, **kwargs)
        except (ValidationError, KeyError, TypeError, AttributeError) as exc:
            first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ValueError(f"malformed record in Redis key {key!r}: {first_line}") from exc

    return wrapper


def pairs(flat: list[Any]) -> dict[str, Any]:
    """A flat HGETALL reply from a script as a dict with str keys."""
    return {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}


def text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def _float(fields: dict[str, Any], name: str) -> float | None:
    value = fields.get(name)
    return None if value is None else float(value)


@names_key
def attempt_from_fields(fields: dict[str, Any], *, key: str) -> Attempt:
    metadata = fields.get("metadata")
    return Attempt(
        rollout_id=text(fields, "rollout_id") or "",
        attempt_id=text(fields, "attempt_id") or "",
        sequence_id=int(fields["sequence_id"]),
        start_time=float(fields["start_time"]),
        end_time=_float(fields, "end_time"),
        status=text(fields, "status"),
        worker_id=text(fields, "worker_id"),
        last_heartbeat_time=_float(fields, "last_heartbeat_time"),
        metadata=None if metadata is None else unpack(metadata, key=key),
    )


@names_key
def rollout_from_fields(
    fields: dict[str, Any], attempt_fields: dict[str, Any] | None, *, key: str
) -> Rollout | AttemptedRollout:
    metadata = fields.get("metadata")
    data: dict[str, Any] = {
        "rollout_id": text(fields, "rollout_id"),
        "input": unpack(fields["input"], key=key),
        "start_time": float(fields["start_time"]),
        "end_time": _float(fields, "end_time"),
        "mode": text(fields, "mode"),
        "resources_id": text(fields, "resources_id"),
        "status": text(fields, "status"),
        "config": RolloutConfig.model_validate(unpack(fields["config"], key=key)),
        "metadata": None if metadata is None else unpack(metadata, key=key),
    }
    if attempt_fields:
        return AttemptedRollout(**data, attempt=attempt_from_fields(attempt_fields, key=key))
    return Rollout(**data)


@names_key
def worker_from_fields(fields: dict[str, Any], *, key: str) -> Worker:
    stats = fields.get("heartbeat_stats")
    return Worker(
        worker_id=text(fields, "worker_id") or "",
        status=text(fields, "status") or "unknown",
        heartbeat_stats=None if stats is None else unpack(stats, key=key),
        last_heartbeat_time=_float(fields, "last_heartbeat_time"),
        last_dequeue_time=_float(fields, "last_dequeue_time"),
        last_busy_time=_float(fields, "last_busy_time"),
        last_idle_time=_float(fields, "last_idle_time"),
        current_rollout_id=text(fields, "current_rollout_id"),
        current_attempt_id=text(fields, "current_attempt_id"),
    )


@names_key
def resources_from_fields(fields: dict[str, Any], *, key: str) -> ResourcesUpdate:
    return ResourcesUpdate(
        resources_id=text(fields, "resources_id") or "",
        create_time=float(fields["create_time"]),
        update_time=float(fields["update_time"]),
        version=int(fields["version"]),
        resources=unpack(fields["resources"], key=key),
    )


@names_key
def span_from_blob(blob: bytes, *, key: str) -> Span:
    return Span.model_validate(unpack(blob, key=key))
