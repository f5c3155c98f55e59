"""Load the Lua transitions: each script is `common.lua` followed by its own body."""

from __future__ import annotations

from functools import cache
from importlib import resources

SCRIPT_NAMES = (
    "create",
    "dequeue",
    "claim",
    "start_attempt",
    "update_rollout",
    "update_attempt",
    "add_spans",
    "sweep",
    "read_rollouts",
    "update_resources",
    "release",
)


@cache
def script_source(name: str) -> str:
    folder = resources.files("lightning_queue.store") / "scripts"
    common = (folder / "common.lua").read_text(encoding="utf-8")
    body = (folder / f"{name}.lua").read_text(encoding="utf-8")
    return f"{common}\n{body}"
