"""redis-server processes of the tests' own, on free loopback ports, stopped by pid."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServerProcess:
    """A redis-server of the test's own on a free loopback port, stopped by pid."""

    def __init__(self, workdir: Path, *extra_args: str) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = self.workdir / f"redis-{self.port}.log"
        log.unlink(missing_ok=True)
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        if not any(a == "--save" for a in self.extra_args):
            args += ["--save", "", "--appendonly", "no"]
        args += ["--logfile", str(log)]
        self.proc = subprocess.Popen([*args, *self.extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # The log line works for every setup (password, ACL, TLS only) where a plain PING would not.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if log.exists() and "Ready to accept connections" in log.read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        output = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"redis-server did not start on port {self.port}: {output}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


ServerFactory = Callable[..., RedisServerProcess]


def crash(server: RedisServerProcess) -> None:
    """SIGKILL a redis-server: no shutdown save, no final AOF flush, like a crashed process."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(timeout=10)
    server.proc = None
