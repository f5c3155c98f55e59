"""What Python and the Lua scripts must agree on: key suffixes, status sets, the consumer group, error
codes. The Lua prelude is generated from here, so the two cannot drift apart."""

from __future__ import annotations

from ..types.core import ATTEMPT_STATUSES, QUEUED_STATUSES, ROLLOUT_STATUSES, RUNNING_STATUSES, TERMINAL_STATUSES

# Every key of a namespace starts "lq:{<ns>}:" (the hash tag keeps a namespace on one cluster slot).
KEY_ROOT = "lq"

# Suffixes after the prefix. The per-record ones end in ':' and are followed by an id.
KEY_QUEUE = "queue"
KEY_DONE = "done"
KEY_META = "meta"
KEY_ALL_ROLLOUTS = "idx:all"
KEY_STATUS_INDEX = "idx:status:"
# Query indexes (sorted sets, kept by the scripts in the same call as the record they index):
# rollouts without an end_time by start_time, rollouts with one by end_time, and per terminal status
# by end_time; an attempt's span ids by sequence id (a rollout's trace merges its attempts').
KEY_OPEN_INDEX = "idx:open"
KEY_ENDED_INDEX = "idx:ended"
KEY_END_INDEX = "idx:end:"
KEY_SPAN_ORDER = "spo:"
# Rollouts by start_time per mode; those without a mode are under this name (no mode is spelled so).
KEY_MODE_INDEX = "idx:mode:"
NO_MODE = "_"
KEY_ROLLOUT = "ro:"
KEY_ATTEMPT = "at:"
KEY_ATTEMPTS = "ats:"
KEY_SPANS = "sp:"
KEY_SEQUENCE = "seq:"
KEY_RESOURCES = "res:"
# Resources ids by update_time (get_latest_resources reads its top) and by create_time (the
# listing's default order). The second name has a ':' after "res", so no resources id can spell it.
KEY_RESOURCES_INDEX = "res:idx"
KEY_RESOURCES_CREATED = "idx:res:created"
KEY_WORKER = "wk:"
KEY_WORKERS_INDEX = "wk:idx"
KEY_SWEEP_LOCK = "lock:sweep"
# The namespace's retention policy (a hash; absent = keep everything, the contract's default).
KEY_RETENTION = "retention"
# Spaces automatic retention steps across processes (a string with PX, like the sweep lock).
KEY_RETENTION_LOCK = "lock:retention"
# Read marks: rollout id -> until when a wait holds it (reads.py); retention spares marked rollouts.
KEY_READS = "reads"
# Issue 17. The policy version: a counter every resources update raises by one (0 = no update yet).
KEY_POLICY_VERSION = "policy:version"
# The claims pause: a string holding its holder's token, with a TTL so a crashed holder cannot stop the
# namespace for good; the holder key (no TTL) outlives it, so the first claim after an expiry can tell.
KEY_PAUSE = "claims:pause"
KEY_PAUSE_HOLDER = "claims:holder"
# Wake-ups of gated workers (resume, version bumps, slots given back): a short stream they XREAD BLOCK on.
KEY_GATE = "gate"
# The staleness bound (a hash; absent = no bound, today's behaviour).
KEY_STALENESS = "staleness"
# Each running LLM proxy's drain status (msgpack, with a TTL), the proxies by expiry (zset), and the token
# of the latest drain (llm_proxy/registry.py; Python only, no script reads them).
KEY_PROXY = "px:"
KEY_PROXIES_INDEX = "pxidx"
KEY_DRAIN_REQUEST = "pxdrain"

# The consumer group every worker reads the queue stream through.
GROUP = "workers"
# Entries the claim gate refused (issue 17) stay pending under this consumer until it opens; no worker
# can be named so (':' is not allowed in ids), and the watchdog gives them back to it, not to the queue tail.
HELD_CONSUMER = ":held"
# A claim looks at most this many held entries (oldest first) for ones it may take.
HELD_SCAN = 64
# The done stream (completions wake waiters) is trimmed to about this many entries.
DONE_MAXLEN = 100_000
# The gate stream only wakes waiters; a few entries are enough.
GATE_MAXLEN = 100

# Status sets, derived from the contract's literals (in their declared order, for Lua's ipairs).
TERMINAL_ROLLOUT = tuple(s for s in ROLLOUT_STATUSES if s in TERMINAL_STATUSES)
QUEUED_ROLLOUT = tuple(s for s in ROLLOUT_STATUSES if s in QUEUED_STATUSES)
RUNNING_ROLLOUT = tuple(s for s in ROLLOUT_STATUSES if s in RUNNING_STATUSES)
LIVE_ATTEMPT = tuple(s for s in ATTEMPT_STATUSES if s in RUNNING_STATUSES)

# Error codes a script replies with (`redis.error_reply(CODE .. ' ' .. args)`); errors.py maps them.
ERR_NO_ROLLOUT = "LQ_NO_ROLLOUT"  # args: rollout id
ERR_NO_ATTEMPT = "LQ_NO_ATTEMPT"  # args: rollout id, attempt id
ERR_NO_ATTEMPTS = "LQ_NO_ATTEMPTS"  # args: rollout id
ERR_BAD_PLACEHOLDER = "LQ_BAD_PLACEHOLDER"  # args: span id (finish.lua: a span to number lacks the placeholder)
ERROR_CODES = (ERR_NO_ROLLOUT, ERR_NO_ATTEMPT, ERR_NO_ATTEMPTS, ERR_BAD_PLACEHOLDER)

# A span the finish script numbers is packed with this as its last field's value, `sequence_id` =
# 2**64 - 1 as a msgpack uint64 (0xcf, then 8 bytes); the script writes the id it assigns into those 8 bytes.
SEQUENCE_PLACEHOLDER_VALUE = 2**64 - 1
# The largest sequence id a span may carry: Lua numbers are doubles, exact up to 2**53 (and Redis writes
# one above ~10**16 back as "1.2e+18", which breaks the counter); the rest is headroom for the ids a
# finish script assigns after the highest explicit one.
MAX_SEQUENCE_ID = 2**52
SEQUENCE_PLACEHOLDER = b"\xcf" + b"\xff" * 8

LUA_STRINGS = {
    "KEY_QUEUE": KEY_QUEUE,
    "KEY_DONE": KEY_DONE,
    "KEY_META": KEY_META,
    "KEY_ALL_ROLLOUTS": KEY_ALL_ROLLOUTS,
    "KEY_STATUS_INDEX": KEY_STATUS_INDEX,
    "KEY_OPEN_INDEX": KEY_OPEN_INDEX,
    "KEY_ENDED_INDEX": KEY_ENDED_INDEX,
    "KEY_END_INDEX": KEY_END_INDEX,
    "KEY_SPAN_ORDER": KEY_SPAN_ORDER,
    "KEY_MODE_INDEX": KEY_MODE_INDEX,
    "NO_MODE": NO_MODE,
    "KEY_ROLLOUT": KEY_ROLLOUT,
    "KEY_ATTEMPT": KEY_ATTEMPT,
    "KEY_ATTEMPTS": KEY_ATTEMPTS,
    "KEY_SPANS": KEY_SPANS,
    "KEY_SEQUENCE": KEY_SEQUENCE,
    "KEY_RESOURCES": KEY_RESOURCES,
    "KEY_RESOURCES_INDEX": KEY_RESOURCES_INDEX,
    "KEY_RESOURCES_CREATED": KEY_RESOURCES_CREATED,
    "KEY_WORKER": KEY_WORKER,
    "KEY_WORKERS_INDEX": KEY_WORKERS_INDEX,
    "KEY_SWEEP_LOCK": KEY_SWEEP_LOCK,
    "KEY_READS": KEY_READS,
    "KEY_POLICY_VERSION": KEY_POLICY_VERSION,
    "KEY_PAUSE": KEY_PAUSE,
    "KEY_PAUSE_HOLDER": KEY_PAUSE_HOLDER,
    "KEY_GATE": KEY_GATE,
    "KEY_STALENESS": KEY_STALENESS,
    "GROUP": GROUP,
    "HELD_CONSUMER": HELD_CONSUMER,
    "ERR_NO_ROLLOUT": ERR_NO_ROLLOUT,
    "ERR_NO_ATTEMPT": ERR_NO_ATTEMPT,
    "ERR_NO_ATTEMPTS": ERR_NO_ATTEMPTS,
    "ERR_BAD_PLACEHOLDER": ERR_BAD_PLACEHOLDER,
}
LUA_BYTES = {"SEQUENCE_PLACEHOLDER": SEQUENCE_PLACEHOLDER}
LUA_NUMBERS = {"DONE_MAXLEN": DONE_MAXLEN, "GATE_MAXLEN": GATE_MAXLEN, "HELD_SCAN": HELD_SCAN}
# Each set twice: a lookup table (`TERMINAL[s]`) and a list (`ipairs(TERMINAL_LIST)`).
LUA_SETS = {
    "TERMINAL": TERMINAL_ROLLOUT,
    "QUEUED": QUEUED_ROLLOUT,
    "RUNNING": RUNNING_ROLLOUT,
    "LIVE_ATTEMPT": LIVE_ATTEMPT,
}


def prefix(namespace: str) -> str:
    return f"{KEY_ROOT}:{{{namespace}}}:"


def _lua_string(value: str) -> str:
    assert "'" not in value and "\\" not in value, value
    return f"'{value}'"


def _lua_bytes(value: bytes) -> str:
    return "'" + "".join(f"\\{b}" for b in value) + "'"


def lua_prelude() -> str:
    """`local` definitions of every constant above, prepended to each script by the loader."""
    lines = ["-- prelude: generated from lightning_queue/store/schema.py at load time; edit that, not this."]
    lines += [f"local {name} = {_lua_string(value)}" for name, value in LUA_STRINGS.items()]
    lines += [f"local {name} = {_lua_bytes(value)}" for name, value in LUA_BYTES.items()]
    lines += [f"local {name} = {value}" for name, value in LUA_NUMBERS.items()]
    for name, members in LUA_SETS.items():
        lines.append(f"local {name} = {{{', '.join(f'{m} = true' for m in members)}}}")
        lines.append(f"local {name}_LIST = {{{', '.join(_lua_string(m) for m in members)}}}")
    return "\n".join(lines) + "\n"
