"""The Agent-Lightning 0.3.0 virtualenv the baseline runs in, created by the bench on first use.

It pulls many packages (about 75 s here), so it lives apart from the project's venv, in
`bench/.venv/agentlightning-0.3.0`: under a `.venv` directory, which git (`.gitignore`), ruff and
pytest already skip. `--baseline-python` or `LQ_BENCH_BASELINE_PYTHON` points at a prepared one
instead. The OpenTelemetry stack is pinned to agentlightning 0.3.0's release month: newer exporters
bind their endpoint at construction, which breaks its store exporter.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .children import REPO_ROOT

AGENTLIGHTNING = "agentlightning==0.3.0"
PINS = [
    "opentelemetry-api==1.39.1",
    "opentelemetry-sdk==1.39.1",
    "opentelemetry-exporter-otlp==1.39.1",
    "opentelemetry-exporter-otlp-proto-common==1.39.1",
    "opentelemetry-exporter-otlp-proto-grpc==1.39.1",
    "opentelemetry-exporter-otlp-proto-http==1.39.1",
    "opentelemetry-proto==1.39.1",
    "opentelemetry-instrumentation==0.60b1",
    "opentelemetry-semantic-conventions==0.60b1",
]
DEFAULT_VENV = REPO_ROOT / "bench" / ".venv" / "agentlightning-0.3.0"
_MARKER = ".lq-bench-ready"


def _spec() -> str:
    return "\n".join([AGENTLIGHTNING, *PINS]) + "\n"


def baseline_python(explicit: str | None = None, *, venv: Path = DEFAULT_VENV, create: bool = True) -> str:
    """The python of a virtualenv with agentlightning 0.3.0: explicit, from the environment, or ours."""
    chosen = explicit or os.environ.get("LQ_BENCH_BASELINE_PYTHON")
    if chosen:
        return chosen
    python = venv / "bin" / "python"
    marker = venv / _MARKER
    # The marker holds the pins it was built with, so changing them rebuilds the venv.
    if python.exists() and marker.exists() and marker.read_text() == _spec():
        return str(python)
    if not create:
        raise FileNotFoundError(f"no baseline virtualenv at {venv}; run `python -m bench lifecycle` once to create it")
    print(f"bench: creating the baseline virtualenv {venv} ({AGENTLIGHTNING}; takes a minute or two)", file=sys.stderr)
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    constraints = venv / "constraints.txt"
    constraints.write_text("\n".join(PINS) + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", AGENTLIGHTNING, "-c", str(constraints)], check=True)
    marker.write_text(_spec())
    return str(python)


def baseline_available(explicit: str | None = None) -> bool:
    """Whether a baseline python exists without creating one (the smoke test uses this)."""
    try:
        python = baseline_python(explicit, create=False)
    except FileNotFoundError:
        return False
    return Path(python).exists()
