"""`lq`: the command line. Subcommands load lazily so `lq --help` stays fast and torch-free."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

from ._version import __version__
from .store.settings import namespace_option, redis_url_option


# Each loader imports its command only when that command runs. Real import statements (not
# "module:attr" strings) so mypy checks the commands and import-linter sees that cli is on top.
def _worker_command() -> click.Command:
    from workers.cli import worker_command

    return worker_command


def _proxy_command() -> click.Command:
    from .llm_proxy.cli import proxy_command

    return proxy_command


def _demo_command() -> click.Command:
    from algorithms.reinforce.demo import demo_command

    return demo_command


def _trainer_command() -> click.Command:
    from algorithms.trainer_worker import trainer_command

    return trainer_command


def _metrics_command() -> click.Command:
    from .store.metrics import metrics_command

    return metrics_command


def _serve_model_command() -> click.Command:
    from .model_server.cli import serve_model_command

    return serve_model_command


def _dashboard_command() -> click.Command:
    from .dashboard.cli import dashboard_command

    return dashboard_command


def _store_server_command() -> click.Command:
    from .store_server.cli import store_server_command

    return store_server_command


def _export_command() -> click.Command:
    from .export.cli import export_command

    return export_command


def _retention_command() -> click.Command:
    from .export.retention_cli import retention_command

    return retention_command


def _claims_command() -> click.Command:
    from .store.claims_cli import claims_command

    return claims_command


def _staleness_command() -> click.Command:
    from .store.staleness_cli import staleness_command

    return staleness_command


# name -> (loader, short help); the help is listed without loading the command.
LAZY_COMMANDS: dict[str, tuple[Callable[[], click.Command], str]] = {
    "worker": (_worker_command, "Start a pool of worker processes that run an agent."),
    "proxy": (_proxy_command, "Serve the LLM proxy that records calls as spans."),
    "demo": (_demo_command, "The main job: train SmolLM2-135M with REINFORCE, before/after table."),
    "trainer": (_trainer_command, "Run fine-tuning jobs from the rq queue lq-train, each in a forked process."),
    "metrics": (_metrics_command, "Serve the store gauges of a namespace for Prometheus (/metrics)."),
    "serve-model": (_serve_model_command, "Serve a small Hugging Face model over an OpenAI-compatible API."),
    "dashboard": (_dashboard_command, "Serve a read-only web dashboard of a namespace."),
    "export": (_export_command, "Export finished rollouts, attempts, spans and triplets as Parquet or JSONL."),
    "retention": (_retention_command, "Show, set or apply the namespace's retention policy (default: keep)."),
    "store-server": (_store_server_command, "Serve the store over Agent-Lightning's HTTP protocol and OTLP."),
    "claims": (_claims_command, "Pause, resume or show the namespace's claims (the barrier of a weight sync)."),
    "staleness": (_staleness_command, "Set, show or clear the namespace's staleness bound (asynchronous RL)."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            try:
                return LAZY_COMMANDS[cmd_name][0]()
            except ImportError as exc:
                raise click.ClickException(
                    f"'lq {cmd_name}' is unavailable: {exc}. Is the matching extra installed?"
                ) from exc
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, LAZY_COMMANDS[name][1]) for name in LAZY_COMMANDS]
        for name in super().list_commands(ctx):
            command = super().get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(80)))
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lightning-queue")
@click.option("--log-level", default="WARNING", show_default=True, help="Python logging level.")
def main(log_level: str) -> None:
    """lightning-queue: scale agent rollouts for RL training over Redis."""
    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")


async def _status(redis_url: str, namespace: str) -> dict[str, Any]:
    from .store import RedisLightningStore
    from .store.claims_cli import claims_report
    from .store.retention import read_policy, retention_warnings

    store = RedisLightningStore(redis_url, namespace=namespace, scan_debounce_seconds=3600)
    try:
        memory = await store.memory()
        stats = await store.statistics()
        workers = await store.query_workers(sort_by="worker_id")
        policy = await read_policy(store)
        finished = int(await store._redis.zcard(store.keys.ended_rollouts))
        return {
            "redis": repr(store),
            "memory": memory.describe(),
            "maxmemory_policy": memory.policy,
            "used_memory_bytes": memory.used_bytes,
            "namespace": namespace,
            "queue_depth": await store.queue_depth(),
            "in_flight_entries": await store.pending_entries(),
            "rollouts": stats["rollouts_by_status"],
            "total_rollouts": stats["total_rollouts"],
            "total_attempts": stats["total_attempts"],
            "total_spans": stats["total_spans"],
            "workers": [w.model_dump(mode="json") for w in workers],
            "retention": None if policy is None else policy.model_dump(exclude_none=True),
            "warnings": retention_warnings(policy, memory, finished),
            "claims": await claims_report(store),
        }
    finally:
        await store.aclose()


def _format_status(report: dict[str, Any]) -> str:
    from .store.claims_cli import format_claims

    lines = [
        f"namespace   {report['namespace']}   ({report['redis']})",
        f"memory      {report['memory']}",
        f"queue       {report['queue_depth']} waiting, {report['in_flight_entries']} claimed",
        f"rollouts    {report['total_rollouts']} total, {report['total_attempts']} attempts, "
        f"{report['total_spans']} spans",
    ]
    lines += [f"  {status:<10} {count}" for status, count in report["rollouts"].items() if count]
    lines += format_claims(report["claims"])
    lines.append(f"retention   {report['retention'] or 'keep everything'}")
    lines += [f"WARNING     {w}" for w in report["warnings"]]
    lines.append(f"workers     {len(report['workers'])}")
    for w in report["workers"]:
        stats = w.get("heartbeat_stats") or {}
        extra = ", ".join(
            f"{k}={stats[k]}" for k in ("host", "pid", "in_flight", "completed", "cpu_pct", "mem_mb") if k in stats
        )
        lines.append(f"  {w['worker_id']:<32} {w['status']:<8} {extra}")
    return "\n".join(lines)


@main.command()
@redis_url_option
@namespace_option
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def status(redis_url: str | None, namespace: str, as_json: bool) -> None:
    """Show queue depth, rollouts per status and workers of a namespace."""
    from .store.connection import ping_error, redact, resolve_shared_url
    from .store.memory import EvictingRedisError

    try:
        # The status of a private embedded server would be an empty report about nothing.
        url = resolve_shared_url(redis_url)
        if (error := ping_error(url)) is not None:
            raise ConnectionError(f"no Redis answers at {redact(url)}: {error}")
        report = asyncio.run(_status(url, namespace))
    except (ValueError, ConnectionError, OSError, EvictingRedisError) as exc:
        raise click.ClickException(str(exc)) from exc
    except Exception as exc:  # redis errors carry no secrets but may be long; show their first line
        raise click.ClickException(f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
    click.echo(json.dumps(report, indent=2) if as_json else _format_status(report))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
