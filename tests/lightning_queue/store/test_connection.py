"""URL resolution, secrets in messages, and the embedded fallback server."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import uuid

import pytest

from lightning_queue import RedisLightningStore
from lightning_queue.store import connection
from lightning_queue.store.connection import check_url, redact, resolve_url


def test_explicit_url_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LQ_REDIS_URL", "redis://127.0.0.9:6379/0")
    assert resolve_url("redis://127.0.0.1:7000/2") == "redis://127.0.0.1:7000/2"


def test_lq_redis_url_wins_over_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LQ_REDIS_URL", "redis://127.0.0.1:7001/0")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:7002/0")
    assert resolve_url() == "redis://127.0.0.1:7001/0"
    monkeypatch.delenv("LQ_REDIS_URL")
    assert resolve_url() == "redis://127.0.0.1:7002/0"


def test_local_redis_is_used_when_it_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_answers", lambda host, port, timeout=0.3: (host, port) == ("127.0.0.1", 6379))
    assert resolve_url() == connection.DEFAULT_LOCAL_URL


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:6379", "redis://", "redis://127.0.0.1:99999/0", "not a url", "redis://h:port/0"],
)
def test_malformed_url_is_a_clear_value_error(url: str) -> None:
    with pytest.raises(ValueError, match="Redis URL"):
        check_url(url)


def test_password_never_appears_in_errors_or_repr() -> None:
    url = "redis://alice:s3cret-pw@127.0.0.1:99999/0"
    with pytest.raises(ValueError) as info:
        check_url(url)
    assert "s3cret-pw" not in str(info.value)
    assert "s3cret-pw" not in redact("rediss://alice:s3cret-pw@example:6380/1")
    store = RedisLightningStore("redis://alice:s3cret-pw@127.0.0.1:6390/0")
    assert "s3cret-pw" not in repr(store)


def test_no_embedded_server_when_disallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_answers", lambda *a, **k: False)
    with pytest.raises(ConnectionError, match="LQ_REDIS_URL"):
        resolve_url(allow_embedded=False)


async def test_embedded_server_serves_a_store_and_a_child_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "_answers", lambda *a, **k: False)
    # The library never exports the URL itself: the caller hands it to its child (as WorkerPool does).
    monkeypatch.setenv("LQ_REDIS_URL", "")
    monkeypatch.delenv("LQ_REDIS_URL")
    namespace = f"emb-{uuid.uuid4().hex[:8]}"
    store = RedisLightningStore(namespace=namespace, scan_debounce_seconds=0)
    assert store.url is not None and store.url.startswith("redis://127.0.0.1:")
    assert store.url != connection.DEFAULT_LOCAL_URL
    rollout = await store.enqueue_rollout({"q": "from parent"})
    child = textwrap.dedent(
        f"""
        import asyncio, os
        from lightning_queue import RedisLightningStore
        async def main():
            store = RedisLightningStore(os.environ["LQ_REDIS_URL"], namespace={namespace!r})
            claimed = await store.dequeue_rollout(worker_id="child")
            await store.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="succeeded")
            print(claimed.rollout_id, claimed.input["q"])
        asyncio.run(main())
        """
    )
    assert "LQ_REDIS_URL" not in os.environ
    env = {**os.environ, "LQ_REDIS_URL": store.url}
    command = [sys.executable, "-c", child]
    out = await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [rollout.rollout_id, "from", "parent"]
    done = await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=5)
    assert [r.status for r in done] == ["succeeded"]
    await store.purge()
    await store.aclose()
