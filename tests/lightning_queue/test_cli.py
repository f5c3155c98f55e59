"""The `lq` command line: help, version and `lq status` against a real Redis."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from lightning_queue import RedisLightningStore, __version__
from lightning_queue.cli import main


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("status", "worker", "proxy", "serve-model", "demo", "trainer"):
        assert name in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


async def test_status_reports_queue_rollouts_and_workers(redis_url: str) -> None:
    namespace = f"cli-{uuid.uuid4().hex[:8]}"
    store = RedisLightningStore(redis_url, namespace=namespace, scan_debounce_seconds=0)
    try:
        for i in range(3):
            await store.enqueue_rollout({"i": i})
        # A worker's claim stays leased (pending in the group) until its attempt ends.
        claims = await store.claim(consumer="w-status", worker_id="w-status", count=1, block_ms=10)
        assert len(claims) == 1
        await store.update_worker("w-status", heartbeat_stats={"host": "h1", "pid": 42, "in_flight": 1})

        # The CLI runs its own event loop, so it runs in a thread beside this test's loop.
        args = ["status", "--redis-url", redis_url, "--namespace", namespace]
        result = await asyncio.to_thread(CliRunner().invoke, main, [*args, "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["queue_depth"] == 2
        assert report["in_flight_entries"] == 1
        assert report["rollouts"]["queuing"] == 2 and report["rollouts"]["preparing"] == 1
        assert [w["worker_id"] for w in report["workers"]] == ["w-status"]
        assert report["workers"][0]["status"] == "busy"

        text = await asyncio.to_thread(CliRunner().invoke, main, args)
        assert text.exit_code == 0
        assert "2 waiting, 1 claimed" in text.output
        assert "w-status" in text.output and "pid=42" in text.output
    finally:
        await store.purge()
        await store.aclose()


def test_status_reads_url_and_namespace_from_environment(redis_url: str) -> None:
    namespace = f"cli-env-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(main, ["status", "--json"], env={"LQ_REDIS_URL": redis_url, "LQ_NAMESPACE": namespace})
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["namespace"] == namespace


def test_status_with_malformed_url_fails_without_leaking_the_password() -> None:
    result = CliRunner().invoke(main, ["status", "--redis-url", "redis://u:hunter2@127.0.0.1:99999/0"])
    assert result.exit_code == 1
    assert "malformed Redis URL" in result.output
    assert "hunter2" not in result.output


def test_every_lazy_command_loads_and_has_help() -> None:
    from lightning_queue.cli import LAZY_COMMANDS

    for name in LAZY_COMMANDS:
        result = CliRunner().invoke(main, [name, "--help"])
        assert result.exit_code == 0, f"lq {name} --help: {result.output}"
        assert "Usage:" in result.output


def test_version_comes_from_one_place() -> None:
    from importlib.metadata import version

    from lightning_queue._version import __version__ as declared

    result = CliRunner().invoke(main, ["--version"])
    assert result.output.split()[-1] == declared == __version__
    # pip wrote the installed metadata from pyproject, which reads the same attribute.
    assert version("lightning-queue") == declared


def test_pyproject_reads_the_version_from_the_package() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "lightning_queue._version.__version__"}


def test_help_imports_no_command_and_no_torch() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from lightning_queue.cli import main; "
        "assert CliRunner().invoke(main, ['--help']).exit_code == 0; "
        "print(sorted(m for m in ('torch', 'transformers', 'workers', 'algorithms', 'lightning_queue.trainer') "
        "if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
