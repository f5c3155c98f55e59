"""Export a namespace's terminal rollouts in end-time order, resumably, as part files of four tables.

The walk follows `idx:ended` in bounded pages. After each part is renamed into place, `manifest.json`
records the checkpoint (last end_time and the ids exported at exactly that time), so a rerun continues
after the last complete part: a crash between a part and its manifest rewrites that same part number.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from ..adapter import LlmProxyTraceToTriplet
from ..store import RedisLightningStore
from ..types.core import TERMINAL_STATUSES, Attempt, Rollout
from ..types.tracer import Span, Triplet

Format = Literal["parquet", "jsonl"]
FORMATS: tuple[Format, ...] = ("parquet", "jsonl")
MANIFEST = "manifest.json"
MANIFEST_VERSION = 1
TMP_SUFFIX = ".tmp"

# Column -> (arrow type, json-encoded?). Nested values are JSON text so every part has one schema
# whatever the records hold (pandas/DuckDB/HF datasets read a directory of parts as one table).
_S, _F, _I = pa.string(), pa.float64(), pa.int64()
TABLES: dict[str, dict[str, tuple[pa.DataType, bool]]] = {
    "rollouts": {
        "rollout_id": (_S, False),
        "status": (_S, False),
        "mode": (_S, False),
        "resources_id": (_S, False),
        "start_time": (_F, False),
        "end_time": (_F, False),
        "input": (_S, True),
        "config": (_S, True),
        "metadata": (_S, True),
    },
    "attempts": {
        "rollout_id": (_S, False),
        "attempt_id": (_S, False),
        "sequence_id": (_I, False),
        "status": (_S, False),
        "worker_id": (_S, False),
        "start_time": (_F, False),
        "end_time": (_F, False),
        "last_heartbeat_time": (_F, False),
        "metadata": (_S, True),
    },
    "spans": {
        "rollout_id": (_S, False),
        "attempt_id": (_S, False),
        "sequence_id": (_I, False),
        "trace_id": (_S, False),
        "span_id": (_S, False),
        "parent_id": (_S, False),
        "name": (_S, False),
        "start_time": (_F, False),
        "end_time": (_F, False),
        "status": (_S, True),
        "attributes": (_S, True),
        "events": (_S, True),
        "links": (_S, True),
        "context": (_S, True),
        "parent": (_S, True),
        "resource": (_S, True),
    },
    "triplets": {
        "rollout_id": (_S, False),
        "attempt_id": (_S, False),
        "index": (_I, False),
        "prompt": (_S, True),
        "response": (_S, True),
        "reward": (_F, False),
        "metadata": (_S, True),
    },
}


class ExportError(ValueError):
    """The export directory or its manifest cannot be used as asked."""


@dataclass
class ExportResult:
    directory: Path
    parts_written: int = 0
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TABLES, 0))
    complete: bool = True


def _row(table: str, dumped: dict[str, Any]) -> dict[str, Any]:
    row = {}
    for name, (_, encoded) in TABLES[table].items():
        value = dumped.get(name)
        row[name] = json.dumps(value, separators=(",", ":"), sort_keys=True) if encoded else value
    return row


def rollout_rows(
    rollout: Rollout, attempts: Sequence[Attempt], spans: Sequence[Span]
) -> dict[str, list[dict[str, Any]]]:
    """The rows of one rollout in each table; triplets come from the latest attempt's spans."""
    dumped = Rollout.model_validate(rollout.model_dump()).model_dump(mode="json")  # drop an AttemptedRollout's attempt
    latest = max(attempts, key=lambda a: a.sequence_id) if attempts else None
    triplets: list[Triplet] = []
    if latest is not None:
        triplets = LlmProxyTraceToTriplet().adapt([s for s in spans if s.attempt_id == latest.attempt_id])
    return {
        "rollouts": [_row("rollouts", dumped)],
        "attempts": [_row("attempts", a.model_dump(mode="json")) for a in attempts],
        "spans": [_row("spans", s.model_dump(mode="json")) for s in spans],
        "triplets": [
            _row(
                "triplets",
                {
                    **t.model_dump(mode="json"),
                    "rollout_id": rollout.rollout_id,
                    "attempt_id": latest.attempt_id if latest else None,
                    "index": i,
                },
            )
            for i, t in enumerate(triplets)
        ],
    }


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + TMP_SUFFIX)
    write(tmp)
    os.replace(tmp, path)


def _write_part(directory: Path, fmt: Format, number: int, rows: dict[str, list[dict[str, Any]]]) -> None:
    for table, columns in TABLES.items():
        path = directory / table / f"part-{number:05d}.{fmt}"
        if fmt == "parquet":
            schema = pa.schema([(name, typ) for name, (typ, _) in columns.items()])
            _atomic_write(path, partial(pq.write_table, pa.Table.from_pylist(rows[table], schema=schema)))
        else:
            text = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows[table])
            _atomic_write(path, partial(_write_text, text))


def _write_text(text: str, path: Path) -> None:
    path.write_text(text, encoding="utf-8")


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Record a checkpoint (a module function so a test can make it fail like a crash would)."""
    _atomic_write(directory / MANIFEST, partial(_write_text, json.dumps(manifest, indent=2)))


def _prepare(directory: Path, namespace: str, fmt: Format, since: float | None) -> dict[str, Any]:
    """The manifest to continue from (a fresh one for a new export); raises ExportError on a bad DIR."""
    if directory.exists() and not directory.is_dir():
        raise ExportError(f"export directory {str(directory)!r} exists and is not a directory")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for table in TABLES:
            (directory / table).mkdir(exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create export directory {str(directory)!r}: {exc}") from exc
    if not os.access(directory, os.W_OK):
        raise ExportError(f"export directory {str(directory)!r} is not writable")
    path = directory / MANIFEST
    if not path.exists():
        stray = sorted(p.name for p in directory.iterdir() if p.name not in TABLES)
        stray += sorted(f"{t}/{p.name}" for t in TABLES for p in (directory / t).iterdir())
        if stray:
            raise ExportError(
                f"export directory {str(directory)!r} holds files but no {MANIFEST} ({stray[0]}...): "
                "use an empty directory or one a previous export wrote"
            )
        fresh = {
            "version": MANIFEST_VERSION,
            "namespace": namespace,
            "format": fmt,
            "since": since,
            "parts": 0,
            "last_end_time": None,
            "ids_at_last_end_time": [],
            "rows": dict.fromkeys(TABLES, 0),
        }
        write_manifest(directory, fresh)  # claims the directory even if nothing is exported yet
        return fresh
    try:
        manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"cannot read {str(path)!r}: {exc}") from exc
    if manifest.get("version") != MANIFEST_VERSION:
        raise ExportError(f"{str(path)!r} has version {manifest.get('version')!r}, expected {MANIFEST_VERSION}")
    for key, value in (("namespace", namespace), ("format", fmt)):
        if manifest.get(key) != value:
            raise ExportError(f"{str(path)!r} is an export of {key} {manifest.get(key)!r}, not {value!r}")
    if since is not None and manifest.get("since") != since:
        raise ExportError(f"{str(path)!r} was started with since={manifest.get('since')!r}, not {since!r}")
    for table in TABLES:  # temp files of a part that never finished
        for tmp in (directory / table).glob("*" + TMP_SUFFIX):
            tmp.unlink()
    return manifest


async def export_namespace(
    store: RedisLightningStore,
    directory: Path,
    *,
    fmt: Format = "parquet",
    since: float | None = None,
    page_size: int = 500,
    max_parts: int | None = None,
) -> ExportResult:
    """Export the terminal rollouts that ended at or after `since`, continuing a previous run in `directory`.

    Each page of up to `page_size` rollouts becomes one part per table; `max_parts` stops early
    (the result is then not `complete`, and a rerun continues).
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if page_size < 1:
        raise ExportError(f"page_size must be >= 1, got {page_size!r}")
    manifest = _prepare(directory, store.namespace, fmt, since)
    result = ExportResult(directory)
    last: float | None = manifest["last_end_time"]
    seen: set[str] = set(manifest["ids_at_last_end_time"])
    start = manifest["since"] if last is None else last
    while max_parts is None or result.parts_written < max_parts:
        lower = float("-inf") if start is None else float(start)
        pairs = await store.ended_since(lower, page_size + len(seen))
        page = [(rid, t) for rid, t in pairs if not (t == last and rid in seen)][:page_size]
        if not page:
            return result
        found = await store.query_rollouts(rollout_id_in=[rid for rid, _ in page], limit=-1)
        rows: dict[str, list[dict[str, Any]]] = {table: [] for table in TABLES}
        by_id = {r.rollout_id: r for r in found.items}
        for rid, _ in page:  # in end-time order; a rollout deleted or reopened meanwhile is left out
            rollout = by_id.get(rid)
            if rollout is None or rollout.status not in TERMINAL_STATUSES:
                continue
            attempts = (await store.query_attempts(rid)).items
            spans = (await store.query_spans(rid)).items
            for table, more in rollout_rows(rollout, attempts, spans).items():
                rows[table].extend(more)
        _write_part(directory, fmt, manifest["parts"], rows)
        page_last = page[-1][1]
        seen = (seen if page_last == last else set()) | {rid for rid, t in page if t == page_last}
        last = start = page_last
        manifest["parts"] += 1
        manifest["last_end_time"] = last
        manifest["ids_at_last_end_time"] = sorted(seen)
        for table in TABLES:
            manifest["rows"][table] += len(rows[table])
            result.rows[table] += len(rows[table])
        write_manifest(directory, manifest)
        result.parts_written += 1
    result.complete = False
    return result
