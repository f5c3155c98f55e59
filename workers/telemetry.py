"""What a worker process reports about itself through `update_worker` (host, pid, cpu, memory)."""

from __future__ import annotations

import os
import platform
import socket
import time
from typing import Any

import psutil

_MB = 1 << 20
_GB = 1 << 30


class ProcessProbe:
    """Samples this process and its machine; cpu percentages are averaged since the previous sample."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._started = time.time()
        # The first cpu_percent() call only sets the baseline.
        self._process.cpu_percent(None)
        psutil.cpu_percent(None)

    def rss_mb(self) -> float:
        return float(self._process.memory_info().rss / _MB)

    def sample(self) -> dict[str, Any]:
        memory = self._process.memory_info()
        machine = psutil.virtual_memory()
        return {
            "timestamp": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "started_at": self._started,
            "cpu_pct": round(self._process.cpu_percent(None), 1),
            "mem_mb": round(memory.rss / _MB, 1),
            "threads": self._process.num_threads(),
            "cpu_cores": psutil.cpu_count(logical=False) or 0,
            "cpu_threads": psutil.cpu_count(logical=True) or 0,
            "cpu_usage_pct": psutil.cpu_percent(None),
            "mem_used_gb": round(machine.used / _GB, 2),
            "mem_total_gb": round(machine.total / _GB, 2),
            "mem_pct": machine.percent,
        }
