"""The Lua prelude is generated from schema.py; the scripts use it instead of spelling names themselves."""

from __future__ import annotations

import dataclasses
import re

import pytest

from lightning_queue.store import AttemptNotFound, RedisLightningStore, RolloutNotFound, embedded, schema
from lightning_queue.store.keys import Keys
from lightning_queue.store.scripts import SCRIPT_NAMES, script_body, script_source
from lightning_queue.store.transitions import NewRollout, NewSpan, ScriptConfig
from lightning_queue.types import ATTEMPT_STATUSES, QUEUED_STATUSES, ROLLOUT_STATUSES, TERMINAL_STATUSES

LUA_FILES = ("common", *SCRIPT_NAMES)


def _prelude_values() -> dict[str, str]:
    """name -> right-hand side of each `local NAME = ...` line of the generated prelude."""
    return dict(re.findall(r"^local (\w+) = (.+)$", schema.lua_prelude(), flags=re.M))


def test_the_prelude_defines_every_schema_string_and_number_as_python_has_it() -> None:
    values = _prelude_values()
    for name, value in schema.LUA_STRINGS.items():
        assert values[name] == f"'{value}'"
    assert values["DONE_MAXLEN"] == str(schema.DONE_MAXLEN)
    assert values["GROUP"] == "'workers'"


def test_the_prelude_status_sets_are_the_contracts() -> None:
    values = _prelude_values()
    lookup = {name: set(re.findall(r"(\w+) = true", values[name])) for name in schema.LUA_SETS}
    listed = {name: re.findall(r"'(\w+)'", values[f"{name}_LIST"]) for name in schema.LUA_SETS}
    assert lookup["TERMINAL"] == set(TERMINAL_STATUSES)
    assert lookup["QUEUED"] == set(QUEUED_STATUSES)
    assert lookup["RUNNING"] == {"preparing", "running"} <= set(ROLLOUT_STATUSES)
    assert lookup["LIVE_ATTEMPT"] == {"preparing", "running"} <= set(ATTEMPT_STATUSES)
    for name, members in schema.LUA_SETS.items():
        assert listed[name] == list(members)


def test_python_key_names_are_built_from_the_same_suffixes() -> None:
    keys = Keys("ns")
    assert keys.prefix == "lq:{ns}:"
    assert keys.queue == keys.prefix + schema.KEY_QUEUE
    assert keys.rollout("r") == keys.prefix + schema.KEY_ROLLOUT + "r"
    assert keys.attempt("r", "a") == keys.prefix + schema.KEY_ATTEMPT + "r:a"
    assert keys.status_index("running") == keys.prefix + schema.KEY_STATUS_INDEX + "running"


@pytest.mark.parametrize("name", LUA_FILES)
def test_no_script_spells_a_name_the_prelude_defines(name: str) -> None:
    body = script_body(name)
    code = "\n".join(line.split("--", 1)[0] for line in body.splitlines())
    for value in schema.LUA_STRINGS.values():
        assert f"'{value}'" not in code and f'"{value}"' not in code, f"{name}.lua spells {value!r}"
    assert str(schema.DONE_MAXLEN) not in code
    # A table of statuses (`{succeeded = true, ...}` or `{'preparing', 'running'}`) belongs in the prelude.
    statuses = "|".join(set(ROLLOUT_STATUSES) | set(ATTEMPT_STATUSES))
    assert not re.search(rf"\{{\s*({statuses})\s*=\s*true", code), f"{name}.lua writes a status set"
    assert not re.search(rf"\{{\s*'({statuses})'\s*,", code), f"{name}.lua writes a status list"


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_each_script_is_loaded_after_the_prelude_and_common(name: str) -> None:
    source = script_source(name)
    assert source.startswith(schema.lua_prelude())
    assert source.index(script_body("common")) < source.index(script_body(name))


async def test_script_errors_arrive_as_typed_not_found_errors(store: RedisLightningStore) -> None:
    with pytest.raises(RolloutNotFound, match="Rollout ro-missing not found"):
        await store.update_attempt("ro-missing", "at-x", status="running")
    rollout = await store.enqueue_rollout({"q": 1})
    with pytest.raises(AttemptNotFound, match=f"No attempts found for rollout {rollout.rollout_id}"):
        await store.update_attempt(rollout.rollout_id, "latest", status="running")
    started = await store.start_attempt(rollout.rollout_id)
    with pytest.raises(AttemptNotFound, match=f"Attempt at-nope not found in rollout {rollout.rollout_id}"):
        await store.update_attempt(rollout.rollout_id, "at-nope", status="running")
    assert started.attempt.sequence_id == 1
    with pytest.raises(ValueError, match="does not exist in namespace"):
        await store.update_rollout("ro-missing", status="failed")


def test_the_embedded_server_names_the_extra_when_fakeredis_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embedded, "_server", None)
    monkeypatch.setitem(__import__("sys").modules, "fakeredis", None)
    with pytest.raises(RuntimeError, match=re.escape("pip install lightning-queue[embedded]")):
        embedded.start_embedded_server()


def test_the_facade_packs_as_many_slots_per_record_as_the_scripts_stride() -> None:
    config = ScriptConfig(
        packed=b"c", max_attempts=1, retry_condition=(), timeout_seconds=None, unresponsive_seconds=None
    )
    rollout = NewRollout(rollout_id="ro-1", input=b"i", mode=None, resources_id=None, config=config, metadata=None)
    create = script_body("create")
    assert re.search(r"per rollout, (\d+) slots", create)[1] == str(len(rollout._slots()))  # type: ignore[index]
    assert f"for i = 6, #ARGV, {len(rollout._slots())} do" in create
    per_span = len(dataclasses.fields(NewSpan))
    assert re.search(r"per span, (\d+) slots", script_body("add_spans"))[1] == str(per_span)  # type: ignore[index]
    assert f"for i = 3, #ARGV, {per_span} do" in script_body("add_spans")
