"""`WorkerSettings`: every knob of a worker process, declared once (the pool, `lq worker` and `Trainer` derive theirs).

The pool hands them to each process as JSON in `LQ_WORKER_SETTINGS`; the Redis URL travels apart, in
`LQ_REDIS_URL`, so a password is never part of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, field_validator, model_validator

from lightning_queue.options import Settings, setting
from lightning_queue.store.settings import DEFAULT_NAMESPACE, Namespace

SETTINGS_ENV = "LQ_WORKER_SETTINGS"

LogLevel = Annotated[
    Literal["DEBUG", "INFO", "WARNING", "ERROR"], BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)
]


def check_recycling(max_rollouts_per_process: int | None, max_memory_mb: int | None) -> None:
    """Refuse recycling limits that cannot work (shared by `Worker` and `WorkerSettings`)."""
    for name, value in (("max_rollouts_per_process", max_rollouts_per_process), ("max_memory_mb", max_memory_mb)):
        _check_limit(name, value)


def _check_limit(name: str, value: Any) -> Any:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise ValueError(f"{name} must be a whole number of at least 1, or None; got {value!r}")
    return value


class WorkerSettings(Settings):
    """Everything a worker process needs besides the Redis URL."""

    agent: str = setting(
        "",
        help="The agent to run: a @rollout function or a LitAgent, e.g. workers.examples:echo.",
        metavar="MODULE:ATTR",
        required=True,
    )
    hooks: tuple[str, ...] = setting((), help="A workers.Hook (repeatable).", option="--hook", metavar="MODULE:ATTR")
    tracer: str = setting(
        "",
        help="The OtelTracer agents run under (an instance or a class); default AgentOpsTracer.",
        metavar="MODULE:ATTR",
    )
    namespace: Namespace = setting(DEFAULT_NAMESPACE, help="Run namespace.")
    concurrency: int = setting(
        1, help="Rollouts in flight per process (asyncio tasks; threads for sync agents).", short="-c", ge=1
    )
    max_rollouts: int | None = setting(
        None,
        help="Each process exits after claiming this many rollouts (not restarted). Default: run until stopped.",
        ge=1,
    )
    max_rollouts_per_process: int | None = setting(
        None,
        help="Recycle each process after it claimed N rollouts: it finishes them and the pool starts a fresh one.",
        metavar="N",
        ge=1,
    )
    max_memory_mb: int | None = setting(
        None,
        help="Recycle a process whose memory (RSS) is above MB after a rollout: it finishes its in-flight "
        "rollouts and the pool starts a fresh one.",
        metavar="MB",
        ge=1,
    )
    lease_seconds: float = setting(
        30.0, help="A dead worker's rollouts are reclaimed after this long; use one value per namespace.", ge=0.1
    )
    grace_seconds: float = setting(
        30.0, help="On SIGINT/SIGTERM, in-flight rollouts get this long to finish before they are released.", ge=0.0
    )
    heartbeat_seconds: float = setting(10.0, help="Period of the worker telemetry sent through update_worker.", ge=0.1)
    log_level: LogLevel = setting("INFO", help="Log level of the worker processes.")
    metrics_port: int | None = setting(
        None,
        help="Serve the Prometheus metrics of all the pool's processes at http://HOST:PORT/metrics "
        "(0 = a free port, logged). Default: no metrics endpoint.",
        metavar="PORT",
        ge=0,
        le=65535,
    )
    metrics_host: str = setting("127.0.0.1", help="Bind address of --metrics-port (0.0.0.0 serves other machines).")

    @field_validator("max_rollouts_per_process", "max_memory_mb", mode="before")
    @classmethod
    def _check_recycling(cls, value: Any, info: Any) -> Any:
        return _check_limit(info.field_name, value)

    @model_validator(mode="after")
    def _check_exclusive(self) -> WorkerSettings:
        if self.max_rollouts is not None and (self.max_rollouts_per_process or self.max_memory_mb):
            # A recycled process's successor would not know how many rollouts its predecessor claimed.
            raise ValueError(
                "max_rollouts (each process exits for good) cannot be combined with max_rollouts_per_process "
                "or max_memory_mb (each process is replaced): use one or the other"
            )
        return self

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> WorkerSettings:
        raw = environ.get(SETTINGS_ENV)
        if not raw:
            raise ValueError(f"{SETTINGS_ENV} is not set: worker processes are started by `lq worker`")
        return cls.model_validate_json(raw)


def default(field: str) -> Any:
    """The default of one `WorkerSettings` field (for signatures that take it as a keyword)."""
    return WorkerSettings.model_fields[field].default
