"""Rollouts, attempts, workers and their status literals (the v0.3 store data model)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Generic, Literal, Protocol, SupportsIndex, TypeVar, get_args, overload

from pydantic import BaseModel, ConfigDict, Field

from .resources import NamedResources

RolloutStatus = Literal["queuing", "preparing", "running", "requeuing", "succeeded", "failed", "cancelled"]
AttemptStatus = Literal["preparing", "running", "succeeded", "failed", "unresponsive", "timeout"]
RolloutMode = Literal["train", "val", "test"]
WorkerStatus = Literal["idle", "busy", "unknown"]
SortOrder = Literal["asc", "desc"]
FilterLogic = Literal["and", "or"]

ROLLOUT_STATUSES: tuple[str, ...] = get_args(RolloutStatus)
ATTEMPT_STATUSES: tuple[str, ...] = get_args(AttemptStatus)
WORKER_STATUSES: tuple[str, ...] = get_args(WorkerStatus)
ROLLOUT_MODES: tuple[str, ...] = get_args(RolloutMode)
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})
QUEUED_STATUSES: frozenset[str] = frozenset({"queuing", "requeuing"})
RUNNING_STATUSES: frozenset[str] = frozenset({"preparing", "running"})

# A rollout's input: anything msgpack can carry (the store refuses the rest, naming the type).
TaskInput = Any
T_co = TypeVar("T_co", covariant=True)


class Dataset(Protocol[T_co]):
    """What an algorithm iterates tasks from: indexable with a length (a list, a `torch` or HF dataset)."""

    def __getitem__(self, index: SupportsIndex, /) -> T_co: ...

    def __len__(self) -> int: ...


class _Unset:
    """Marks an argument the caller did not pass, as distinct from an explicit None."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
Unset = _Unset


def is_unset(value: object) -> bool:
    return value is UNSET


class RolloutConfig(BaseModel):
    """Per-rollout retry and liveness policy, read by the watchdog and the retry rule."""

    model_config = ConfigDict(extra="forbid")

    timeout_seconds: float | None = Field(default=None, ge=0)
    unresponsive_seconds: float | None = Field(default=None, ge=0)
    max_attempts: int = Field(default=1, ge=1)
    retry_condition: list[AttemptStatus] = Field(default_factory=list)


class Rollout(BaseModel):
    model_config = ConfigDict(extra="allow")

    rollout_id: str
    input: Any = None
    start_time: float
    end_time: float | None = None
    mode: RolloutMode | None = None
    resources_id: str | None = None
    status: RolloutStatus = "queuing"
    config: RolloutConfig = Field(default_factory=RolloutConfig)
    metadata: dict[str, Any] | None = None


class Attempt(BaseModel):
    model_config = ConfigDict(extra="allow")

    rollout_id: str
    attempt_id: str
    sequence_id: int
    start_time: float
    end_time: float | None = None
    status: AttemptStatus = "preparing"
    worker_id: str | None = None
    last_heartbeat_time: float | None = None
    metadata: dict[str, Any] | None = None
    # Issue 17: the namespace's policy version of the resources this attempt runs under (None: none yet).
    policy_version: int | None = None


class AttemptedRollout(Rollout):
    """A rollout together with its latest attempt."""

    attempt: Attempt


class EnqueueRolloutRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input: Any = None
    mode: RolloutMode | None = None
    resources_id: str | None = None
    config: RolloutConfig | None = None
    metadata: dict[str, Any] | None = None


class Worker(BaseModel):
    model_config = ConfigDict(extra="allow")

    worker_id: str
    status: WorkerStatus = "unknown"
    heartbeat_stats: dict[str, Any] | None = None
    last_heartbeat_time: float | None = None
    last_dequeue_time: float | None = None
    last_busy_time: float | None = None
    last_idle_time: float | None = None
    current_rollout_id: str | None = None
    current_attempt_id: str | None = None


class ResourcesUpdate(BaseModel):
    """One version of a named resources snapshot."""

    resources_id: str
    create_time: float
    update_time: float
    version: int
    resources: NamedResources
    # Issue 17: the namespace-wide counter this update raised (`version` stays per resources id).
    policy_version: int | None = None


T = TypeVar("T")


class PaginatedResult(BaseModel, Generic[T]):
    """A page of query results; behaves as a read-only sequence of its items."""

    items: list[T]
    limit: int
    offset: int
    total: int

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[T]:  # type: ignore[override]
        return iter(self.items)

    @overload
    def __getitem__(self, index: int) -> T: ...

    @overload
    def __getitem__(self, index: slice) -> list[T]: ...

    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self.items[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PaginatedResult):
            return super().__eq__(other)
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self.items) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]
