"""`LightningStore`: the Agent-Lightning v0.3 store contract, as an abstract async interface."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..types import (
    UNSET,
    Attempt,
    AttemptedRollout,
    AttemptStatus,
    EnqueueRolloutRequest,
    FilterLogic,
    NamedResources,
    PaginatedResult,
    ResourcesUpdate,
    Rollout,
    RolloutConfig,
    RolloutMode,
    RolloutStatus,
    SortOrder,
    Span,
    Worker,
    WorkerStatus,
)
from . import pause
from .errors import NotSupported
from .staleness import StalenessBound, StalePolicy


class LightningStore:
    """The data bus between an algorithm and its workers.

    Every method is a coroutine. Unknown ids raise `ValueError` where a write needs the record and
    give `None` (or an empty result) where a read merely finds nothing, exactly as the v0.3 contract.
    """

    @property
    def capabilities(self) -> dict[str, bool]:
        """What callers may rely on: `thread_safe`, `async_safe`, `zero_copy`, `otlp_traces`."""
        return {"thread_safe": False, "async_safe": False, "zero_copy": False, "otlp_traces": False}

    async def aclose(self) -> None:
        """Release the connections of the running event loop; the store can be used again afterwards.

        A store holding no connections has nothing to release: this default returns at once.
        """

    async def close(self) -> None:
        """Agent-Lightning's name for `aclose()` (its clients' `await store.close()`)."""
        await self.aclose()

    async def statistics(self) -> dict[str, Any]:
        """Counts of stored records, the store's class `name` and its `uptime` in seconds."""
        raise NotImplementedError

    # --- rollouts -------------------------------------------------------------------------------
    async def start_rollout(
        self,
        input: Any,
        mode: RolloutMode | None = None,
        resources_id: str | None = None,
        config: RolloutConfig | None = None,
        metadata: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> AttemptedRollout:
        """Create a rollout that skips the queue: it starts `preparing` with attempt 1."""
        raise NotImplementedError

    async def enqueue_rollout(
        self,
        input: Any,
        mode: RolloutMode | None = None,
        resources_id: str | None = None,
        config: RolloutConfig | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Rollout:
        """Create a `queuing` rollout at the tail of the queue; it pins the latest resources if none given."""
        raise NotImplementedError

    async def enqueue_many_rollouts(self, rollouts: Sequence[EnqueueRolloutRequest]) -> Sequence[Rollout]:
        """Enqueue several rollouts at once; the result keeps the request order."""
        raise NotImplementedError

    async def dequeue_rollout(self, worker_id: str | None = None) -> AttemptedRollout | None:
        """Claim the oldest eligible rollout with a new attempt, or None at once when there is none."""
        raise NotImplementedError

    async def dequeue_many_rollouts(
        self, *, limit: int = 1, worker_id: str | None = None
    ) -> Sequence[AttemptedRollout]:
        """Claim up to `limit` rollouts in FIFO order; `[]` when the queue is empty."""
        raise NotImplementedError

    async def start_attempt(self, rollout_id: str, worker_id: str | None = None) -> AttemptedRollout:
        """Add a new attempt to a rollout and put it back to `preparing`, ignoring `max_attempts`."""
        raise NotImplementedError

    async def query_rollouts(
        self,
        *,
        status_in: Sequence[RolloutStatus] | None = None,
        rollout_id_in: Sequence[str] | None = None,
        rollout_id_contains: str | None = None,
        filter_logic: FilterLogic = "and",
        sort_by: str | None = None,
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
        status: Sequence[RolloutStatus] | None = None,
        rollout_ids: Sequence[str] | None = None,
    ) -> PaginatedResult[Rollout | AttemptedRollout]:
        """Filter, sort and page rollouts; `status`/`rollout_ids` are the legacy names of the `_in` filters."""
        raise NotImplementedError

    async def get_rollout_by_id(self, rollout_id: str) -> Rollout | AttemptedRollout | None:
        """The rollout with its latest attempt attached, or None if it does not exist."""
        raise NotImplementedError

    async def update_rollout(
        self,
        rollout_id: str,
        input: Any = UNSET,
        mode: RolloutMode | None = UNSET,
        resources_id: str | None = UNSET,
        status: RolloutStatus = UNSET,
        config: RolloutConfig = UNSET,
        metadata: dict[str, Any] | None = UNSET,
    ) -> Rollout:
        """Set the given fields; any status is accepted, a terminal one stamps `end_time`."""
        raise NotImplementedError

    async def wait_for_rollouts(self, *, rollout_ids: list[str], timeout: float | None = None) -> list[Rollout]:
        """Wait until the rollouts are terminal or `timeout` passes; return those that are terminal."""
        raise NotImplementedError

    # --- attempts -------------------------------------------------------------------------------
    async def query_attempts(
        self,
        rollout_id: str,
        *,
        sort_by: str | None = "sequence_id",
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
    ) -> PaginatedResult[Attempt]:
        """All attempts of a rollout, by default oldest first."""
        raise NotImplementedError

    async def get_latest_attempt(self, rollout_id: str) -> Attempt | None:
        """The attempt with the highest sequence id, or None."""
        raise NotImplementedError

    async def update_attempt(
        self,
        rollout_id: str,
        attempt_id: str,
        status: AttemptStatus = UNSET,
        worker_id: str = UNSET,
        last_heartbeat_time: float = UNSET,
        metadata: dict[str, Any] = UNSET,
    ) -> Attempt:
        """Set attempt fields (`attempt_id="latest"` picks the newest); the latest attempt drives its rollout."""
        raise NotImplementedError

    # --- resources ------------------------------------------------------------------------------
    async def add_resources(
        self, resources: NamedResources | str, named_resources: NamedResources | None = None
    ) -> ResourcesUpdate:
        """Store a new snapshot under a fresh `rs-` id at version 1; it becomes the latest.

        `add_resources("default", {...})` (an id first, as the seed guide writes it) is an upsert of
        that id, like `update_resources`.
        """
        raise NotImplementedError

    async def update_resources(self, resources_id: str, resources: NamedResources) -> ResourcesUpdate:
        """Upsert a snapshot: version 1 if new, else version + 1 with the same `create_time`."""
        raise NotImplementedError

    async def get_resources_by_id(self, resources_id: str) -> ResourcesUpdate | None:
        raise NotImplementedError

    async def get_latest_resources(self) -> ResourcesUpdate | None:
        raise NotImplementedError

    async def query_resources(
        self,
        *,
        resources_id: str | None = None,
        resources_id_contains: str | None = None,
        sort_by: str | None = None,
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
    ) -> PaginatedResult[ResourcesUpdate]:
        raise NotImplementedError

    # --- policy versions and the claims pause (issue 17; not in the v0.3 contract) ----------------
    # Only stores on the namespace's Redis have them; others raise NotSupported (a NotImplementedError
    # naming the store class), so an algorithm that needs a weight-sync barrier fails at once, not silently.
    async def policy_version(self) -> int:
        """The namespace's policy version: how many resources updates it has had (0 = none yet)."""
        raise NotSupported(self, "policy_version()")

    async def pause_claims(self, ttl: float = 60.0, *, holder: str | None = None) -> str:
        """Stop workers claiming rollouts for `ttl` seconds unless renewed; returns the holder token."""
        raise NotSupported(self, "pause_claims()")

    async def renew_pause(self, holder: str, ttl: float = 60.0) -> bool:
        """Extend `holder`'s pause to `ttl` seconds from now; False if it no longer holds it."""
        raise NotSupported(self, "renew_pause()")

    async def resume_claims(self, holder: str | None = None) -> bool:
        """End `holder`'s pause (None: whoever holds it); False if there was no such pause."""
        raise NotSupported(self, "resume_claims()")

    async def claims_paused(self) -> bool:
        raise NotSupported(self, "claims_paused()")

    def claims_pause(self, ttl: float = 60.0, *, holder: str | None = None) -> AbstractAsyncContextManager[str]:
        """`async with store.claims_pause(ttl): ...` pauses for the block (renewed in the background)."""
        return pause.hold(self, ttl, holder=holder)

    async def set_staleness(
        self,
        max_staleness: int | None,
        batch_size: int | None = None,
        *,
        modes: Iterable[str | None] = ("train",),
        stale_policy: StalePolicy = "repin",
    ) -> StalenessBound | None:
        """Bound staleness at claim time (the count rule is in store/staleness.py); None removes the bound."""
        raise NotSupported(self, "set_staleness()")

    async def get_staleness(self) -> StalenessBound | None:
        raise NotSupported(self, "get_staleness()")

    # --- spans ----------------------------------------------------------------------------------
    async def add_span(self, span: Span) -> Span | None:
        """Store a span (a heartbeat of its attempt); returns the same object, or None for a duplicate."""
        raise NotImplementedError

    async def add_many_spans(self, spans: Sequence[Span]) -> Sequence[Span]:
        """Store spans of any rollouts in one go; duplicates are skipped and left out of the result."""
        raise NotImplementedError

    async def add_otel_span(
        self, rollout_id: str, attempt_id: str, readable_span: Any, sequence_id: int | None = None
    ) -> Span | None:
        """Store an OpenTelemetry span (or a `Span`/`SpanCoreFields`), taking the next sequence id if none given."""
        raise NotImplementedError

    async def get_next_span_sequence_id(self, rollout_id: str, attempt_id: str) -> int:
        """Reserve the next value of the rollout's span counter (shared by all its attempts)."""
        raise NotImplementedError

    async def get_many_span_sequence_ids(self, rollout_attempt_ids: Sequence[tuple[str, str]]) -> Sequence[int]:
        """Reserve one sequence id per pair, in request order."""
        raise NotImplementedError

    async def query_spans(
        self,
        rollout_id: str,
        attempt_id: str | None = None,
        *,
        trace_id: str | None = None,
        trace_id_contains: str | None = None,
        span_id: str | None = None,
        span_id_contains: str | None = None,
        parent_id: str | None = None,
        parent_id_contains: str | None = None,
        name: str | None = None,
        name_contains: str | None = None,
        filter_logic: FilterLogic = "and",
        limit: int = -1,
        offset: int = 0,
        sort_by: str | None = "sequence_id",
        sort_order: SortOrder = "asc",
    ) -> PaginatedResult[Span]:
        """Spans of a rollout (one attempt, `"latest"`, or all when None); unknown ids give an empty page."""
        raise NotImplementedError

    # --- workers --------------------------------------------------------------------------------
    async def query_workers(
        self,
        *,
        status_in: Sequence[WorkerStatus] | None = None,
        worker_id_contains: str | None = None,
        filter_logic: FilterLogic = "and",
        sort_by: str | None = None,
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
    ) -> PaginatedResult[Worker]:
        raise NotImplementedError

    async def get_worker_by_id(self, worker_id: str) -> Worker | None:
        raise NotImplementedError

    async def update_worker(self, worker_id: str, heartbeat_stats: dict[str, Any] = UNSET) -> Worker:
        """Record a worker heartbeat (creating the worker as `unknown`); stats replace the old ones."""
        raise NotImplementedError
