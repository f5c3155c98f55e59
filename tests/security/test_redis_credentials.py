"""Password, ACL and TLS Redis setups: the store and `lq status` work with credentials, fail clearly without."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis.exceptions
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.cli import main
from tests.support.redis_servers import REDIS_SERVER, RedisServerProcess

pytestmark = pytest.mark.skipif(REDIS_SERVER is None, reason="no redis-server binary on PATH")

PASSWORD = "pw-" + uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    server = RedisServerProcess(tmp_path_factory.mktemp("redis-pw"), "--requirepass", PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def acl_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServerProcess]:
    # alice may touch lq:* keys only; the default user is disabled.
    acl = tmp_path_factory.mktemp("redis-acl") / "users.acl"
    acl.write_text(f"user default off\nuser alice on >{PASSWORD} ~lq:* &* +@all\n")
    server = RedisServerProcess(acl.parent, "--aclfile", str(acl))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServerProcess, Path]]:
    folder = tmp_path_factory.mktemp("redis-tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    server = RedisServerProcess(folder)
    tls_port = server.port
    server.extra_args = (
        "--port", "0", "--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
        "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no",
    )  # fmt: skip
    server.start()
    yield server, cert
    server.stop()


async def exercise(store: RedisLightningStore) -> None:
    """One full lifecycle: enqueue, claim, span, finish, wait, purge."""
    rollout = await store.enqueue_rollout({"q": 1})
    claimed = await store.dequeue_rollout(worker_id="w1")
    assert claimed is not None
    await store.update_attempt(claimed.rollout_id, claimed.attempt.attempt_id, status="succeeded")
    [done] = await store.wait_for_rollouts(rollout_ids=[rollout.rollout_id], timeout=5)
    assert done.status == "succeeded"
    assert await store.sweep() == (0, 0)
    assert await store.purge() > 0
    await store.aclose()


def port_url(server: RedisServerProcess, userinfo: str = "") -> str:
    return f"redis://{userinfo}127.0.0.1:{server.port}/0"


async def test_password_in_url_works(password_server: RedisServerProcess) -> None:
    await exercise(
        RedisLightningStore(port_url(password_server, f":{PASSWORD}@"), namespace="pw", scan_debounce_seconds=0)
    )


async def test_missing_password_fails_clearly(password_server: RedisServerProcess) -> None:
    store = RedisLightningStore(port_url(password_server), namespace="pw")
    with pytest.raises(redis.exceptions.AuthenticationError, match=r"(?i)auth"):
        await store.enqueue_rollout("x")


async def test_wrong_password_fails_without_echoing_it(password_server: RedisServerProcess) -> None:
    store = RedisLightningStore(port_url(password_server, ":not-the-password@"), namespace="pw")
    with pytest.raises(redis.exceptions.RedisError) as info:
        await store.enqueue_rollout("x")
    assert "not-the-password" not in str(info.value)


async def test_acl_user_limited_to_lq_keys_runs_the_whole_lifecycle(acl_server: RedisServerProcess) -> None:
    url = port_url(acl_server, f"alice:{PASSWORD}@")
    await exercise(RedisLightningStore(url, namespace="acl", scan_debounce_seconds=0))
    # The limit is real: the same user cannot touch a key outside lq:*.
    store = RedisLightningStore(url, namespace="acl")
    with pytest.raises(redis.exceptions.NoPermissionError):
        await store._redis.set("outside", "1")
    await store.aclose()


def test_lq_status_with_acl_credentials_and_without(acl_server: RedisServerProcess) -> None:
    good = CliRunner().invoke(main, ["status", "--redis-url", port_url(acl_server, f"alice:{PASSWORD}@")])
    assert good.exit_code == 0, good.output
    bad = CliRunner().invoke(main, ["status", "--redis-url", port_url(acl_server, "alice:wrong@")])
    assert bad.exit_code == 1
    assert PASSWORD not in bad.output and "wrong" not in bad.output.replace("wrong number", "")


async def test_tls_with_the_test_ca_works(tls_server: tuple[RedisServerProcess, Path]) -> None:
    server, cert = tls_server
    url = f"rediss://127.0.0.1:{server.port}/0?ssl_ca_certs={cert}&ssl_cert_reqs=required"
    await exercise(RedisLightningStore(url, namespace="tls", scan_debounce_seconds=0))


async def test_tls_with_an_untrusted_certificate_fails(tls_server: tuple[RedisServerProcess, Path]) -> None:
    server, _cert = tls_server
    store = RedisLightningStore(f"rediss://127.0.0.1:{server.port}/0?ssl_cert_reqs=required", namespace="tls")
    with pytest.raises(redis.exceptions.ConnectionError, match=r"(?i)certificate|ssl"):
        await asyncio.wait_for(store.enqueue_rollout("x"), 60)
