"""Agent-Lightning 0.3.0's own client, from a virtualenv of its own, against `lq store-server` processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).parent / "scripts"
VENV = Path(os.environ.get("LQ_CACHE_DIR", Path.home() / ".cache" / "lightning-queue")) / "agentlightning-0.3.0"


@pytest.fixture(scope="module")
def agl_python() -> str:
    from bench.baseline import baseline_python

    try:
        return baseline_python(venv=VENV)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot create the agentlightning==0.3.0 virtualenv offline: {exc}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_agentlightning_client_drives_the_lifecycle(agl_python: str, redis_url: str, workers: int) -> None:
    port = _free_port()
    namespace = f"agl-{os.getpid()}-{workers}-{time.monotonic_ns() % 10**6}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])}
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lightning_queue.cli",
            "store-server",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--redis-url",
            redis_url,
            "--namespace",
            namespace,
        ],
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(url + "/v1/agl/health", timeout=1).read()
                break
            except OSError:
                assert time.monotonic() < deadline, "lq store-server did not come up"
                time.sleep(0.1)
        run = subprocess.run(
            [agl_python, str(SCRIPTS / "agl_lifecycle.py"), url], capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0 and "OK" in run.stdout, run.stdout + run.stderr
    finally:
        server.terminate()
        server.wait(timeout=15)
