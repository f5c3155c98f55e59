"""Jobs the SFT tests run in real `lq trainer` processes (imported from the repository root).

They stand in for `algorithms.sft.job.fine_tune` where a test is about the queue, not about torch.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


def where(**kwargs: Any) -> dict[str, Any]:
    """Which process ran the job, its parent, and the arguments as the job received them."""
    return {"pid": os.getpid(), "ppid": os.getppid(), "kwargs": kwargs}


def record_success(job: Any, connection: Any, result: Any) -> None:
    """An allowlisted success callback; what it prints lands in the trainer's log."""
    print(f"lq-test-success-callback for {job.id}", flush=True)


def explode(message: str) -> None:
    raise ValueError(message)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def fake_fine_tune(
    *, base_model: str, output_dir: str, samples: list[dict[str, Any]], **settings: Any
) -> dict[str, Any]:
    """Write a marker "checkpoint" recording what it was trained on, like the real job's result."""
    target = Path(output_dir)
    target.mkdir(parents=True)
    (target / "trained-on.json").write_text(json.dumps({"base_model": base_model, "samples": samples}))
    return {
        "checkpoint": str(target),
        "metrics": {"steps": 1, "samples": len(samples), "loss_last": 0.5, "pid": os.getpid(), **settings},
    }


def broken_fine_tune(**kwargs: Any) -> dict[str, Any]:
    raise RuntimeError(f"CUDA out of memory while training on {len(kwargs['samples'])} samples")
