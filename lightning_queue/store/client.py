"""`LightningStoreClient`: a `LightningStore` that talks Agent-Lightning v0.3's store HTTP protocol.

Point it at `lq store-server` (or at Agent-Lightning's own `agl store`) and it behaves like the store
behind it: unknown ids raise `ValueError` (`RolloutNotFound`/`AttemptNotFound` when the server names
them), bad values raise `ValueError`/`TypeError` with the server's message. A server that cannot reach
its Redis answers 503, raised here as `StoreUnavailable` (a `ConnectionError`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import aiohttp
from pydantic import TypeAdapter

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
from .base import LightningStore
from .errors import AttemptNotFound, NotFound, RolloutNotFound
from .otel import span_for_attempt
from .protocol import API_PREFIX, OTLP_TRACES_PATH, TOKEN_ENV

_NAMED_ERRORS: dict[str, type[Exception]] = {
    "RolloutNotFound": RolloutNotFound,
    "AttemptNotFound": AttemptNotFound,
    "NotFound": NotFound,
    "TypeError": TypeError,
}
_RESOURCES = TypeAdapter(NamedResources)
# A waits/rollouts call blocks on the server; its HTTP request gets this much beyond the wait.
_WAIT_SLACK_SECONDS = 10.0
# `timeout=None` waits in rounds this long (servers cap one wait, 60 s by default).
_WAIT_ROUND_SECONDS = 30.0


class StoreUnavailable(ConnectionError):
    """The server answered 503: its store (Redis) is unreachable right now; retrying later may work."""


class LightningStoreClient(LightningStore):
    """The store served at `url` (e.g. `http://127.0.0.1:4747`), over HTTP."""

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        request_timeout: float = 30.0,
        connect_retries: Sequence[float] = (0.1, 0.5, 1.0),
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"LightningStoreClient needs an http(s) URL, got {url!r}")
        if request_timeout <= 0:
            raise ValueError(f"request_timeout must be positive, got {request_timeout!r}")
        self.url = url.rstrip("/")
        self.token = token if token is not None else os.environ.get(TOKEN_ENV) or None
        self.request_timeout = request_timeout
        self.connect_retries = tuple(connect_retries)
        # aiohttp sessions belong to one event loop; a client used from several loops keeps one each.
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def __repr__(self) -> str:
        return f"LightningStoreClient({self.url!r})"

    def __getstate__(self) -> dict[str, Any]:
        # Sessions never cross processes: a child builds its own on first use.
        return {**self.__dict__, "_sessions": {}}

    @property
    def capabilities(self) -> dict[str, bool]:
        # zero_copy: any process can use this object and reach the same store.
        return {"thread_safe": True, "async_safe": True, "zero_copy": True, "otlp_traces": True}

    def otlp_traces_endpoint(self) -> str:
        """Where an OTLP/HTTP exporter sends this store's spans."""
        return self.url + OTLP_TRACES_PATH

    # --- transport -------------------------------------------------------------------------------
    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._sessions if lp.is_closed()]:
            del self._sessions[other]
        session = self._sessions.get(loop)
        if session is None or session.closed:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            session = aiohttp.ClientSession(headers=headers)
            self._sessions[loop] = session
        return session

    async def aclose(self) -> None:
        """Close the session of the running loop."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            await session.close()

    close = aclose

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = self.url + API_PREFIX + path
        limit = aiohttp.ClientTimeout(total=timeout or self.request_timeout)
        for delay in (*self.connect_retries, None):
            try:
                async with self._session().request(method, url, json=json, params=params, timeout=limit) as resp:
                    if resp.status >= 400:
                        raise await self._error(resp, method, path)
                    return await resp.json()
            except aiohttp.ClientConnectorError as exc:
                # Refused before the request was sent, so retrying cannot apply a write twice.
                if delay is None:
                    raise ConnectionError(f"store server {self.url} is unreachable: {exc}") from exc
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    @staticmethod
    async def _error(resp: aiohttp.ClientResponse, method: str, path: str) -> Exception:
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list):  # a 422: the fields that did not validate
            detail = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in detail)
        message = str(detail or (await resp.text())[:500] or resp.reason)
        error_type = body.get("error_type") if isinstance(body, dict) else None
        if resp.status == 503:
            return StoreUnavailable(message)
        if resp.status == 401:
            return PermissionError(f"{method.upper()} {path}: {message}")
        if resp.status >= 500:
            return RuntimeError(f"store server failed on {method.upper()} {path} ({resp.status}): {message}")
        return _NAMED_ERRORS.get(str(error_type), ValueError)(message)

    @staticmethod
    def _page(data: Any, model: type[Any]) -> PaginatedResult[Any]:
        return PaginatedResult(
            items=[model.model_validate(item) for item in data["items"]],
            limit=data["limit"],
            offset=data["offset"],
            total=data["total"],
        )

    @staticmethod
    def _rollout(data: Any) -> Rollout | AttemptedRollout:
        return AttemptedRollout.model_validate(data) if "attempt" in data else Rollout.model_validate(data)

    # --- rollouts --------------------------------------------------------------------------------
    async def statistics(self) -> dict[str, Any]:
        data: dict[str, Any] = await self._call("get", "/statistics")
        return data

    async def start_rollout(
        self,
        input: Any,
        mode: RolloutMode | None = None,
        resources_id: str | None = None,
        config: RolloutConfig | None = None,
        metadata: dict[str, Any] | None = None,
        worker_id: str | None = None,
    ) -> AttemptedRollout:
        body = {
            "input": input,
            "mode": mode,
            "resources_id": resources_id,
            "config": config.model_dump(mode="json") if config else None,
            "metadata": metadata,
            "worker_id": worker_id,
        }
        return AttemptedRollout.model_validate(await self._call("post", "/rollouts", json=body))

    async def enqueue_rollout(
        self,
        input: Any,
        mode: RolloutMode | None = None,
        resources_id: str | None = None,
        config: RolloutConfig | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Rollout:
        request = EnqueueRolloutRequest(
            input=input, mode=mode, resources_id=resources_id, config=config, metadata=metadata
        )
        return (await self.enqueue_many_rollouts([request]))[0]

    async def enqueue_many_rollouts(self, rollouts: Sequence[EnqueueRolloutRequest]) -> Sequence[Rollout]:
        if not rollouts:
            return []
        requests = [EnqueueRolloutRequest.model_validate(r).model_dump(mode="json") for r in rollouts]
        data = await self._call("post", "/queues/rollouts/enqueue", json={"rollouts": requests})
        return [Rollout.model_validate(item) for item in data]

    async def dequeue_rollout(self, worker_id: str | None = None) -> AttemptedRollout | None:
        claimed = await self.dequeue_many_rollouts(limit=1, worker_id=worker_id)
        return claimed[0] if claimed else None

    async def dequeue_many_rollouts(
        self, *, limit: int = 1, worker_id: str | None = None
    ) -> Sequence[AttemptedRollout]:
        data = await self._call("post", "/queues/rollouts/dequeue", json={"limit": limit, "worker_id": worker_id})
        return [AttemptedRollout.model_validate(item) for item in data]

    async def start_attempt(self, rollout_id: str, worker_id: str | None = None) -> AttemptedRollout:
        data = await self._call("post", f"/rollouts/{_segment(rollout_id)}/attempts", json={"worker_id": worker_id})
        return AttemptedRollout.model_validate(data)

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
        statuses = status_in if status_in is not None else status
        ids = rollout_id_in if rollout_id_in is not None else rollout_ids
        body = {
            "status_in": None if statuses is None else list(statuses),
            "rollout_id_in": None if ids is None else list(ids),
            "rollout_id_contains": rollout_id_contains,
            "filter_logic": filter_logic,
            "sort_by": sort_by,
            "sort_order": sort_order,
            "limit": limit,
            "offset": offset,
        }
        data = await self._call("post", "/rollouts/search", json=body)
        return PaginatedResult(
            items=[self._rollout(item) for item in data["items"]],
            limit=data["limit"],
            offset=data["offset"],
            total=data["total"],
        )

    async def get_rollout_by_id(self, rollout_id: str) -> Rollout | AttemptedRollout | None:
        data = await self._call("get", f"/rollouts/{_segment(rollout_id)}")
        return None if data is None else self._rollout(data)

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
        fields = {"input": input, "mode": mode, "resources_id": resources_id, "status": status, "metadata": metadata}
        body = {name: value for name, value in fields.items() if value is not UNSET}
        if config is not UNSET:
            body["config"] = RolloutConfig.model_validate(config).model_dump(mode="json")
        return Rollout.model_validate(await self._call("post", f"/rollouts/{_segment(rollout_id)}", json=body))

    async def wait_for_rollouts(self, *, rollout_ids: list[str], timeout: float | None = None) -> list[Rollout]:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout!r}")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            wait = _WAIT_ROUND_SECONDS if deadline is None else max(0.0, deadline - loop.time())
            data = await self._call(
                "post",
                "/waits/rollouts",
                json={"rollout_ids": list(rollout_ids), "timeout": wait},
                timeout=wait + _WAIT_SLACK_SECONDS,
            )
            done = [Rollout.model_validate(item) for item in data]
            if deadline is not None or len(done) >= len(set(rollout_ids)):
                return done

    # --- attempts --------------------------------------------------------------------------------
    async def query_attempts(
        self,
        rollout_id: str,
        *,
        sort_by: str | None = "sequence_id",
        sort_order: SortOrder = "asc",
        limit: int = -1,
        offset: int = 0,
    ) -> PaginatedResult[Attempt]:
        body = {"sort_by": sort_by, "sort_order": sort_order, "limit": limit, "offset": offset}
        data = await self._call("post", f"/rollouts/{_segment(rollout_id)}/attempts/search", json=body)
        return self._page(data, Attempt)

    async def get_latest_attempt(self, rollout_id: str) -> Attempt | None:
        data = await self._call("get", f"/rollouts/{_segment(rollout_id)}/attempts/latest")
        return None if data is None else Attempt.model_validate(data)

    async def update_attempt(
        self,
        rollout_id: str,
        attempt_id: str,
        status: AttemptStatus = UNSET,
        worker_id: str = UNSET,
        last_heartbeat_time: float = UNSET,
        metadata: dict[str, Any] = UNSET,
    ) -> Attempt:
        fields = {
            "status": status,
            "worker_id": worker_id,
            "last_heartbeat_time": last_heartbeat_time,
            "metadata": metadata,
        }
        body = {name: value for name, value in fields.items() if value is not UNSET}
        path = f"/rollouts/{_segment(rollout_id)}/attempts/{_segment(attempt_id)}"
        return Attempt.model_validate(await self._call("post", path, json=body))

    # --- resources -------------------------------------------------------------------------------
    async def add_resources(
        self, resources: NamedResources | str, named_resources: NamedResources | None = None
    ) -> ResourcesUpdate:
        if isinstance(resources, str):
            if named_resources is None:
                raise TypeError(f"add_resources({resources!r}, ...) needs the resources after the id")
            return await self.update_resources(resources, named_resources)
        if named_resources is not None:
            raise TypeError(
                "add_resources takes the resources once: add_resources(resources) or add_resources(id, resources)"
            )
        data = await self._call("post", "/resources", json=_resources_json(resources))
        return ResourcesUpdate.model_validate(data)

    async def update_resources(self, resources_id: str, resources: NamedResources) -> ResourcesUpdate:
        path = f"/resources/{_segment(resources_id)}"
        return ResourcesUpdate.model_validate(await self._call("post", path, json=_resources_json(resources)))

    async def get_resources_by_id(self, resources_id: str) -> ResourcesUpdate | None:
        data = await self._call("get", f"/resources/{_segment(resources_id)}")
        return None if data is None else ResourcesUpdate.model_validate(data)

    async def get_latest_resources(self) -> ResourcesUpdate | None:
        data = await self._call("get", "/resources/latest")
        return None if data is None else ResourcesUpdate.model_validate(data)

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
        params: dict[str, Any] = {"sort_order": sort_order, "limit": limit, "offset": offset}
        extra = {"resources_id": resources_id, "resources_id_contains": resources_id_contains, "sort_by": sort_by}
        params.update({name: value for name, value in extra.items() if value is not None})
        return self._page(await self._call("get", "/resources", params=params), ResourcesUpdate)

    # --- spans -----------------------------------------------------------------------------------
    async def add_span(self, span: Span) -> Span | None:
        if not isinstance(span, Span):
            raise TypeError(f"add_span expects a Span, got {type(span).__name__}")
        data = await self._call("post", "/spans", json=span.model_dump(mode="json"))
        return None if data is None else Span.model_validate(data)

    async def add_many_spans(self, spans: Sequence[Span]) -> Sequence[Span]:
        stored = [await self.add_span(span) for span in spans]
        return [span for span in stored if span is not None]

    async def add_otel_span(
        self, rollout_id: str, attempt_id: str, readable_span: Any, sequence_id: int | None = None
    ) -> Span | None:
        if sequence_id is None:
            sequence_id = await self.get_next_span_sequence_id(rollout_id, attempt_id)
        return await self.add_span(span_for_attempt(readable_span, rollout_id, attempt_id, sequence_id))

    async def get_next_span_sequence_id(self, rollout_id: str, attempt_id: str) -> int:
        data = await self._call("post", "/spans/next", json={"rollout_id": rollout_id, "attempt_id": attempt_id})
        return int(data["sequence_id"])

    async def get_many_span_sequence_ids(self, rollout_attempt_ids: Sequence[tuple[str, str]]) -> Sequence[int]:
        return [await self.get_next_span_sequence_id(r, a) for r, a in rollout_attempt_ids]

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
        body = {
            "rollout_id": rollout_id,
            "attempt_id": attempt_id,
            "trace_id": trace_id,
            "trace_id_contains": trace_id_contains,
            "span_id": span_id,
            "span_id_contains": span_id_contains,
            "parent_id": parent_id,
            "parent_id_contains": parent_id_contains,
            "name": name,
            "name_contains": name_contains,
            "filter_logic": filter_logic,
            "limit": limit,
            "offset": offset,
            "sort_by": sort_by,
            "sort_order": sort_order,
        }
        return self._page(await self._call("post", "/spans/search", json=body), Span)

    # --- workers ---------------------------------------------------------------------------------
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
        body = {
            "status_in": None if status_in is None else list(status_in),
            "worker_id_contains": worker_id_contains,
            "filter_logic": filter_logic,
            "sort_by": sort_by,
            "sort_order": sort_order,
            "limit": limit,
            "offset": offset,
        }
        return self._page(await self._call("post", "/workers/search", json=body), Worker)

    async def get_worker_by_id(self, worker_id: str) -> Worker | None:
        data = await self._call("get", f"/workers/{_segment(worker_id)}")
        return None if data is None else Worker.model_validate(data)

    async def update_worker(self, worker_id: str, heartbeat_stats: dict[str, Any] = UNSET) -> Worker:
        if heartbeat_stats is not UNSET and not isinstance(heartbeat_stats, dict):
            raise TypeError(f"heartbeat_stats must be a dict, got {heartbeat_stats!r:.100}")
        body = None if heartbeat_stats is UNSET else {"heartbeat_stats": heartbeat_stats}
        return Worker.model_validate(await self._call("post", f"/workers/{_segment(worker_id)}", json=body))


def _segment(value: str) -> str:
    """An id as one percent-encoded path segment; '/' or an empty id would address another route."""
    if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
        raise ValueError(f"{value!r} cannot be a store id (empty, '/', '.' and '..' are not allowed)")
    return quote(value, safe="")


def _resources_json(resources: NamedResources) -> Any:
    return _RESOURCES.dump_python(_RESOURCES.validate_python(resources), mode="json")
