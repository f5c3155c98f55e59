"""Request bodies of Agent-Lightning v0.3's store HTTP protocol, shared by `lq store-server` and its client.

The routes live under `/v1/agl`; responses are the store's own models (`Rollout`, `PaginatedResult`, ...)
as JSON. Field names, defaults and optionality follow v0.3's wire format, so its unmodified client and
ours can talk to the same server.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..types import (
    AttemptStatus,
    EnqueueRolloutRequest,
    FilterLogic,
    RolloutConfig,
    RolloutMode,
    RolloutStatus,
    SortOrder,
    WorkerStatus,
)

API_PREFIX = "/v1/agl"
OTLP_TRACES_PATH = "/v1/traces"
PROMETHEUS_PATH = "/v1/prometheus"
# The bearer token a server requires and our client sends, when neither is given one explicitly.
TOKEN_ENV = "LQ_STORE_SERVER_TOKEN"


class _Body(BaseModel):
    # v0.3's server ignores unknown fields; doing the same keeps newer clients working.
    model_config = ConfigDict(extra="ignore")


class StartRolloutBody(_Body):
    input: Any
    mode: RolloutMode | None = None
    resources_id: str | None = None
    config: RolloutConfig | None = None
    metadata: dict[str, Any] | None = None
    worker_id: str | None = None


class EnqueueBody(_Body):
    rollouts: list[EnqueueRolloutRequest]


class DequeueBody(_Body):
    limit: int = 1
    worker_id: str | None = None


class WorkerIdBody(_Body):
    worker_id: str | None = None


class _Page(_Body):
    limit: int = -1
    offset: int = 0
    sort_by: str | None = None
    sort_order: SortOrder = "asc"


class RolloutQuery(_Page):
    status_in: list[RolloutStatus] | None = None
    rollout_id_in: list[str] | None = None
    rollout_id_contains: str | None = None
    filter_logic: FilterLogic = "and"


class AttemptQuery(_Page):
    sort_by: str | None = "sequence_id"


class ResourcesQuery(_Page):
    resources_id: str | None = None
    resources_id_contains: str | None = None


class SpanQuery(_Page):
    rollout_id: str
    attempt_id: str | None = None
    trace_id: str | None = None
    trace_id_contains: str | None = None
    span_id: str | None = None
    span_id_contains: str | None = None
    parent_id: str | None = None
    parent_id_contains: str | None = None
    name: str | None = None
    name_contains: str | None = None
    filter_logic: FilterLogic = "and"
    sort_by: str | None = "sequence_id"


class WorkerQuery(_Page):
    status_in: list[WorkerStatus] | None = None
    worker_id_contains: str | None = None
    filter_logic: FilterLogic = "and"


class UpdateRolloutBody(_Body):
    input: Any = None
    mode: RolloutMode | None = None
    resources_id: str | None = None
    status: RolloutStatus | None = None
    config: RolloutConfig | None = None
    metadata: dict[str, Any] | None = None


class UpdateAttemptBody(_Body):
    status: AttemptStatus | None = None
    worker_id: str | None = None
    last_heartbeat_time: float | None = None
    metadata: dict[str, Any] | None = None


class UpdateWorkerBody(_Body):
    heartbeat_stats: dict[str, Any] | None = None


class NextSequenceIdBody(_Body):
    rollout_id: str
    attempt_id: str


class WaitBody(_Body):
    rollout_ids: list[str]
    timeout: float | None = Field(default=None, ge=0)
