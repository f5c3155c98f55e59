"""Percentiles, medians, the machine description, result files and the printed tables."""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN when there are no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100 * len(ordered))))
    return float(ordered[rank - 1])


def latency_summary(values_ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50": percentile(values_ms, 50),
        "p90": percentile(values_ms, 90),
        "p99": percentile(values_ms, 99),
        "max": max(values_ms) if values_ms else float("nan"),
        "n": float(len(values_ms)),
    }


def median(values: Iterable[float]) -> float:
    clean = [v for v in values if v == v]  # drop NaN
    return float(statistics.median(clean)) if clean else float("nan")


def machine() -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": _cpu_model(),
    }
    try:
        import psutil

        info["memory_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        info["redis"] = out.strip()
    except (OSError, subprocess.SubprocessError):
        info["redis"] = "unknown"
    try:
        import redis
        from redis.utils import HIREDIS_AVAILABLE

        info["redis_py"] = redis.__version__
        # hiredis parses replies in C; without it redis-py's pure-Python parser costs the clients CPU.
        info["redis_py_parser"] = "hiredis" if HIREDIS_AVAILABLE else "python"
    except ImportError:
        pass
    return info


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(result: dict[str, Any], out_dir: Path, scenario: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = out_dir / f"{scenario}-{stamp}.json"
    text = json.dumps(result, indent=2, sort_keys=False, default=str)
    path.write_text(text)
    (out_dir / f"{scenario}-latest.json").write_text(text)
    return path


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if value != value:
            return "-"
        return f"{value:,.{digits}f}"
    if value is None:
        return "-"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int | Sequence[int] = 1) -> str:
    """A Markdown table (readable in a terminal, pasteable into docs/benchmarks.md).

    `digits`: decimals of float cells, one number for all columns or one per column.
    """
    per_column = [digits] * len(headers) if isinstance(digits, int) else list(digits)
    cells = [[str(h) for h in headers]] + [[fmt(c, per_column[i]) for i, c in enumerate(row)] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|")
    return "\n".join(lines)
