"""`lq trainer`: an rq worker on the training queue that runs each fine-tuning job in a forked process.

    lq trainer --redis-url redis://gpu-box-redis:6379/0          # or python -m algorithms.trainer_worker

Jobs travel as JSON (rq's JSONSerializer, not its binary default), and only code of allowed modules runs:
with rq, whoever can write to Redis names the functions a worker imports and calls (the job's, its
callbacks') and the URLs it posts to (webhooks), so the trainer refuses any job naming code outside
`--allow` (default: the SFT job's module), carrying webhooks, or with such a job as a dependent.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import click
import redis
from rq import Worker
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from lightning_queue.store.connection import resolve_shared_url, wait_for_redis
from lightning_queue.store.settings import redis_url_option

logger = logging.getLogger(__name__)

TRAIN_QUEUE = "lq-train"
DEFAULT_ALLOWED = ("algorithms.sft.job",)
# rq's default (420 s) keeps a crashed trainer registered for 7 minutes, during which an algorithm
# would believe it listens; with 60 s its registration lapses a minute after it dies.
DEFAULT_WORKER_TTL = 60


def describe(url: str) -> str:
    """host:port/db of a Redis URL, without credentials, for messages."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}{parts.path or ''}" if parts.scheme != "unix" else parts.path


def check_rq_support(connection: redis.Redis, url: str) -> None:
    """Fail clearly on a Redis that is down, or one rq cannot work with (the embedded fakeredis server
    drops the connection on CLIENT INFO, which rq workers send when they start)."""
    try:
        connection.ping()
    except redis.RedisError as exc:
        raise RuntimeError(f"cannot reach the Redis at {describe(url)}: {exc}") from exc
    try:
        connection.client_info()
    except redis.ConnectionError as exc:
        raise RuntimeError(
            f"the Redis at {describe(url)} cannot host the rq training queue (CLIENT INFO failed: {exc}). "
            "The embedded Redis-compatible server is not enough for a trainer: start redis-server and pass "
            "its URL (--redis-url or LQ_REDIS_URL)"
        ) from exc


def _module(dotted: str | None) -> str:
    return (dotted or "").rpartition(".")[0]


def _named_code(job: Job) -> list[tuple[str, str]]:
    """(role, dotted name) of everything in `job` that rq would import and call, read without importing."""
    callbacks = [
        ("on_success", job._success_callback_name),
        ("on_failure", job._failure_callback_name),
        ("on_stopped", job._stopped_callback_name),
    ]
    return [("function", job.func_name or ""), *((role, name) for role, name in callbacks if name)]


def refusal(job: Job, modules: frozenset[str], *, look_at_dependents: bool = True) -> str | None:
    """Why `job` may not run on a trainer allowing `modules`, or None.

    rq imports and calls the function and each callback a job names, POSTs its webhooks (with the
    traceback, to any URL, with any headers) and enqueues its dependents: all of it is checked here.
    """
    allowed = sorted(modules)
    for role, name in _named_code(job):
        module = _module(name)
        if module not in modules:
            hint = f" (start the trainer with --allow {module} to run it)" if module else ""
            return (
                f"job {job.id} names {name!r} as its {role}, whose module is not allowed on this trainer; "
                f"allowed: {allowed}{hint}"
            )
    if job.webhooks:
        return f"job {job.id} carries {len(job.webhooks)} webhook(s); this trainer sends none"
    if look_at_dependents:
        for dependent_id in job.dependent_ids:
            try:
                dependent = Job.fetch(dependent_id, connection=job.connection, serializer=job.serializer)
            except NoSuchJobError:
                continue
            reason = refusal(dependent, modules, look_at_dependents=False)
            if reason is not None:
                return f"job {job.id} has a dependent this trainer would refuse: {reason}"
    return None


def allowlisted_job_class(allowed: Iterable[str]) -> type[Job]:
    """An rq Job class that refuses, as a failed job, any job naming code outside the `allowed` modules
    (its function, callbacks or dependents) or carrying webhooks.

    rq resolves callbacks lazily, in the work horse and in the worker's own process (a stopped job's
    callback, the cleanup of an abandoned one), so every resolution of a refused job yields nothing.
    """
    modules = frozenset(allowed)

    class AllowlistedJob(Job):
        _lq_refusal: str | None

        def refusal(self) -> str | None:
            try:
                return self._lq_refusal
            except AttributeError:
                self._lq_refusal = refusal(self, modules)
                return self._lq_refusal

        def perform(self) -> Any:
            # Checked in the work horse before the function is imported, so a refused module never loads.
            reason = self.refusal()
            if reason is not None:
                raise PermissionError(reason)
            return super().perform()

        @property
        def success_callback(self) -> Any:
            return None if self.refusal() is not None else super().success_callback

        @property
        def failure_callback(self) -> Any:
            return None if self.refusal() is not None else super().failure_callback

        @property
        def stopped_callback(self) -> Any:
            return None if self.refusal() is not None else super().stopped_callback

        def send_webhooks(self, status: Any, *, exc_string: str | None = None) -> None:
            if self.webhooks:
                logger.warning("job %s: not sending its %d webhook(s)", self.id, len(self.webhooks))

    return AllowlistedJob


def build_worker(
    url: str,
    queue: str = TRAIN_QUEUE,
    *,
    allowed: Iterable[str] = DEFAULT_ALLOWED,
    name: str | None = None,
    worker_ttl: int = DEFAULT_WORKER_TTL,
) -> Worker:
    """The forking rq Worker of `lq trainer`, with the JSON serializer and the module allowlist."""
    # rq stores bytes and decodes itself; it needs a client without decode_responses.
    connection = redis.Redis.from_url(url)
    check_rq_support(connection, url)
    return Worker(
        [queue],
        connection=connection,
        serializer=JSONSerializer,
        job_class=allowlisted_job_class(allowed),
        name=name or f"lq-trainer-{socket.gethostname()}-{os.getpid()}",
        worker_ttl=worker_ttl,
    )


@click.command("trainer")
@redis_url_option
@click.option("--queue", "queue_name", default=TRAIN_QUEUE, show_default=True, help="The rq queue to work on.")
@click.option("--burst", is_flag=True, help="Exit once the queue is empty instead of waiting for jobs.")
@click.option(
    "--allow",
    "allowed",
    multiple=True,
    default=DEFAULT_ALLOWED,
    show_default=True,
    help="Module whose functions jobs may run (repeatable; replaces the default).",
)
@click.option("--name", default=None, help="Worker name. Default: lq-trainer-<host>-<pid>.")
@click.option(
    "--worker-ttl",
    type=click.IntRange(min=20),
    default=DEFAULT_WORKER_TTL,
    show_default=True,
    help="Seconds a dead trainer stays registered as listening.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
)
def trainer_command(
    redis_url: str | None,
    queue_name: str,
    burst: bool,
    allowed: tuple[str, ...],
    name: str | None,
    worker_ttl: int,
    log_level: str,
) -> None:
    """Run training jobs (SFT fine-tuning) from an rq queue, each in a forked process."""
    # Never an embedded server: a trainer with a Redis of its own would wait for jobs no algorithm can reach.
    try:
        url = resolve_shared_url(redis_url)
        wait_for_redis(url, who="lq trainer")
        worker = build_worker(url, queue_name, allowed=allowed, name=name, worker_ttl=worker_ttl)
    except (RuntimeError, ValueError, ConnectionError, redis.RedisError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        f"trainer {worker.name} on queue {queue_name!r} at {describe(url)}; allowed modules: {', '.join(allowed)}",
        err=True,
    )
    worker.work(burst=burst, logging_level=log_level.upper())


if __name__ == "__main__":  # pragma: no cover
    trainer_command()
