"""Load the Lua transitions: each script is the generated prelude, `common.lua`, then its own body."""

from __future__ import annotations

from functools import cache
from importlib import resources

from .embedded import LUA_STREAM_ENTRIES
from .schema import lua_prelude

SCRIPT_NAMES = (
    "create",
    "dequeue",
    "claim",
    "start_attempt",
    "update_rollout",
    "update_attempt",
    "add_spans",
    "finish",
    "sweep",
    "read_rollouts",
    "read_spans",
    "update_resources",
    "release",
    "delete_rollouts",
    "pause",
    "staleness",
)


def script_body(name: str) -> str:
    """The script as written in its .lua file, without what the loader prepends."""
    folder = resources.files("lightning_queue.store") / "scripts"
    return (folder / f"{name}.lua").read_text(encoding="utf-8")


@cache
def script_source(name: str) -> str:
    return "\n".join([lua_prelude(), LUA_STREAM_ENTRIES, script_body("common"), script_body(name)])
