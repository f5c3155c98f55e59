"""How a new checkpoint reaches the inference server between training iterations.

- `LocalServerReloader`: `lq serve-model` swaps weights in place (`POST /v1/load`): seconds, no restart.
- `VllmReloader`: vLLM cannot swap full weights in place, so it restarts `vllm serve <checkpoint>` on
  the same port under the same served model name (the proxy's model list stays valid; give that
  model `extra_body={"return_token_ids": True}` so vLLM >= 0.10.2 returns token ids). Written for
  GPU machines; tested here with a stand-in executable in place of `vllm`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from .serving import healthy

logger = logging.getLogger(__name__)


class Reloader(Protocol):
    async def load(self, checkpoint: Path) -> None: ...


def _post_json(url: str, body: dict[str, object], timeout: float, token: str | None = None) -> tuple[int, str]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode(errors="replace")


class LocalServerReloader:
    """Tell `lq serve-model` at `base_url` (ending in /v1) to load a checkpoint directory.

    `admin_token` is the server's (its --admin-token-file, or ModelServerProcess.admin_token); the
    checkpoint must lie inside the server's --checkpoint-root.
    """

    def __init__(self, base_url: str, *, timeout: float = 300.0, admin_token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.admin_token = admin_token

    async def load(self, checkpoint: Path) -> None:
        status, text = await asyncio.to_thread(self._post_load, checkpoint)
        if status != 200:
            raise RuntimeError(
                f"model server at {self.base_url} refused checkpoint {checkpoint}: HTTP {status} {text[:500]}"
            )

    def _post_load(self, checkpoint: Path) -> tuple[int, str]:
        # Absolute: the server takes relative paths from its checkpoint root, not from our working directory.
        body: dict[str, object] = {"path": str(checkpoint.absolute())}
        return _post_json(f"{self.base_url}/load", body, self.timeout, self.admin_token)


class VllmReloader:
    """Restart `vllm serve` on each checkpoint.

    Args:
        port: where vLLM listens (the proxy's upstream URL points there).
        served_model_name: the name the proxy's model list asks for.
        extra_args: more `vllm serve` arguments (e.g. `--gpu-memory-utilization 0.7`).
        executable: the vllm command (tests pass a stand-in).
        health_timeout: how long a start may take before it is an error.
    """

    def __init__(
        self,
        *,
        port: int,
        served_model_name: str = "policy",
        extra_args: Sequence[str] = (),
        executable: Sequence[str] = ("vllm",),
        health_timeout: float = 600.0,
    ) -> None:
        self.port = port
        self.served_model_name = served_model_name
        self.extra_args = list(extra_args)
        self.executable = list(executable)
        self.health_timeout = health_timeout
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self, checkpoint: Path) -> list[str]:
        return [
            *self.executable, "serve", str(checkpoint), "--port", str(self.port),
            "--served-model-name", self.served_model_name, *self.extra_args,
        ]  # fmt: skip

    async def load(self, checkpoint: Path) -> None:
        await self.stop()
        self.process = await asyncio.to_thread(subprocess.Popen, self.command(checkpoint), start_new_session=True)
        await self._wait_healthy()

    async def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.health_timeout
        url = f"http://127.0.0.1:{self.port}/health"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{' '.join(self.executable)} exited with code {self.process.returncode} while starting"
                )
            if await asyncio.to_thread(healthy, url):
                return
            await asyncio.sleep(0.5)
        await self.stop()
        raise TimeoutError(f"vLLM did not become healthy at {url} within {self.health_timeout:.0f}s")

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            await asyncio.to_thread(process.wait)
