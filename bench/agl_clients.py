"""Agent-Lightning 0.3.0 client processes doing no-op rollouts against `lq store-server` and `agl store`.

The same AL client loop (`bench/al_client_loop.py`, run in the baseline virtualenv) meets each server
in turn: `agl store` (its in-memory store behind FastAPI), `lq store-server --workers 1` and
`--workers 2` (over a redis-server of the bench's own). Throughput is all clients' rollouts over the
wall time of the slowest client, so the servers are compared with the clients unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .baseline import baseline_python
from .children import RedisServer, free_port
from .stats import table

LOOP = Path(__file__).with_name("al_client_loop.py")
ROOT = Path(__file__).parents[1]
TARGETS = ("agl store", "lq store-server --workers 1", "lq store-server --workers 2")


@dataclass
class AglClientsOptions:
    workdir: Path
    clients: tuple[int, ...] = (1, 4)
    rollouts: int = 300  # per client
    baseline_python: str | None = None
    targets: tuple[str, ...] = field(default=TARGETS)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url + "/v1/agl/health", timeout=1).read()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server at {url} did not come up (exit {proc.poll()})") from None
            time.sleep(0.1)


def _server(target: str, port: int, agl_python: str, redis_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "PYTHONPATH": str(ROOT)}
    if target == "agl store":
        agl = str(Path(agl_python).with_name("agl"))
        command = [agl, "store", "--host", "127.0.0.1", "--port", str(port)]
    else:
        workers = target.rsplit(" ", 1)[-1]
        command = [sys.executable, "-m", "lightning_queue.cli", "store-server", "--port", str(port)]
        command += ["--workers", workers, "--redis-url", redis_url, "--namespace", f"bench-{port}"]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _round(url: str, agl_python: str, clients: int, rollouts: int) -> dict[str, Any]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    command = [agl_python, str(LOOP), url, str(rollouts)]
    procs = [
        subprocess.Popen([*command, f"w{i}"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        for i in range(clients)
    ]
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"AL client loop against {url} exited {proc.returncode}")
        reports.append(json.loads(out.decode().strip().splitlines()[-1]))
    total = sum(int(r["rollouts"]) for r in reports)
    wall = max(float(r["seconds"]) for r in reports)
    return {"clients": clients, "rollouts": total, "seconds": wall, "rollouts_per_s": total / wall}


def run(opts: AglClientsOptions) -> dict[str, Any]:
    agl_python = baseline_python(opts.baseline_python)
    rows: list[dict[str, Any]] = []
    with RedisServer(opts.workdir / "redis-agl-clients") as redis:
        for target in opts.targets:
            port = free_port()
            proc = _server(target, port, agl_python, redis.url)
            try:
                _wait_healthy(f"http://127.0.0.1:{port}", proc)
                for clients in opts.clients:
                    result = _round(f"http://127.0.0.1:{port}", agl_python, clients, opts.rollouts)
                    rows.append({"target": target, **result})
            finally:
                proc.terminate()
                proc.wait(timeout=30)
    return {"scenario": "agl-clients", "rollouts_per_client": opts.rollouts, "rows": rows}


def render(result: dict[str, Any]) -> str:
    headers = ["server", "AL clients", "rollouts", "seconds", "rollouts/s"]
    body = [[r["target"], r["clients"], r["rollouts"], r["seconds"], r["rollouts_per_s"]] for r in result["rows"]]
    return "AL 0.3.0 clients, no-op rollouts (enqueue, dequeue, 1 span, succeed)\n\n" + table(
        headers, body, digits=(0, 0, 0, 2, 0)
    )
