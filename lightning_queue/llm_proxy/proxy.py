"""LLMProxy: records every LLM call an agent makes through it as a span of that agent's attempt."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from ..store.base import LightningStore
from ..types import LLM, ProxyLLM
from .config import ModelTable, UpstreamModel, normalize_model_list
from .hosting import LoopHost, ServerRunner, ThreadHost
from .limits import ServerLimits
from .metrics import ProxyMetrics
from .settings import ProxySettings, default
from .state import ProxyState, ProxyStats
from .upstream import UpstreamClient

logger = logging.getLogger(__name__)

LaunchMode = Literal["thread", "asyncio"]
# Agent-Lightning's LiteLLM callbacks this proxy always does itself: token ids on every call, and spans.
BUILT_IN_CALLBACKS = ("return_token_ids", "opentelemetry")
# ...and its FastAPI middlewares this proxy does itself: /rollout/<id>/attempt/<id> routing, streaming.
BUILT_IN_MIDDLEWARES = ("rollout_attempt", "stream_conversion")


def _check_litellm_keywords(
    num_retries: int,
    callbacks: Iterable[Any] | None,
    litellm_config: Mapping[str, Any] | None,
    num_workers: int,
    middlewares: Iterable[Any] | None,
    launcher_args: Any,
) -> None:
    """Agent-Lightning's proxy is LiteLLM; this one is not. Say what each of its knobs means here."""
    if isinstance(num_retries, bool) or not isinstance(num_retries, int) or num_retries < 0:
        raise ValueError(f"num_retries must be an integer >= 0, got {num_retries!r}")
    if num_retries:
        logger.warning(
            "LLMProxy(num_retries=%d): this proxy does not retry upstream calls; the OpenAI client "
            "retries failed calls itself (its max_retries=)",
            num_retries,
        )
    for callback in callbacks or ():
        if callback not in BUILT_IN_CALLBACKS:
            raise ValueError(
                f"LLMProxy(callbacks=...): {callback!r} is a LiteLLM callback and this proxy is not LiteLLM; "
                f"it always records token ids and spans ({', '.join(BUILT_IN_CALLBACKS)}): drop callbacks="
            )
    if litellm_config:
        raise ValueError(
            f"LLMProxy(litellm_config=...) has no meaning here (got keys {sorted(litellm_config)}): "
            "give upstreams as model_list entries (see docs/llm-proxy.md)"
        )
    if num_workers != 1:
        raise ValueError(
            f"LLMProxy(num_workers={num_workers!r}): this proxy is one asyncio server; run several "
            "`lq proxy` processes behind a load balancer to scale it"
        )
    for middleware in middlewares or ():
        if middleware not in BUILT_IN_MIDDLEWARES:
            raise ValueError(
                f"LLMProxy(middlewares=...): {middleware!r} is a FastAPI middleware and this proxy is aiohttp; "
                f"it always routes by rollout/attempt and converts streams ({', '.join(BUILT_IN_MIDDLEWARES)})"
            )
    if launcher_args is not None:
        raise ValueError("LLMProxy(launcher_args=...): give host=, port= and launch_mode= instead")


ModelList = Iterable[UpstreamModel | Mapping[str, Any]]
_ANY_ADDRESS = ("0.0.0.0", "", "::")


def _outbound_ip() -> str:
    """The address other machines reach this one at: what the host name resolves to."""
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


class LLMProxy:
    """An OpenAI-compatible proxy in front of one or more upstream models.

    Agents call `http://host:port/rollout/<rid>/attempt/<aid>/v1/chat/completions` (the URL that
    `as_resource(rid, aid)` hands out); every such call is forwarded to the upstream of its model and
    stored as one span of that attempt with one store-issued sequence id.

    Args:
        port: port to bind; None picks a free one at the first start and keeps it across restarts.
        host: bind address; loopback unless told otherwise (use "0.0.0.0" to serve other machines).
        model_list: `UpstreamModel`s, or mappings in our shape (`name`, `base_url`, `model`, `api_key`,
            `extra_body`, `timeout`) or Agent-Lightning's (`model_name`, `litellm_params`).
        store: where spans go; required by `start()`.
        auth_token: when set, every request except `GET /health` needs `Authorization: Bearer <token>`.
        launch_mode: "thread" serves from a thread with its own loop (keeps answering while the
            caller's loop is busy); "asyncio" serves in the caller's loop.
        max_body_bytes: larger request bodies get 413 (so do bodies over the store's span limit).
        max_upstream_connections: open connections to all upstreams together.
        limits: timeouts and caps of client connections (`ServerLimits`; defaults when None).
        allow_unattributed: serve calls without the rollout/attempt prefix (unrecorded); by default
            they get 404 with the URL to use.
        pause_retry_after: while the namespace's claims are paused for a weight sync, new calls get 503
            with `Retry-After` of this many seconds (see docs/llm-proxy.md, "weight-sync barrier").
        pause_poll: seconds between the proxy's reads of the claims pause and the policy version.
    """

    def __init__(
        self,
        port: int | None = None,
        model_list: ModelList | None = None,
        store: LightningStore | None = None,
        host: str | None = default("host"),
        *,
        auth_token: str | None = None,
        launch_mode: LaunchMode | Literal["mp"] = "thread",
        max_body_bytes: int = default("max_body_bytes"),
        max_upstream_connections: int = 1024,
        limits: ServerLimits | None = None,
        allow_unattributed: bool = False,
        pause_retry_after: float = default("pause_retry_after"),
        pause_poll: float = default("pause_poll"),
        num_retries: int = 0,
        callbacks: Iterable[Any] | None = None,
        litellm_config: Mapping[str, Any] | None = None,
        num_workers: int = 1,
        middlewares: Iterable[Any] | None = None,
        launcher_args: Any = None,
    ) -> None:
        # Agent-Lightning v0.3's positional order (port, model_list, store, host) and keywords, so ported
        # code runs; LiteLLM-only knobs are refused or explained, never silently dropped.
        _check_litellm_keywords(num_retries, callbacks, litellm_config, num_workers, middlewares, launcher_args)
        if launch_mode == "mp":
            # v0.3's default: a server process. A thread serves the same endpoint without pickling the store.
            launch_mode = "thread"
        if launch_mode not in ("thread", "asyncio"):
            raise ValueError(f"launch_mode must be 'thread', 'asyncio' or 'mp', got {launch_mode!r}")
        if port is not None and not 0 <= port < 65536:
            raise ValueError(f"port must be in 0..65535 (0 or None = a free port), got {port!r}")
        self.port = port or None
        self.host = host or default("host")
        self.model_list = normalize_model_list(model_list)
        self.store = store
        self.auth_token = auth_token or None
        self.launch_mode: LaunchMode = launch_mode
        self.max_body_bytes = max_body_bytes
        self.max_upstream_connections = max_upstream_connections
        self.limits = limits or ServerLimits()
        self.allow_unattributed = allow_unattributed
        # The bounds are ProxySettings' (`lq proxy` checks the same values the same way).
        checked = ProxySettings(pause_retry_after=pause_retry_after, pause_poll=pause_poll)
        self.pause_retry_after = checked.pause_retry_after
        self.pause_poll = checked.pause_poll
        self.stats = ProxyStats()
        # Kept across restarts, as the stats are: counters must not go back to 0 while the proxy lives.
        self.metrics = ProxyMetrics()
        self._host: LoopHost | ThreadHost | None = None
        self._state: ProxyState | None = None

    def __repr__(self) -> str:
        names = sorted({m.name for m in self.model_list})
        return f"LLMProxy(host={self.host!r}, port={self.port!r}, models={names!r}, running={self.is_running()})"

    # --- configuration ---------------------------------------------------------------------------
    def get_store(self) -> LightningStore | None:
        return self.store

    def set_store(self, store: LightningStore) -> None:
        """Takes effect at the next start or restart."""
        self.store = store

    def update_model_list(self, model_list: ModelList) -> None:
        """Replaces the model list in memory; `restart()` applies it to a running proxy."""
        self.model_list = normalize_model_list(model_list)

    # --- lifecycle -------------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self._host is not None and self._host.running

    async def start(self) -> None:
        if self.is_running():
            raise RuntimeError(f"{self!r} is already running; use restart() to apply new settings")
        if self.store is None:
            raise ValueError("LLMProxy needs a store to record spans: LLMProxy(store=...) or set_store()")
        if not self.model_list:
            logger.warning("LLMProxy starts without models: every call will get 404 until update_model_list()")
        state = ProxyState(
            ModelTable(self.model_list),
            self.store,
            UpstreamClient(self.max_upstream_connections),
            self.stats,
            auth_token=self.auth_token,
            max_body_bytes=self.max_body_bytes,
            limits=self.limits,
            allow_unattributed=self.allow_unattributed,
            metrics=self.metrics,
            pause_retry_after=self.pause_retry_after,
            pause_poll=self.pause_poll,
        )
        self._state = state
        runner = ServerRunner(state, self.host, self.port or 0)
        host: LoopHost | ThreadHost
        if self.launch_mode == "thread":
            host = ThreadHost(runner, on_loop_exit=getattr(self.store, "aclose", None))
        else:
            host = LoopHost(runner)
        self.port = await host.start()
        self._host = host
        logger.info("LLM proxy serving %s on %s", sorted({m.name for m in self.model_list}), self.endpoint)

    async def stop(self) -> None:
        if not self.is_running() or self._host is None:
            logger.warning("LLMProxy.stop(): the proxy is not running")
            return
        host, self._host = self._host, None
        await host.stop()

    async def restart(self) -> None:
        """Stop if running, then start on the same port with the current model list and store."""
        if self.is_running():
            await self.stop()
        await self.start()

    # --- the weight-sync barrier -----------------------------------------------------------------------
    async def drain(self, timeout: float | None = 60.0) -> float:
        """Wait until this proxy has no call in flight; returns the seconds waited.

        Needs the namespace's claims paused (`async with store.claims_pause(ttl): await proxy.drain(t)`):
        the proxy reads the pause afresh, so from then on it answers new calls with 503 + Retry-After and
        only calls admitted before can be in flight. Raises DrainTimeout (a TimeoutError) naming how many
        calls were left after `timeout` seconds; those calls keep running.
        """
        if self._host is None or self._state is None or not self.is_running():
            raise RuntimeError(f"{self!r} is not running: there is nothing to drain")
        return await self._host.run(self._state.barrier.drain(timeout))

    def in_flight(self) -> int:
        """Calls admitted and not finished yet (what drain() waits for)."""
        return self._state.barrier.in_flight.count if self._state is not None and self.is_running() else 0

    def policy_version(self) -> int | None:
        """The namespace's policy version as this proxy last read it (None before a read, or without one)."""
        return self._state.barrier.view.policy_version if self._state is not None and self.is_running() else None

    async def __aenter__(self) -> LLMProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.is_running():
            await self.stop()

    # --- addresses -------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """`http://host:port` (no /v1), reachable from elsewhere when bound to all interfaces."""
        if self.port is None:
            raise RuntimeError("the proxy has no port yet: start() it first, or construct it with port=...")
        host = _outbound_ip() if self.host in _ANY_ADDRESS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def access_endpoint(self) -> str:
        """Agent-Lightning's name for `endpoint`."""
        return self.endpoint

    def _default_model(self, model: str | None) -> str:
        if model is not None:
            return model
        names = sorted({m.name for m in self.model_list})
        if len(names) != 1:
            raise ValueError(f"as_resource() needs model=... when the proxy serves {len(names)} models: {names}")
        return names[0]

    def as_resource(
        self,
        rollout_id: str | None = None,
        attempt_id: str | None = None,
        model: str | None = None,
        sampling_parameters: dict[str, Any] | None = None,
    ) -> LLM:
        """A `ProxyLLM` for a resources snapshot (no ids), or the `LLM` of one attempt (both ids).

        The api_key is the proxy's own auth token (or None); upstream keys never leave the proxy.
        """
        if (rollout_id is None) != (attempt_id is None):
            raise ValueError("as_resource() needs both rollout_id and attempt_id, or neither")
        fields: dict[str, Any] = {
            "model": self._default_model(model),
            "sampling_parameters": dict(sampling_parameters or {}),
            "api_key": self.auth_token,
        }
        if rollout_id is None or attempt_id is None:
            return ProxyLLM(endpoint=self.endpoint, **fields)
        return LLM(endpoint=f"{self.endpoint}/rollout/{rollout_id}/attempt/{attempt_id}", **fields)
