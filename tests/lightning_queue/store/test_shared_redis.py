"""Services that exist to share a bus never start a private Redis: without one they wait, say so, and
connect once it is up (`lq worker`, `lq proxy`, `lq trainer`; `lq status` reports it). The embedded
default stays for one-process-tree entry points (see test_connection.py)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from lightning_queue.store import connection
from lightning_queue.store.connection import ping_error, resolve_shared_url, wait_for_redis
from tests.support.redis_servers import REDIS_SERVER, RedisServerProcess, free_port

needs_redis_server = pytest.mark.skipif(REDIS_SERVER is None, reason="no redis-server binary on PATH")


@pytest.fixture
def no_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse() -> str:
        raise AssertionError("a shared service started an embedded Redis")

    monkeypatch.setattr(connection, "start_embedded_server", refuse)
    # As if nothing answered at 127.0.0.1:6379 (this machine may run one there).
    monkeypatch.setattr(connection, "_answers", lambda *a, **k: False)


def test_shared_services_resolve_to_the_default_address_never_to_an_embedded_server(no_embedded: None) -> None:
    assert resolve_shared_url() == connection.DEFAULT_LOCAL_URL
    assert resolve_shared_url("redis://127.0.0.1:7000/1") == "redis://127.0.0.1:7000/1"


def test_shared_services_take_the_environment_like_everyone_else(
    no_embedded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7002/0")
    assert resolve_shared_url() == "redis://127.0.0.1:7002/0"
    monkeypatch.setenv("LQ_REDIS_URL", "redis://127.0.0.1:7001/0")
    assert resolve_shared_url() == "redis://127.0.0.1:7001/0"
    with pytest.raises(ValueError, match="Redis URL"):
        resolve_shared_url("http://nope")


@pytest.mark.parametrize(
    "argv",
    [
        ["worker", "--agent", "workers.examples:echo"],
        ["proxy", "--model", "m=http://127.0.0.1:9/v1"],
        ["trainer"],
    ],
    ids=["worker", "proxy", "trainer"],
)
def test_with_no_url_given_each_service_waits_for_the_default_address(
    argv: list[str], no_embedded: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    waited: list[tuple[str, str]] = []

    def record(url: str, *, who: str, **kwargs: Any) -> None:
        waited.append((url, who))
        raise KeyboardInterrupt  # Ctrl-C while waiting

    # Each CLI imported the function by name; patch it where each one looks it up.
    for module in ("workers.cli", "algorithms.trainer_worker", "lightning_queue.store.connection"):
        monkeypatch.setattr(f"{module}.wait_for_redis", record, raising=False)
    result = CliRunner().invoke(main, argv)
    assert waited == [(connection.DEFAULT_LOCAL_URL, f"lq {argv[0]}")], result.output
    assert result.exit_code != 0


def test_status_without_a_reachable_redis_says_where_it_looked(no_embedded: None) -> None:
    port = free_port()
    result = CliRunner().invoke(main, ["status", "--redis-url", f"redis://:pw-s3cret@127.0.0.1:{port}/0"])
    assert result.exit_code == 1
    assert f"no Redis answers at redis://:***@127.0.0.1:{port}/0" in result.output
    assert "pw-s3cret" not in result.output


def test_wait_for_redis_backs_off_and_says_what_it_waits_for(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    answers = iter(["Connection refused"] * 4 + [None])
    sleeps: list[float] = []
    monkeypatch.setattr(connection, "ping_error", lambda url: next(answers))
    monkeypatch.setattr(connection.time, "sleep", sleeps.append)  # type: ignore[attr-defined]
    wait_for_redis("redis://u:hunter2-pw@10.0.0.1:6379/0", who="lq worker", first_delay=1, max_delay=4)
    assert sleeps == [1, 2, 4, 4]
    err = capsys.readouterr().err
    assert "hunter2-pw" not in err
    assert err.count("lq worker: no Redis answers at redis://u:***@10.0.0.1:6379/0 (Connection refused)") == 4
    assert "retrying in 4.0 s" in err and "Ctrl-C stops" in err
    assert err.rstrip().endswith("answers now")


@needs_redis_server
def test_wait_for_redis_refuses_bad_credentials_at_once(redis_url: str) -> None:
    with pytest.raises(ConnectionError, match="credentials"):
        ping_error(redis_url.replace("redis://", "redis://nobody:wrong-pw@"))


def start_worker(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k not in ("LQ_REDIS_URL", "REDIS_URL")}
    command = [sys.executable, "-m", "lightning_queue.cli", "worker", "--agent", "workers.examples:echo", *args]
    with log_path.open("wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


@needs_redis_server
@pytest.mark.slow
async def test_lq_worker_started_before_redis_waits_then_serves_once_it_is_up(tmp_path: Path) -> None:
    server = RedisServerProcess(tmp_path / "redis", "--requirepass", "late-s3cret")
    url = f"redis://:late-s3cret@127.0.0.1:{server.port}/0"
    namespace = f"late-{uuid.uuid4().hex[:8]}"
    log_path = tmp_path / "worker.log"
    worker = start_worker(["--redis-url", url, "--namespace", namespace], log_path)
    try:
        deadline = time.monotonic() + 60
        while "retrying in" not in log_path.read_text():
            assert worker.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            await asyncio.sleep(0.1)
        text = log_path.read_text()
        assert f"no Redis answers at redis://:***@127.0.0.1:{server.port}/0" in text
        assert "late-s3cret" not in text and "embedded" not in text
        server.start()
        store = RedisLightningStore(url, namespace=namespace)
        try:
            rollout = await store.enqueue_rollout({"q": "after the wait"})
            done = await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=90)
            assert [r.status for r in done] == ["succeeded"], log_path.read_text()
            await store.purge()
        finally:
            await store.aclose()
        assert "answers now" in log_path.read_text()
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
        server.stop()
