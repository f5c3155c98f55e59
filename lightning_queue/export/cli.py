"""`lq export`: write a namespace's finished rollouts to files pandas, DuckDB and HF datasets open."""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from pathlib import Path

import click

from ..store import RedisLightningStore
from ..store.connection import ping_error, redact, resolve_shared_url
from ..store.settings import RedisSettings, namespace_option, redis_url_option
from .run import FORMATS, ExportError, ExportResult, export_namespace


def parse_since(value: str | None) -> float | None:
    """An ISO-8601 time (naive = UTC) or epoch seconds, as epoch seconds."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError as exc:
            message = f"{value!r} is neither an ISO-8601 time nor epoch seconds"
            raise click.BadParameter(message, param_hint="--since") from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        return moment.timestamp()
    if not math.isfinite(seconds):
        raise click.BadParameter(f"{value!r} is not a finite time", param_hint="--since")
    return seconds


async def _run(url: str, namespace: str, directory: Path, fmt: str, since: float | None, page: int) -> ExportResult:
    store = RedisLightningStore(url, namespace=namespace, scan_debounce_seconds=3600)
    try:
        return await export_namespace(store, directory, fmt=fmt, since=since, page_size=page)  # type: ignore[arg-type]
    finally:
        await store.aclose()


@click.command("export")
@redis_url_option
@namespace_option
@click.option("--since", default=None, help="Only rollouts that ended at/after this ISO-8601 time or epoch seconds.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="parquet", show_default=True)
@click.option("--page-size", type=click.IntRange(min=1), default=500, show_default=True, help="Rollouts per part.")
@click.argument("directory", type=click.Path(path_type=Path))
def export_command(
    redis_url: str | None, namespace: str | None, since: str | None, fmt: str, page_size: int, directory: Path
) -> None:
    """Export terminal rollouts, attempts, spans and triplets to DIRECTORY (rerun to continue)."""
    start = parse_since(since)
    try:
        settings = RedisSettings.from_env(url=redis_url, namespace=namespace)
        url = resolve_shared_url(settings.url)
        if (error := ping_error(url)) is not None:
            raise ConnectionError(f"no Redis answers at {redact(url)}: {error}")
        result = asyncio.run(_run(url, settings.namespace, directory, fmt, start, page_size))
    except (ExportError, ValueError, ConnectionError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    counts = ", ".join(f"{n} {table}" for table, n in result.rows.items())
    click.echo(f"exported {result.parts_written} part(s) to {directory}: {counts}")
