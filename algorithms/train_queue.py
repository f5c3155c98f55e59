"""The algorithm's side of the training queue: submit a job to `lq trainer` over rq (JSON only) and wait.

    queue = TrainingQueue("redis://127.0.0.1:6379/0")
    try:
        result = queue.run("algorithms.sft.job.fine_tune", timeout=3600, base_model=..., output_dir=..., samples=...)
    finally:
        queue.close()

When no trainer listens on the queue, `submit` starts one as a subprocess (`python -m
algorithms.trainer_worker`) and `close` stops it. Every call here blocks; an async algorithm runs them
with `asyncio.to_thread`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
import redis
from rq import Queue, Worker
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import JSONSerializer

from .trainer_worker import DEFAULT_ALLOWED, TRAIN_QUEUE, check_rq_support

logger = logging.getLogger(__name__)

# Results are read right after the job ends; a day leaves room to inspect them by hand.
RESULT_TTL_SECONDS = 24 * 3600
FAILURE_TTL_SECONDS = 7 * 24 * 3600
# How long one blocking read for a result lasts before statuses and the local trainer are checked.
_POLL_SECONDS = 1


class TrainingJobError(RuntimeError):
    """A training job that failed, was stopped or lost its trainer. `remote_traceback` holds what the
    trainer recorded, when it recorded something."""

    def __init__(self, job_id: str, message: str, remote_traceback: str | None = None) -> None:
        super().__init__(message)
        self.job_id = job_id
        self.remote_traceback = remote_traceback


def job_path(function: str) -> str:
    """rq's dotted `module.function` path, also accepting this project's `module:function` form."""
    module, sep, attr = function.replace(":", ".").rpartition(".")
    if not sep or not module or not attr.isidentifier():
        raise ValueError(f"job function {function!r} is not of the form 'package.module.function'")
    return f"{module}.{attr}"


class LocalTrainer:
    """An `lq trainer` subprocess started because no trainer listened; it logs to `log_path`."""

    def __init__(self, url: str, queue: str, allowed: Sequence[str], log_path: Path) -> None:
        self.url = url
        self.queue = queue
        self.allowed = tuple(allowed)
        self.log_path = log_path
        self.name = f"lq-trainer-local-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "algorithms.trainer_worker", "--queue", self.queue, "--name", self.name]
        for module in self.allowed:
            args += ["--allow", module]
        # The URL goes through the environment, not argv, where `ps` would show its password.
        env = {**os.environ, "LQ_REDIS_URL": self.url}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # Its own session: a Ctrl-C meant for the algorithm must not also reach the trainer, which
            # the algorithm stops itself (warm first, so a running job is not cut in half needlessly).
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True
            )
        logger.info(
            "no trainer listens on %r: started %s (pid %d, log %s)", self.queue, self.name, self.proc.pid, self.log_path
        )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_description(self) -> str:
        code = self.proc.poll() if self.proc is not None else None
        return f"the local trainer (pid {self.pid}) exited with code {code}; last lines of {self.log_path}:\n" + (
            self.log_tail()
        )

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(cannot read the log: {exc})"

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM (rq's warm shutdown), again (cold: rq kills the running job), then SIGKILL by pid."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        for _ in range(2):
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue
        # The work horse runs in a process group of its own; find it through the trainer, before it dies.
        try:
            horses = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            horses = []
        for horse in horses:
            try:
                horse.kill()
            except psutil.NoSuchProcess:
                continue
        proc.kill()
        proc.wait()


class TrainingQueue:
    """Submit jobs to the rq queue `queue` at `url` and wait for their results.

    Args:
        url: the Redis URL (usually the store's).
        queue: the rq queue that `lq trainer` works on.
        start_local: start a local trainer when no trainer listens.
        allowed: modules the local trainer may run jobs from.
        log_path: where a local trainer writes its output (default: a file in the temp directory).
    """

    def __init__(
        self,
        url: str,
        *,
        queue: str = TRAIN_QUEUE,
        start_local: bool = True,
        allowed: Sequence[str] = DEFAULT_ALLOWED,
        log_path: Path | None = None,
    ) -> None:
        self.url = url
        self.connection = redis.Redis.from_url(url)
        self.queue = Queue(queue, connection=self.connection, serializer=JSONSerializer)
        self.start_local = start_local
        self.allowed = tuple(allowed)
        self.log_path = log_path
        self.local: LocalTrainer | None = None

    def check(self) -> None:
        """Raise now, before any rollout, if this Redis cannot carry rq jobs."""
        check_rq_support(self.connection, self.url)

    def listening(self) -> list[str]:
        """Names of the live rq workers registered on the queue."""
        return sorted(w.name for w in Worker.all(queue=self.queue, serializer=JSONSerializer))

    def ensure_trainer(self) -> None:
        """Start a local trainer unless one of ours runs or another trainer listens."""
        if self.local is not None:
            if self.local.alive():
                return
            raise RuntimeError(self.local.exit_description())
        if self.listening():
            return
        if not self.start_local:
            logger.warning("no trainer listens on queue %r: jobs wait until `lq trainer` starts", self.queue.name)
            return
        log_path = self.log_path or Path(tempfile.gettempdir()) / f"lq-trainer-{os.getpid()}.log"
        self.local = LocalTrainer(self.url, self.queue.name, self.allowed, log_path)
        self.local.start()

    def submit(self, function: str, *, timeout: float, description: str | None = None, **kwargs: Any) -> str:
        """Enqueue `function(**kwargs)` (JSON-only arguments) with a run-time limit; returns the job id."""
        path = job_path(function)
        self.ensure_trainer()
        job = self.queue.enqueue_call(
            func=path,
            kwargs=kwargs,
            timeout=max(1, int(timeout)),
            result_ttl=RESULT_TTL_SECONDS,
            failure_ttl=FAILURE_TTL_SECONDS,
            # rq's default description is the call's repr, which would copy every token id once more.
            description=description or path,
        )
        logger.info("submitted training job %s (%s) to queue %r", job.id, path, self.queue.name)
        return str(job.id)

    def wait(self, job_id: str, timeout: float | None = None) -> Any:
        """The job's return value; TrainingJobError if it failed, TimeoutError after `timeout` seconds."""
        try:
            job = Job.fetch(job_id, connection=self.connection, serializer=JSONSerializer)
        except NoSuchJobError as exc:
            raise TrainingJobError(job_id, f"training job {job_id} does not exist in this Redis") from exc
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            result = job.latest_result(timeout=_POLL_SECONDS)
            if result is not None:
                return _outcome(job_id, result)
            try:
                status = job.get_status(refresh=True)
            except InvalidJobOperation as exc:
                raise TrainingJobError(
                    job_id, f"training job {job_id} vanished from Redis (expired or deleted)"
                ) from exc
            if status in (JobStatus.CANCELED, JobStatus.STOPPED):
                raise TrainingJobError(job_id, f"training job {job_id} was {status.value} before it finished")
            if self.local is not None and not self.local.alive():
                # A trainer that dies mid-job records nothing; without this the wait would last forever.
                # Its registration outlives it (until the worker TTL), so it does not count as listening.
                others = [name for name in self.listening() if name != self.local.name]
                if status != JobStatus.QUEUED or not others:
                    raise TrainingJobError(
                        job_id, f"training job {job_id} lost its trainer: " + self.local.exit_description()
                    )
            if deadline is not None and time.monotonic() > deadline:
                listening = ", ".join(self.listening()) or "none"
                raise TimeoutError(
                    f"training job {job_id} did not finish within {timeout:.0f}s (status {status.value}; "
                    f"trainers listening on {self.queue.name!r}: {listening})"
                )

    def run(self, function: str, *, timeout: float, description: str | None = None, **kwargs: Any) -> Any:
        """Submit and wait; the run-time limit of the job is also the wait's."""
        job_id = self.submit(function, timeout=timeout, description=description, **kwargs)
        # Queueing behind another run's job is not this job's run time; give the wait some slack.
        return self.wait(job_id, timeout=timeout + 60)

    def close(self) -> None:
        """Stop the local trainer if this queue started one, and close the connection."""
        try:
            if self.local is not None:
                self.local.stop()
        finally:
            self.connection.close()


def _outcome(job_id: str, result: Result) -> Any:
    if result.type == Result.Type.SUCCESSFUL:
        return result.return_value
    remote = result.exc_string or ""
    lines = [line for line in remote.strip().splitlines() if line.strip()]
    reason = lines[-1].strip() if lines else f"no exception recorded (result type {result.type.name})"
    where = f" on trainer {result.worker_name}" if result.worker_name else ""
    raise TrainingJobError(job_id, f"training job {job_id} failed{where}: {reason}", remote or None)
