"""`lq export`: what is read back equals the store, page by page, across crashes and reruns."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from click.testing import CliRunner

from lightning_queue import RedisLightningStore
from lightning_queue.adapter import emit_reward
from lightning_queue.cli import main
from lightning_queue.export import TABLES, ExportError, export_namespace
from lightning_queue.export import run as export_run
from lightning_queue.export.cli import parse_since
from lightning_queue.export.run import rollout_rows
from lightning_queue.types import Span


async def _finished(store: RedisLightningStore, n: int, status: str = "succeeded") -> str:
    rollout = await store.start_rollout({"task": n}, mode="train", metadata={"n": n})
    rid, aid = rollout.rollout_id, rollout.attempt.attempt_id
    call = Span.from_attributes(
        attributes={"prompt_token_ids": [n, 1], "response_token_ids": [n, 2], "gen_ai.response.id": f"r{n}"},
        rollout_id=rid,
        attempt_id=aid,
        sequence_id=1,
        name="openai.chat.completion",
    )
    reward = Span.from_core_fields(emit_reward(n / 10), rollout_id=rid, attempt_id=aid, sequence_id=2)
    await store.add_many_spans([call, reward])
    await store.update_attempt(rid, aid, status=status)  # type: ignore[arg-type]
    return rid


async def _populate(store: RedisLightningStore, n: int) -> list[str]:
    ids = [await _finished(store, i, "failed" if i % 3 == 2 else "succeeded") for i in range(n)]
    await store.enqueue_rollout("still queued")
    await store.start_rollout("still running")
    return ids


async def _expected(store: RedisLightningStore) -> dict[str, list[dict[str, Any]]]:
    """The rows the store holds, in the export's order (end_time, then id)."""
    order = await store.ended_since(float("-inf"), 10_000)
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    for rid, _ in order:
        rollout = await store.get_rollout_by_id(rid)
        assert rollout is not None
        attempts = (await store.query_attempts(rid)).items
        spans = (await store.query_spans(rid)).items
        for table, more in rollout_rows(rollout, attempts, spans).items():
            rows[table].extend(more)
    return rows


def _read_back(directory: Path, fmt: str) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for table in TABLES:
        files = sorted((directory / table).glob(f"*.{fmt}"))
        if fmt == "parquet":
            rows[table] = ds.dataset([str(f) for f in files], format="parquet").to_table().to_pylist()
        else:
            rows[table] = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    return rows


def _temp_files(directory: Path) -> list[Path]:
    return list(directory.glob("*/*.tmp"))


@pytest.mark.parametrize("fmt", ["parquet", "jsonl"])
async def test_an_export_read_back_equals_the_store(store: RedisLightningStore, tmp_path: Path, fmt: str) -> None:
    ids = await _populate(store, 7)
    result = await export_namespace(store, tmp_path / "out", fmt=fmt, page_size=3)  # type: ignore[arg-type]
    assert result.complete and result.parts_written == 3
    got = _read_back(tmp_path / "out", fmt)
    expected = await _expected(store)
    assert got == expected
    assert [r["rollout_id"] for r in got["rollouts"]] == ids  # only the terminal ones, oldest end first
    assert len(got["spans"]) == 14 and len(got["attempts"]) == 7
    assert [(json.loads(t["prompt"])["token_ids"][0], t["reward"]) for t in got["triplets"]] == [
        (i, pytest.approx(i / 10)) for i in range(7)
    ]
    assert json.loads(got["rollouts"][0]["input"]) == {"task": 0}
    # Nothing new: a rerun writes nothing; new rollouts: it writes only them.
    assert (await export_namespace(store, tmp_path / "out", fmt=fmt, page_size=3)).parts_written == 0  # type: ignore[arg-type]
    extra = await _finished(store, 99)
    again = await export_namespace(store, tmp_path / "out", fmt=fmt, page_size=3)  # type: ignore[arg-type]
    assert again.parts_written == 1 and again.rows["rollouts"] == 1
    assert [r["rollout_id"] for r in _read_back(tmp_path / "out", fmt)["rollouts"]] == [*ids, extra]


async def test_a_crash_after_part_k_resumes_without_duplicates_or_drops(
    store: RedisLightningStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = await _populate(store, 8)
    # Ties at one end_time larger than a page: the checkpoint's ids at that time must carry over.
    await store._redis.zadd(store.keys.ended_rollouts, dict.fromkeys(ids[2:7], 5.0))
    real = export_run.write_manifest
    calls = []

    def crash_on_third(directory: Path, manifest: dict[str, Any]) -> None:
        calls.append(manifest["parts"])
        if len(calls) == 3:  # after the fresh manifest and part 0's: part 1's files are in place, its manifest not
            raise KeyboardInterrupt
        real(directory, manifest)

    monkeypatch.setattr(export_run, "write_manifest", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        await export_namespace(store, tmp_path, page_size=2)
    assert (tmp_path / "rollouts" / "part-00001.parquet").exists()
    assert json.loads((tmp_path / "manifest.json").read_text())["parts"] == 1
    (tmp_path / "spans" / "part-00009.parquet.tmp").write_bytes(b"half a part")  # a temp file of a crash
    monkeypatch.setattr(export_run, "write_manifest", real)
    await export_namespace(store, tmp_path, page_size=2)
    assert _temp_files(tmp_path) == []
    got = _read_back(tmp_path, "parquet")
    assert sorted(r["rollout_id"] for r in got["rollouts"]) == sorted(ids)
    assert got == await _expected(store)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["rows"]["rollouts"] == 8 and manifest["parts"] == 4


async def test_max_parts_stops_early_and_a_rerun_continues(store: RedisLightningStore, tmp_path: Path) -> None:
    await _populate(store, 5)
    first = await export_namespace(store, tmp_path, page_size=2, max_parts=1)
    assert not first.complete and first.rows["rollouts"] == 2
    rest = await export_namespace(store, tmp_path, page_size=2)
    assert rest.complete and rest.rows["rollouts"] == 3
    assert _read_back(tmp_path, "parquet") == await _expected(store)


async def test_since_skips_rollouts_that_ended_before(store: RedisLightningStore, tmp_path: Path) -> None:
    ids = await _populate(store, 4)
    order = await store.ended_since(float("-inf"), 10)
    cutoff = order[2][1]
    await export_namespace(store, tmp_path, since=cutoff)
    assert [r["rollout_id"] for r in _read_back(tmp_path, "parquet")["rollouts"]] == [r for r, _ in order[2:]]
    assert set(ids) >= {r for r, _ in order[2:]}
    with pytest.raises(ExportError, match="since"):
        await export_namespace(store, tmp_path, since=cutoff + 1)


async def test_bad_directories_are_refused_by_name(store: RedisLightningStore, tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(ExportError, match=r"afile.*not a directory"):
        await export_namespace(store, afile)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match=r"notes\.txt"):
        await export_namespace(store, busy)
    await export_namespace(store, tmp_path / "p", fmt="parquet")
    with pytest.raises(ExportError, match="format 'parquet', not 'jsonl'"):
        await export_namespace(store, tmp_path / "p", fmt="jsonl")
    other = RedisLightningStore(client_factory=store._factory, namespace="someone-else")
    try:
        with pytest.raises(ExportError, match="someone-else"):
            await export_namespace(other, tmp_path / "p")
    finally:
        await other.aclose()
    with pytest.raises(ExportError, match="'csv'"):
        await export_namespace(store, tmp_path / "q", fmt="csv")  # type: ignore[arg-type]
    (tmp_path / "p" / "manifest.json").write_text("{not json")
    with pytest.raises(ExportError, match=r"manifest\.json"):
        await export_namespace(store, tmp_path / "p")


def test_since_accepts_iso_and_epoch_and_names_bad_values() -> None:
    assert parse_since("1700000000") == 1700000000.0
    assert parse_since("2023-11-14T22:13:20Z") == 1700000000.0
    assert parse_since("2023-11-14T22:13:20") == 1700000000.0  # naive is UTC
    assert parse_since(None) is None
    with pytest.raises(Exception, match="'yesterday'"):
        parse_since("yesterday")
    with pytest.raises(Exception, match="'inf'"):
        parse_since("inf")


def test_the_cli_names_a_bad_format_a_bad_directory_and_a_dead_redis(redis_url: str, tmp_path: Path) -> None:
    runner = CliRunner()
    bad_format = runner.invoke(main, ["export", "--format", "csv", str(tmp_path)])
    assert bad_format.exit_code == 2 and "'csv'" in bad_format.output
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad_dir = runner.invoke(main, ["export", "--redis-url", redis_url, str(afile)])
    assert bad_dir.exit_code == 1 and "not a directory" in bad_dir.output
    dead = runner.invoke(main, ["export", "--redis-url", "redis://127.0.0.1:1/0", str(tmp_path / "new")])
    assert dead.exit_code == 1 and "no Redis answers at redis://127.0.0.1:1" in dead.output


def test_the_cli_exports_a_real_redis_namespace(redis_url: str, tmp_path: Path) -> None:
    import asyncio

    async def seed() -> None:
        store = RedisLightningStore(redis_url, namespace="cli-export")
        try:
            await store.purge()
            await _finished(store, 1)
        finally:
            await store.aclose()

    asyncio.run(seed())
    out = CliRunner().invoke(
        main, ["export", "--redis-url", redis_url, "--namespace", "cli-export", "--format", "jsonl", str(tmp_path)]
    )
    assert out.exit_code == 0, out.output
    assert "1 rollouts, 1 attempts, 2 spans, 1 triplets" in out.output
    assert len(_read_back(tmp_path, "jsonl")["rollouts"]) == 1


async def test_ended_since_pages_the_end_time_index(store: RedisLightningStore) -> None:
    ids = await _populate(store, 3)
    everything = await store.ended_since(float("-inf"), 10)
    assert [rid for rid, _ in everything] == ids
    assert await store.ended_since(everything[1][1], 1) == [everything[1]]
    with pytest.raises(ValueError, match="limit must be >= 1, got 0"):
        await store.ended_since(0.0, 0)
