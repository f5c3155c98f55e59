"""Agent-Lightning's execution strategies (`"shm"`, `"cs"`), read as what a lightning-queue Trainer does.

In Agent-Lightning the strategy decides where the algorithm and the runners live: `shm` runs the
runners as threads of one process around an in-memory store, `cs` runs the store behind an HTTP
server and the runners in child processes. Here Redis is always the store's server and the runners
are always worker processes; both strategies therefore map to the same thing, local worker
processes forked from the Trainer's process (so an agent defined in `__main__` or built inline
reaches them, as it does in `shm`). What each keyword becomes is listed on the classes; the ones
with no counterpart are accepted, kept on the object, and named in `ignored`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any, Literal

logger = logging.getLogger(__name__)

Role = Literal["algorithm", "runner", "both"]


class ExecutionStrategy:
    """Where the algorithm and the runners run; see the module docstring for the mapping."""

    alias: str = ""
    n_runners: int = 1
    role: Role = "both"

    def __init__(self) -> None:
        # WorkerSettings field -> value, set from the strategy's timeouts the caller gave.
        self.worker_overrides: dict[str, float] = {}
        # Keywords accepted for compatibility that change nothing here.
        self.ignored: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_runners={self.n_runners!r}, role={self.role!r})"


def _check_runners(n_runners: Any) -> int:
    if not isinstance(n_runners, int) or isinstance(n_runners, bool) or n_runners < 0:
        raise ValueError(f"n_runners must be a whole number >= 0, got {n_runners!r}")
    return n_runners


def _check_seconds(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


class SharedMemoryExecutionStrategy(ExecutionStrategy):
    """`"shm"`: Agent-Lightning's runner threads in one process; here, `n_runners` forked worker processes.

    `graceful_delay` becomes the workers' `grace_seconds`, `join_timeout` the Trainer's `stop_timeout`.
    `main_thread`, `poll_interval` and `managed_store` change nothing (the algorithm always runs in
    the caller; the store is Redis).
    """

    alias = "shm"

    def __init__(
        self,
        n_runners: int = 1,
        main_thread: Literal["algorithm", "runner"] = "runner",
        join_timeout: float | None = None,
        graceful_delay: float | None = None,
        poll_interval: float = 0.05,
        managed_store: bool | None = None,
    ) -> None:
        super().__init__()
        if main_thread not in ("algorithm", "runner"):
            raise ValueError(f"main_thread must be 'algorithm' or 'runner', got {main_thread!r}")
        self.n_runners = _check_runners(n_runners)
        self.main_thread = main_thread
        self.poll_interval = poll_interval
        self.managed_store = managed_store
        self.join_timeout = join_timeout
        self.graceful_delay = graceful_delay
        if graceful_delay is not None:
            self.worker_overrides["grace_seconds"] = _check_seconds("graceful_delay", graceful_delay)
        if join_timeout is not None:
            self.worker_overrides["stop_timeout"] = _check_seconds("join_timeout", join_timeout)
        self.ignored = {"main_thread": main_thread, "poll_interval": poll_interval, "managed_store": managed_store}


class ClientServerExecutionStrategy(ExecutionStrategy):
    """`"cs"`: Agent-Lightning's HTTP store server plus runner processes; here Redis plus worker processes.

    `role="algorithm"` runs no local runners (external `lq worker` pools do the work), `"runner"`
    runs only the local worker processes (until they reach `max_rollouts` or are interrupted), and
    `"both"` (default) runs both. `graceful_timeout` becomes the workers' `grace_seconds`,
    `terminate_timeout` the Trainer's `stop_timeout`. `server_host`, `server_port` (the Trainer's
    `port`), `main_process`, `managed_store` and `allowed_exit_codes` change nothing: the store's
    server is Redis, reached through its URL (`--redis-url` / `LQ_REDIS_URL`).
    """

    alias = "cs"

    def __init__(
        self,
        role: Role | None = None,
        server_host: str | None = None,
        server_port: int | None = None,
        n_runners: int = 1,
        graceful_timeout: float | None = None,
        terminate_timeout: float | None = None,
        main_process: Literal["algorithm", "runner"] = "algorithm",
        managed_store: bool | None = None,
        allowed_exit_codes: Iterable[int] = (0, -15),
    ) -> None:
        super().__init__()
        resolved = role or "both"
        if resolved not in ("algorithm", "runner", "both"):
            raise ValueError(f"role must be 'algorithm', 'runner' or 'both', got {role!r}")
        if main_process not in ("algorithm", "runner"):
            raise ValueError(f"main_process must be 'algorithm' or 'runner', got {main_process!r}")
        self.role = resolved
        self.n_runners = _check_runners(n_runners)
        self.server_host = server_host
        self.server_port = server_port
        self.main_process = main_process
        self.managed_store = managed_store
        self.allowed_exit_codes = tuple(allowed_exit_codes)
        self.graceful_timeout = graceful_timeout
        self.terminate_timeout = terminate_timeout
        if graceful_timeout is not None:
            self.worker_overrides["grace_seconds"] = _check_seconds("graceful_timeout", graceful_timeout)
        if terminate_timeout is not None:
            self.worker_overrides["stop_timeout"] = _check_seconds("terminate_timeout", terminate_timeout)
        self.ignored = {
            "server_host": server_host,
            "server_port": server_port,
            "main_process": main_process,
            "managed_store": managed_store,
        }


# The names Agent-Lightning's registry and configurations use for its strategies.
STRATEGIES: dict[str, type[ExecutionStrategy]] = {
    "shm": SharedMemoryExecutionStrategy,
    "cs": ClientServerExecutionStrategy,
    "SharedMemoryExecutionStrategy": SharedMemoryExecutionStrategy,
    "ClientServerExecutionStrategy": ClientServerExecutionStrategy,
    "lightning_queue.execution.shared_memory.SharedMemoryExecutionStrategy": SharedMemoryExecutionStrategy,
    "lightning_queue.execution.client_server.ClientServerExecutionStrategy": ClientServerExecutionStrategy,
    "lightning_queue.execution.SharedMemoryExecutionStrategy": SharedMemoryExecutionStrategy,
    "lightning_queue.execution.ClientServerExecutionStrategy": ClientServerExecutionStrategy,
    "lightning_queue.SharedMemoryExecutionStrategy": SharedMemoryExecutionStrategy,
    "lightning_queue.ClientServerExecutionStrategy": ClientServerExecutionStrategy,
}


def resolve_strategy(spec: Any, *, n_runners: int, port: int | None) -> ExecutionStrategy:
    """The strategy `spec` names (instance, class, registry name, import string or dict); unknown -> ValueError."""
    from .components import build_component, own_path

    if isinstance(spec, str) and spec not in STRATEGIES and own_path(spec) not in STRATEGIES:
        raise ValueError(f"unknown strategy {spec!r}; known: 'shm', 'cs' (or an ExecutionStrategy instance or dict)")
    if isinstance(spec, dict):
        name = spec.get("type", spec.get("name"))
        if isinstance(name, str) and name not in STRATEGIES and own_path(name) not in STRATEGIES:
            raise ValueError(f"unknown strategy {name!r} in {spec!r}; known: 'shm', 'cs'")
        if name is None:
            raise ValueError(f"strategy dict {spec!r} needs a 'type' (or 'name'): 'shm' or 'cs'")
    defaults = {"n_runners": lambda: n_runners}
    if port is not None:
        defaults["server_port"] = lambda: port
    strategy: ExecutionStrategy = build_component(
        spec,
        spec_name="strategy",
        expected=ExecutionStrategy,
        default=lambda: ClientServerExecutionStrategy(n_runners=n_runners, server_port=port),
        optional_defaults=defaults,
        registry=STRATEGIES,
    )
    if port is not None and isinstance(strategy, ClientServerExecutionStrategy):
        strategy.server_port = port
        strategy.ignored["server_port"] = port
    return strategy
