"""msgpack on the wire, and turning Redis hash replies back into models."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import msgpack
from pydantic import ValidationError

from ..types import Attempt, AttemptedRollout, ResourcesUpdate, Rollout, RolloutConfig, Span, Worker


class CorruptRecord(ValueError):
    """A stored record that cannot be read back; its message names the Redis key."""

    def __init__(self, key: str, reason: str, *, kind: str = "malformed") -> None:
        super().__init__(f"{kind} record in Redis key {key!r}: {reason}")
        self.key = key
        self.reason = reason


def _reject(obj: Any) -> Any:
    raise TypeError(f"value of type {type(obj).__name__} is not msgpack-serialisable: {obj!r:.200}")


def pack(value: Any) -> bytes:
    """Encode with msgpack; anything msgpack cannot represent, or not decode again, is a TypeError naming it."""
    try:
        blob: bytes = msgpack.packb(value, use_bin_type=True, default=_reject, strict_types=False)
    except (OverflowError, ValueError) as exc:
        raise TypeError(f"value is not msgpack-serialisable: {exc}") from exc
    # Some values pack but do not unpack (a tuple-keyed dict: its array key is unhashable); stored, such a
    # record would fail every read of it, so it is refused here, before anything is written.
    try:
        _decode(blob)
    except Exception as exc:
        raise TypeError(f"value does not read back from msgpack ({exc}): {value!r:.200}") from None
    return blob


def _decode(raw: bytes) -> Any:
    return msgpack.unpackb(raw, raw=False, strict_map_key=False)


def unpack(raw: bytes, *, key: str) -> Any:
    """Decode a stored record; a corrupt one is a CorruptRecord naming its key, not a crash."""
    try:
        return _decode(raw)
    except Exception as exc:
        raise CorruptRecord(key, str(exc) or type(exc).__name__, kind="corrupt msgpack") from exc


R = TypeVar("R")


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "value"
        return f"{exc.title}: {where}: {first['msg']}"
    if isinstance(exc, KeyError):
        return f"field {exc.args[0]!r} is missing"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def names_key(build: Callable[..., R]) -> Callable[..., R]:
    """A record that decodes but has the wrong shape (a field missing, of the wrong type, not UTF-8) is a
    CorruptRecord naming its key, like a corrupt one."""

    @functools.wraps(build)
    def wrapper(*args: Any, key: str, **kwargs: Any) -> R:
        try:
            return build(*args, key=key, **kwargs)
        except CorruptRecord:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptRecord(key, _reason(exc)) from exc

    return wrapper


def pairs(flat: list[Any]) -> dict[str, Any]:
    """A flat HGETALL reply from a script as a dict with str keys."""
    return {flat[i].decode(errors="replace"): flat[i + 1] for i in range(0, len(flat), 2)}


def hash_fields(reply: Any, *, key: str) -> dict[str, Any]:
    """An HGETALL reply of a pipeline run with raise_on_error=False; an error reply (WRONGTYPE: the key
    is not a hash) is a CorruptRecord naming the key."""
    if isinstance(reply, Exception):
        raise CorruptRecord(key, str(reply).splitlines()[0])
    return {k.decode(errors="replace"): v for k, v in reply.items()}


def decoded(value: Any) -> str:
    """A script's string reply (bytes from redis-py) as str."""
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    return None if value is None else value.decode() if isinstance(value, bytes) else str(value)


def _float(fields: dict[str, Any], name: str) -> float | None:
    value = fields.get(name)
    return None if value is None else float(value)


def _int(fields: dict[str, Any], name: str) -> int | None:
    value = fields.get(name)
    return None if value is None else int(value)


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
        policy_version=_int(fields, "policy_version"),
    )


@names_key
def rollout_from_fields(fields: dict[str, Any], attempt: Attempt | None, *, key: str) -> Rollout | AttemptedRollout:
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
    if attempt is not None:
        return AttemptedRollout(**data, attempt=attempt)
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
        policy_version=_int(fields, "policy_version"),
    )


@names_key
def span_from_blob(blob: bytes, *, key: str) -> Span:
    return Span.model_validate(unpack(blob, key=key))


def reads_back(what: str, build: Callable[[], Any]) -> None:
    """Run the reader on a record about to be written: whatever is stored must read back."""
    try:
        build()
    except CorruptRecord as exc:
        raise TypeError(f"{what} does not read back: {exc.reason}") from None


def attempt_metadata(attempt_id: str, metadata: dict[str, Any] | None) -> bytes:
    """The packed metadata of an attempt, once it is known to read back."""
    blob = pack(metadata)
    if metadata is not None:
        probe = {"rollout_id": b"r", "attempt_id": b"a", "sequence_id": b"1", "start_time": b"0", "status": b"running"}
        probe["metadata"] = blob
        reads_back(f"metadata of attempt {attempt_id}", lambda: attempt_from_fields(probe, key=""))
    return blob
