"""Start the local model server (`lq serve-model`) as a child process for algorithm scripts and the demo."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType

from lightning_queue.model_server.admin import ADMIN_TOKEN_ENV
from lightning_queue.model_server.cli import PARENT_PID_ENV


def healthy(url: str) -> bool:
    """True if GET `url` answers 200 within two seconds."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status) == 200
    except OSError:
        return False


def wait_until_healthy(url: str, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    """Poll `url` until it answers; fail early if `process` (the server) exits meanwhile."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server behind {url} exited with code {process.returncode} while starting")
        if healthy(url):
            return
        time.sleep(0.3)
    raise TimeoutError(f"nothing healthy answered at {url} within {timeout:.0f}s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ModelServerProcess:
    """`lq serve-model` in its own process (its generation threads do not share this one's GIL).

    with ModelServerProcess(threads=1, checkpoint_root="checkpoints/run") as server:
        server.url  # http://127.0.0.1:<port>/v1
        LocalServerReloader(server.url, admin_token=server.admin_token)

    With `checkpoint_root`, the child may hot-load checkpoints from that directory: it gets a fresh
    admin token (through its environment, not argv, where `ps` would show it) that only `admin_token`
    here knows. Without it, hot loading is off.
    """

    def __init__(
        self,
        model_dir: str | Path | None = None,
        *,
        threads: int = 1,
        start_timeout: float = 300.0,
        checkpoint_root: str | Path | None = None,
    ) -> None:
        self.model_dir = model_dir
        self.threads = threads
        self.start_timeout = start_timeout
        self.checkpoint_root = checkpoint_root
        self.admin_token = secrets.token_urlsafe(32) if checkpoint_root is not None else None
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        command = [sys.executable, "-m", "lightning_queue.cli", "serve-model", "--port", str(self.port)]
        command += ["--threads", str(self.threads)]
        if self.model_dir is not None:
            command += ["--model", str(self.model_dir)]
        env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
        env[PARENT_PID_ENV] = str(os.getpid())  # it stops by itself if we die without stopping it
        if self.checkpoint_root is not None and self.admin_token is not None:
            command += ["--checkpoint-root", str(self.checkpoint_root)]
            env[ADMIN_TOKEN_ENV] = self.admin_token
        self.process = subprocess.Popen(command, start_new_session=True, env=env)
        try:
            wait_until_healthy(f"http://127.0.0.1:{self.port}/health", self.start_timeout, self.process)
        except BaseException:
            self.stop()
            raise
        return self.url

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def __enter__(self) -> ModelServerProcess:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
