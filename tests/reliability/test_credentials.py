"""`lq worker` pools and `lq status` against a Redis whose only user is an ACL user limited to `lq:*` keys:
credentials in the URL work; missing or wrong ones fail clearly; the password shows up nowhere."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.support.pools import PoolFactory
from tests.support.redis_servers import RedisServerProcess, ServerFactory
from tests.support.stores import ObserverFactory

PASSWORD = "pw-" + uuid.uuid4().hex[:16]


@pytest.fixture
def acl_server(redis_servers: ServerFactory, tmp_path: Path) -> RedisServerProcess:
    # alice may touch lq:* keys only; the default user is disabled.
    acl = tmp_path / "users.acl"
    acl.write_text(f"user default off\nuser alice on >{PASSWORD} ~lq:* &* +@all\n")
    return redis_servers("--aclfile", str(acl))


async def lq_status(namespace: str, url: str) -> subprocess.CompletedProcess[str]:
    """`lq status --json` as a user runs it, the URL in the environment."""
    command = [sys.executable, "-m", "lightning_queue.cli", "status", "--namespace", namespace, "--json"]
    env = {**os.environ, "LQ_REDIS_URL": url}
    return await asyncio.to_thread(subprocess.run, command, env=env, capture_output=True, text=True, timeout=60)


def url_of(server: RedisServerProcess, userinfo: str) -> str:
    return f"redis://{userinfo}127.0.0.1:{server.port}/0"


@pytest.mark.slow
async def test_worker_pool_and_lq_status_work_with_acl_credentials_in_the_url(
    acl_server: RedisServerProcess, observer_of: ObserverFactory, start_pool: PoolFactory, namespace: str
) -> None:
    url = url_of(acl_server, f"alice:{PASSWORD}@")
    observer = await observer_of(url)
    pool = start_pool(url, concurrency=2, url_in_env=True)
    ids = [(await observer.enqueue_rollout({"mark": str(i)})).rollout_id for i in range(4)]

    done = await observer.wait_for_rollouts(rollout_ids=ids, timeout=30)

    assert [r.status for r in done] == ["succeeded"] * 4
    status = await lq_status(namespace, url)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["rollouts"]["succeeded"] == 4 and len(report["workers"]) == 1
    records = [r.model_dump_json() for r in done]
    for rid in ids:
        records += [s.model_dump_json() for s in (await observer.query_spans(rid)).items]
    records += [w.model_dump_json() for w in await observer.query_workers()]
    for where, text in [
        ("lq status", status.stdout + status.stderr),
        ("pool log", pool.log()),
        ("records", "\n".join(records)),
    ]:
        assert PASSWORD not in text, f"the password leaked into {where}"


@pytest.mark.slow
@pytest.mark.parametrize("userinfo", ["", "alice:not-the-password-123@"], ids=["no credentials", "wrong password"])
async def test_worker_pool_without_valid_credentials_logs_the_auth_error_and_no_secret(
    acl_server: RedisServerProcess, start_pool: PoolFactory, userinfo: str
) -> None:
    pool = start_pool(url_of(acl_server, userinfo), url_in_env=True)

    # Credentials do not heal by waiting: the pool refuses to start, saying why.
    assert await pool.wait(timeout=60) != 0
    line = next(line for line in pool.log().splitlines() if "refused our credentials" in line)
    print(f"\n{line}")
    assert "auth" in line.lower() or "password" in line.lower()
    assert "not-the-password-123" not in pool.log() and PASSWORD not in pool.log()
