"""SFT: row selection, the rq training-job path on a real redis-server and real `lq trainer` processes,
the whole loop with the stand-in model, and one real fine-tune of SmolLM2."""

from __future__ import annotations

import base64
import contextlib
import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import types
import uuid
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import psutil
import pytest
import redis
from rq import Callback, Queue
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.webhook import Webhook

from algorithms.sft import SFT, SFTConfig
from algorithms.sft.job import JOB_FUNCTION, check_samples, truncate
from algorithms.sft.rows import Row, require_datasets, rows_from_triplets, select_best
from algorithms.train_queue import TrainingJobError, TrainingQueue
from lightning_queue import LLMProxy, LlmProxyTraceToTriplet, RedisLightningStore, Trainer, Triplet
from lightning_queue.testing import StandInModelServer
from workers.examples import math_agent

JOBS_DIR = Path(__file__).resolve().parents[3]  # the repository root: trainer processes import JOBS through PYTHONPATH
JOBS = "tests.support.sft_jobs"


# --- rows and selection ---------------------------------------------------------------------------


def call(prompt: list[int], response: list[int], reward: float | None) -> Triplet:
    return Triplet(prompt={"token_ids": prompt}, response={"token_ids": response}, reward=reward)


def test_the_final_reward_is_carried_back_to_earlier_calls_of_the_rollout() -> None:
    rows = rows_from_triplets([call([1], [2], None), call([3], [4], None), call([5], [6], 0.5)], "ro-1")
    assert [(r.prompt_ids, r.reward) for r in rows] == [([1], 0.5), ([3], 0.5), ([5], 0.5)]
    assert {r.rollout_id for r in rows} == {"ro-1"}


def test_calls_without_token_ids_or_after_the_last_reward_are_skipped() -> None:
    rows = rows_from_triplets(
        [call([1], [2], 1.0), call([3], [], None), call([], [4], None), call([7], [8], 0.0), call([9], [9], None)],
        "ro-1",
    )
    assert [(r.prompt_ids, r.reward) for r in rows] == [([1], 1.0), ([7], 0.0)]


def rows_with(rewards: list[float]) -> list[Row]:
    return [Row([i], [i], reward, f"ro-{i}") for i, reward in enumerate(rewards)]


def test_selection_keeps_the_best_half_in_random_order() -> None:
    kept = select_best(rows_with([0.0, 1.0, 0.2, 0.9, 0.5, 0.1]), 0.5, random.Random(0))
    assert sorted(r.reward for r in kept) == [0.5, 0.9, 1.0]


def test_selection_keeps_at_least_one_row() -> None:
    assert [r.reward for r in select_best(rows_with([0.3]), 0.5, random.Random(0))] == [0.3]


def test_min_reward_may_leave_nothing_to_imitate() -> None:
    assert select_best(rows_with([0.0, 0.0, 0.1]), 0.5, random.Random(0), min_reward=0.5) == []


def test_no_rows_at_all_is_a_setup_error() -> None:
    with pytest.raises(ValueError, match="no trainable rows"):
        select_best([], 0.5, random.Random(0))


def test_a_record_masks_the_prompt_out_of_the_labels() -> None:
    record = Row([1, 2], [3, 4], 1.0, "ro-1").record(iteration=2)
    assert record["input_ids"] == [1, 2, 3, 4] and record["attention_mask"] == [1, 1, 1, 1]
    assert record["labels"] == [-100, -100, 3, 4] and record["iteration"] == 2


def test_exporting_a_dataset_without_the_datasets_package_says_what_to_install() -> None:
    try:
        import datasets  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install 'lightning-queue\[datasets\]'"):
            require_datasets()
    else:
        pytest.skip("datasets is installed")


# --- the job's argument checks (no torch needed) ---------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "message"),
    [
        ([], "non-empty list"),
        ([{"prompt_ids": [1], "response_ids": []}], "sample 0: response_ids"),
        (
            [{"prompt_ids": [1], "response_ids": [2]}, {"prompt_ids": ["a"], "response_ids": [2]}],
            "sample 1: prompt_ids",
        ),
        ([{"prompt_ids": [1], "response_ids": [True]}], "sample 0: response_ids"),
        (["not an object"], "sample 0 must be an object"),
    ],
)
def test_bad_samples_are_refused_naming_the_sample(samples: list[Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_samples(samples)


def test_truncation_keeps_the_response_and_the_newest_prompt_tokens() -> None:
    assert truncate([1, 2, 3, 4], [5, 6], 4) == ([3, 4], [5, 6])
    assert truncate([1, 2], [3, 4, 5, 6], 3) == ([2], [3, 4])
    assert truncate([1], [2], 8) == ([1], [2])


# --- the rq training-job path on a real redis-server -----------------------------------------------


@pytest.fixture
def queue_name() -> str:
    # rq queues are global to a Redis database: one per test keeps trainers of other tests away.
    return f"lq-train-test-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def jobs_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Trainers started by the code under test inherit this PYTHONPATH and can import the test jobs."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(JOBS_DIR), os.environ.get("PYTHONPATH")])))


def kill_tree(pid: int) -> None:
    """SIGKILL a trainer and its work horse (which runs in a process group of its own), by pid."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)


@pytest.fixture
def start_trainer(redis_url: str, tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start real `lq trainer` processes (python -m algorithms.trainer_worker); all are killed at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(queue: str, *allowed: str, burst: bool = False) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "LQ_REDIS_URL": redis_url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(JOBS_DIR), os.environ.get("PYTHONPATH")])),
        }
        args = [sys.executable, "-m", "algorithms.trainer_worker", "--queue", queue, "--log-level", "WARNING"]
        for module in allowed or (JOBS,):
            args += ["--allow", module]
        with open(tmp_path / f"trainer-{len(started)}.log", "wb") as log:
            proc = subprocess.Popen([*args, *(["--burst"] if burst else [])], env=env, stdout=log, stderr=log)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        kill_tree(proc.pid)


def wait_until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.05)


@pytest.mark.slow
def test_the_job_runs_in_a_process_forked_by_the_trainer_and_its_result_comes_back(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]]
) -> None:
    queue = TrainingQueue(redis_url, queue=queue_name, start_local=False)
    try:
        job_id = queue.submit(f"{JOBS}.where", timeout=60, tokens=[1, 2, 3], rate=0.5)
        trainer = start_trainer(queue_name)
        result = queue.wait(job_id, timeout=60)
    finally:
        queue.close()
    assert result["kwargs"] == {"tokens": [1, 2, 3], "rate": 0.5}
    # A work horse forked by the trainer ran it, not the trainer itself.
    assert result["ppid"] == trainer.pid and result["pid"] != trainer.pid


@pytest.mark.slow
def test_a_failing_job_is_an_error_naming_the_job_and_the_remote_exception(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]]
) -> None:
    start_trainer(queue_name)
    queue = TrainingQueue(redis_url, queue=queue_name, start_local=False)
    try:
        job_id = queue.submit(f"{JOBS}.explode", timeout=60, message="loss is nan at step 3")
        with pytest.raises(TrainingJobError, match=r"ValueError: loss is nan at step 3") as caught:
            queue.wait(job_id, timeout=60)
    finally:
        queue.close()
    assert caught.value.job_id == job_id and job_id in str(caught.value)
    assert "Traceback" in (caught.value.remote_traceback or "")


@pytest.mark.slow
def test_job_payload_and_result_are_stored_as_json_never_pickle(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]]
) -> None:
    queue = TrainingQueue(redis_url, queue=queue_name, start_local=False)
    raw: Any = redis.Redis.from_url(redis_url)  # bytes in, bytes out: what is really stored
    try:
        job_id = queue.submit(f"{JOBS}.where", timeout=60, description="probe", tokens=[7, 8])
        data = zlib.decompress(raw.hget(f"rq:job:{job_id}", "data") or b"")
        assert not data.startswith(b"\x80")  # every pickle protocol >= 2 starts with PROTO (0x80)
        assert json.loads(data) == [f"{JOBS}.where", None, [], {"tokens": [7, 8]}]
        start_trainer(queue_name, burst=True)
        queue.wait(job_id, timeout=60)
        [(_entry, fields)] = raw.xrange(f"rq:results:{job_id}")
        returned = base64.b64decode(fields[b"return_value"])
        assert not returned.startswith(b"\x80")
        assert json.loads(returned)["kwargs"] == {"tokens": [7, 8]}
    finally:
        queue.close()
        raw.close()


@pytest.mark.slow
def test_a_trainer_refuses_jobs_from_modules_it_does_not_allow(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]]
) -> None:
    start_trainer(queue_name)  # allows tests.support.sft_jobs only
    queue = TrainingQueue(redis_url, queue=queue_name, start_local=False)
    try:
        job_id = queue.submit("os.getpid", timeout=60)
        with pytest.raises(TrainingJobError, match=r"PermissionError: .*'os.getpid'.*not allowed"):
            queue.wait(job_id, timeout=60)
    finally:
        queue.close()


def enqueue_raw(redis_url: str, queue_name: str, function: str, **options: Any) -> Job:
    """A job as any Redis client could enqueue it, with rq options TrainingQueue never sets."""
    connection = redis.Redis.from_url(redis_url)
    return Queue(queue_name, connection=connection, serializer=JSONSerializer).enqueue_call(
        func=function, timeout=60, **options
    )


def wait_refused(redis_url: str, queue_name: str, job_id: str) -> str:
    """The refusal's message of a job the trainer failed."""
    queue = TrainingQueue(redis_url, queue=queue_name, start_local=False)
    try:
        with pytest.raises(TrainingJobError, match=r"PermissionError: ") as caught:
            queue.wait(job_id, timeout=60)
    finally:
        queue.close()
    return str(caught.value)


ZEN = "Beautiful is better than ugly"  # printed by `import this`: proof that the module was imported


@pytest.mark.slow
def test_a_refused_job_s_failure_callback_is_never_imported(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    job = enqueue_raw(redis_url, queue_name, "os.getpid", on_failure=Callback("this.x"))
    start_trainer(queue_name)
    assert "'os.getpid'" in wait_refused(redis_url, queue_name, job.id)
    assert ZEN not in (tmp_path / "trainer-0.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("role", ["on_success", "on_failure", "on_stopped"])
def test_an_allowed_job_with_a_callback_outside_the_allowlist_is_refused_before_it_runs(
    redis_url: str,
    queue_name: str,
    start_trainer: Callable[..., subprocess.Popen[bytes]],
    tmp_path: Path,
    role: str,
) -> None:
    marker = tmp_path / "ran"
    job = enqueue_raw(
        redis_url,
        queue_name,
        f"{JOBS}.fake_fine_tune",
        kwargs={"base_model": "m", "output_dir": str(marker), "samples": []},
        **{role: Callback("print")},
    )
    start_trainer(queue_name)
    message = wait_refused(redis_url, queue_name, job.id)
    assert f"'print' as its {role}" in message
    assert not marker.exists()  # the job's own function did not run either


class WebhookCatcher:
    """An HTTP server on loopback that records every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        catcher = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                catcher.requests.append((self.path, dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            do_GET = do_POST

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook_catcher() -> Iterator[WebhookCatcher]:
    catcher = WebhookCatcher()
    yield catcher
    catcher.close()


@pytest.mark.slow
@pytest.mark.parametrize("function", ["os.getpid", f"{JOBS}.where"])
def test_a_job_with_a_webhook_is_refused_and_nothing_is_posted(
    redis_url: str,
    queue_name: str,
    start_trainer: Callable[..., subprocess.Popen[bytes]],
    webhook_catcher: WebhookCatcher,
    function: str,
) -> None:
    hooks = [
        Webhook(webhook_catcher.url, status, method="POST", headers={"X-Anything": "goes"})
        for status in ("failed", "finished")
    ]
    job = enqueue_raw(redis_url, queue_name, function, webhooks=hooks)
    start_trainer(queue_name)
    assert "webhook" in wait_refused(redis_url, queue_name, job.id) or function == "os.getpid"
    # rq posts right after it records the failure; give it time to do so if it were going to.
    time.sleep(3)
    assert webhook_catcher.requests == []


@pytest.mark.slow
def test_an_allowed_job_with_a_dependent_outside_the_allowlist_is_refused(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]]
) -> None:
    parent = enqueue_raw(redis_url, queue_name, f"{JOBS}.where")
    enqueue_raw(redis_url, queue_name, "os.getpid", depends_on=parent)
    start_trainer(queue_name)
    message = wait_refused(redis_url, queue_name, parent.id)
    assert "dependent" in message and "'os.getpid'" in message


@pytest.mark.slow
def test_allowlisted_callbacks_still_run(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    job = enqueue_raw(redis_url, queue_name, f"{JOBS}.where", on_success=Callback(f"{JOBS}.record_success"))
    start_trainer(queue_name)
    queue = TrainingQueue(redis_url, queue=queue_name, start_local=False)
    try:
        queue.wait(job.id, timeout=60)
    finally:
        queue.close()
    wait_until(lambda: "lq-test-success-callback" in (tmp_path / "trainer-0.log").read_text())


@pytest.mark.slow
def test_with_no_trainer_listening_a_local_one_is_started_and_stopped_at_close(
    redis_url: str, queue_name: str, jobs_on_path: None, tmp_path: Path
) -> None:
    queue = TrainingQueue(redis_url, queue=queue_name, allowed=[JOBS], log_path=tmp_path / "trainer.log")
    try:
        result = queue.run(f"{JOBS}.where", timeout=60)
        local = queue.local
        assert local is not None and local.alive() and result["ppid"] == local.pid
        assert queue.listening() == [local.name]
    finally:
        queue.close()
    assert local.proc is not None and local.proc.returncode is not None
    # A warm shutdown deregisters the trainer: the next algorithm will not count on it.
    assert TrainingQueue(redis_url, queue=queue_name).listening() == []


@pytest.mark.slow
def test_a_listening_trainer_is_used_instead_of_starting_one(
    redis_url: str, queue_name: str, start_trainer: Callable[..., subprocess.Popen[bytes]]
) -> None:
    trainer = start_trainer(queue_name)
    queue = TrainingQueue(redis_url, queue=queue_name, allowed=[JOBS])
    try:
        wait_until(lambda: bool(queue.listening()))
        result = queue.run(f"{JOBS}.where", timeout=60)
    finally:
        queue.close()
    assert queue.local is None and result["ppid"] == trainer.pid


@pytest.mark.slow
def test_a_local_trainer_dying_mid_job_is_an_error_not_a_hang(
    redis_url: str, queue_name: str, jobs_on_path: None, tmp_path: Path
) -> None:
    queue = TrainingQueue(redis_url, queue=queue_name, allowed=[JOBS], log_path=tmp_path / "trainer.log")
    try:
        job_id = queue.submit(f"{JOBS}.nap", timeout=120, seconds=60)
        local = queue.local
        assert local is not None and local.proc is not None and local.pid is not None
        job = Job.fetch(job_id, connection=queue.connection, serializer=JSONSerializer)
        wait_until(lambda: job.get_status() == JobStatus.STARTED)  # the work horse is running it
        horses = psutil.Process(local.pid).children(recursive=True)
        local.proc.send_signal(signal.SIGKILL)  # through Popen, which reaps it and keeps its exit code
        local.proc.wait()
        for horse in horses:  # orphaned now; it would nap on for a minute
            horse.kill()
        started = time.monotonic()
        with pytest.raises(TrainingJobError, match=rf"training job {job_id} lost its trainer.*exited with code -9"):
            queue.wait(job_id, timeout=60)
        assert time.monotonic() - started < 10
    finally:
        queue.close()


@pytest.mark.slow
def test_waiting_with_no_trainer_times_out_naming_the_job(redis_url: str, queue_name: str) -> None:
    queue = TrainingQueue(redis_url, queue=queue_name, start_local=False)
    try:
        job_id = queue.submit(f"{JOBS}.where", timeout=60)
        with pytest.raises(TimeoutError, match=rf"training job {job_id} did not finish.*queued.*listening.*: none"):
            queue.wait(job_id, timeout=1)
    finally:
        queue.close()


# --- the whole loop with the stand-in model ---------------------------------------------------------


class RecordingReloader:
    """Stands in for the model server's reload: remembers which checkpoints it was told to serve."""

    def __init__(self) -> None:
        self.loaded: list[Path] = []

    async def load(self, checkpoint: Path) -> None:
        assert (checkpoint / "trained-on.json").is_file(), "reload of a checkpoint that is not complete"
        self.loaded.append(checkpoint)


def base_model(tmp_path: Path) -> Path:
    base = tmp_path / "base-model"
    base.mkdir()
    (base / "config.json").write_text("{}")
    return base


def math_tasks() -> list[dict[str, Any]]:
    # The stand-in echoes the question: even targets earn 1.0, odd ones (off by 100) earn 0.0.
    return [{"question": f"### {i} ###", "target": i if i % 2 == 0 else i + 100} for i in range(4)]


async def fit_sft(
    redis_url: str, config: SFTConfig, reloader: RecordingReloader | None, clock: Callable[[], float] | None = None
) -> tuple[dict[str, Any], RedisLightningStore]:
    store = RedisLightningStore(redis_url, namespace=f"sft-{uuid.uuid4().hex[:8]}", scan_debounce_seconds=0)
    algorithm = SFT(config, reloader, clock=clock) if clock else SFT(config, reloader)
    async with StandInModelServer(token_ids="always") as model:
        proxy = LLMProxy(model_list=[{"name": "policy", "base_url": model.url, "model": model.model}])
        trainer = Trainer(
            algorithm=algorithm,
            store=store,
            llm_proxy=proxy,
            adapter=LlmProxyTraceToTriplet(),
            n_workers=2,
            worker_concurrency=2,
            stop_timeout=5,
        )
        try:
            return await trainer.fit_async(math_agent, math_tasks()), store
        finally:
            assert trainer.worker_pids() == []


def sft_config(tmp_path: Path, queue_name: str, **overrides: Any) -> SFTConfig:
    settings: dict[str, Any] = {
        "model_dir": str(base_model(tmp_path)),
        "iterations": 2,
        "samples_per_task": 2,
        "job_function": f"{JOBS}.fake_fine_tune",
        "train_queue": queue_name,
        "checkpoint_dir": str(tmp_path / "checkpoints"),
        "rollout_timeout": 60,
        "progress": False,
    }
    return SFTConfig(**{**settings, **overrides})


class FakeDataset:
    """Takes the place of `datasets.Dataset` (not installed here): records what would be saved where."""

    saved: ClassVar[dict[str, list[dict[str, Any]]]] = {}

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> FakeDataset:
        return cls(rows)

    def save_to_disk(self, path: str) -> None:
        FakeDataset.saved[path] = self.rows


@pytest.fixture
def fake_datasets(monkeypatch: pytest.MonkeyPatch) -> type[FakeDataset]:
    FakeDataset.saved = {}
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(Dataset=FakeDataset))
    return FakeDataset


@pytest.mark.slow
async def test_sft_keeps_the_best_rows_fine_tunes_on_a_local_trainer_reloads_and_logs_each_iteration(
    redis_url: str, queue_name: str, jobs_on_path: None, tmp_path: Path, fake_datasets: type[FakeDataset]
) -> None:
    reloader = RecordingReloader()
    export = str(tmp_path / "selected")
    config = sft_config(tmp_path, queue_name, keep_checkpoints=1, learning_rate=3e-5, export_dataset=export)
    result, store = await fit_sft(redis_url, config, reloader)
    try:
        run_dir = Path(result["run_dir"])
        assert [p.name for p in reloader.loaded] == ["version_1", "version_2"]
        assert result["checkpoint"] == str(run_dir / "version_2") and result["stopped"] == "iterations"
        for record in result["iterations"]:
            # 4 tasks x 2 samples, one LLM call each; half earn 1.0, and the best half is kept.
            assert (record["rollouts"], record["succeeded"], record["rows"], record["kept"]) == (8, 8, 8, 4)
            assert record["reward_mean"] == 0.5 and record["kept_reward_mean"] == 1.0
            assert record["train"]["learning_rate"] == 3e-5 and record["train"]["samples"] == 4
        trained_on = json.loads((run_dir / "version_2" / "trained-on.json").read_text())
        assert trained_on["base_model"] == str(run_dir / "version_1"), "each fine-tune starts from the last one"
        assert all(s["reward"] == 1.0 and s["prompt_ids"] and s["response_ids"] for s in trained_on["samples"])
        assert not (run_dir / "version_1").exists(), "keep_checkpoints=1 prunes the checkpoint no longer served"
        with open(result["metrics_path"], encoding="utf-8") as metrics:  # noqa: ASYNC230 - a small local file
            lines = [json.loads(line) for line in metrics]
        assert [line["iteration"] for line in lines] == [1, 2] and all(line["job_id"] for line in lines)
        # The local trainer the algorithm started is gone, and so is the work horse of each job.
        assert TrainingQueue(redis_url, queue=queue_name).listening() == []
        assert not any(psutil.pid_exists(line["train"]["pid"]) for line in lines)
        # The selected rows of both iterations, as training records.
        exported = fake_datasets.saved[export]
        assert result["exported_rows"] == len(exported) == 8
        assert sorted({r["iteration"] for r in exported}) == [1, 2] and {r["reward"] for r in exported} == {1.0}
        assert all(r["labels"][: len(r["input_ids"]) - 1].count(-100) >= 1 for r in exported)
    finally:
        await store.purge()
        await store.aclose()


@pytest.mark.slow
async def test_a_failing_training_job_stops_sft_with_the_job_error(
    redis_url: str, queue_name: str, jobs_on_path: None, tmp_path: Path
) -> None:
    reloader = RecordingReloader()
    config = sft_config(tmp_path, queue_name, job_function=f"{JOBS}.broken_fine_tune")
    with pytest.raises(TrainingJobError, match=r"failed on trainer .*RuntimeError: CUDA out of memory") as caught:
        await fit_sft(redis_url, config, reloader)
    assert caught.value.job_id in str(caught.value)
    assert reloader.loaded == []
    assert TrainingQueue(redis_url, queue=queue_name).listening() == []


@pytest.mark.slow
async def test_max_minutes_stops_sft_before_the_next_iteration(
    redis_url: str, queue_name: str, jobs_on_path: None, tmp_path: Path
) -> None:
    ticks = iter([0.0, 0.0, 301.0])  # start, before iteration 1, before iteration 2 (five minutes later)
    config = sft_config(tmp_path, queue_name, iterations=3, max_minutes=5.0)
    result, store = await fit_sft(redis_url, config, None, clock=lambda: next(ticks))
    try:
        assert result["stopped"] == "max_minutes" and [r["iteration"] for r in result["iterations"]] == [1]
    finally:
        await store.purge()
        await store.aclose()


# --- a real fine-tune of SmolLM2 through the queue ---------------------------------------------------


def response_logprob(model: Any, prompt: list[int], response: list[int]) -> float:
    import torch

    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    targets = ids[0, 1:]
    picked = logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return float(picked[len(prompt) - 1 :].sum())


@pytest.mark.model
@pytest.mark.slow
def test_the_fine_tune_job_trains_smollm2_in_a_trainer_and_the_checkpoint_loads(
    redis_url: str, queue_name: str, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from lightning_queue.model_server import load_model, resolve_default_model_dir

    base = resolve_default_model_dir()
    served = load_model(base)
    tokenizer: Any = served.tokenizer
    samples: list[dict[str, Any]] = []
    for question, answer in [("What is 2 + 3?", "5"), ("What is 4 + 4?", "8"), ("What is 1 + 6?", "7")]:
        encoded = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True)
        prompt = list(encoded if isinstance(encoded, list) else encoded["input_ids"])
        response = [*tokenizer.encode(answer, add_special_tokens=False), tokenizer.eos_token_id]
        samples.append({"prompt_ids": prompt, "response_ids": response, "reward": 1.0})
    before = [response_logprob(served.model, s["prompt_ids"], s["response_ids"]) for s in samples]

    queue = TrainingQueue(redis_url, queue=queue_name, log_path=tmp_path / "trainer.log")
    started = time.monotonic()
    try:
        result = queue.run(
            JOB_FUNCTION,
            timeout=120,
            base_model=str(base),
            output_dir=str(tmp_path / "version_1"),
            samples=samples,
            learning_rate=1e-4,
            batch_size=3,
            max_steps=1,
            threads=1,
        )
    finally:
        queue.close()
    job_seconds = time.monotonic() - started
    metrics = result["metrics"]
    assert metrics["steps"] == 1 and metrics["samples"] == 3 and metrics["device"] == "cpu"
    assert queue.local is not None and metrics["pid"] != queue.local.pid  # trained in a forked work horse

    tuned = load_model(result["checkpoint"])  # a whole checkpoint, tokenizer included
    after = [response_logprob(tuned.model, s["prompt_ids"], s["response_ids"]) for s in samples]
    assert sum(after) > sum(before), (before, after)
    print(f"\nSFT job on CPU: {job_seconds:.1f}s end to end; {json.dumps(metrics)}")


def test_sft_and_trainer_commands_answer_help() -> None:
    for module in ("algorithms.sft", "algorithms.trainer_worker"):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Usage:" in done.stdout


def test_an_sft_config_with_nonsense_values_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="keep_fraction must be in"):
        SFT(SFTConfig(keep_fraction=0.0))
    with pytest.raises(ValueError, match="job function 'nodots'"):
        SFT(SFTConfig(job_function="nodots"))
