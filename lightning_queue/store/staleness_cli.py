"""`lq staleness`: set, show or clear the namespace's staleness bound (the count rule of staleness.py)."""

from __future__ import annotations

import click

from ..types import ROLLOUT_MODES
from .claims_cli import run_on_store
from .settings import namespace_option, redis_url_option
from .staleness import STALE_POLICIES, StalenessBound


def _shown(bound: StalenessBound | None) -> str:
    return "no bound (claims are not limited)" if bound is None else bound.describe()


@click.group("staleness")
def staleness_command() -> None:
    """Set, show or clear the namespace's staleness bound (asynchronous RL)."""


@staleness_command.command("set")
@redis_url_option
@namespace_option
@click.option("--max-staleness", "-s", type=click.IntRange(min=0), required=True, help="S: versions a rollout may lag.")
@click.option("--batch-size", "-b", type=click.IntRange(min=1), required=True, help="B: rollouts per training step.")
@click.option(
    "--mode",
    "modes",
    multiple=True,
    type=click.Choice([*ROLLOUT_MODES, "none"]),
    help="A bounded rollout mode ('none': rollouts without one); repeat for several. Default: train.",
)
@click.option("--stale-policy", type=click.Choice(STALE_POLICIES), default="repin", show_default=True)
def set_command(
    redis_url: str | None,
    namespace: str | None,
    max_staleness: int,
    batch_size: int,
    modes: tuple[str, ...],
    stale_policy: str,
) -> None:
    """Bound staleness at claim time: at most (S + v - base + 1) * B rollouts of the modes admitted."""
    chosen = [None if m == "none" else m for m in modes] or ["train"]
    bound = run_on_store(
        redis_url,
        namespace,
        lambda store: store.set_staleness(
            max_staleness,
            batch_size,
            modes=chosen,
            stale_policy="fail" if stale_policy == "fail" else "repin",
        ),
    )
    click.echo(f"staleness: {_shown(bound)}")


@staleness_command.command("show")
@redis_url_option
@namespace_option
def show_command(redis_url: str | None, namespace: str | None) -> None:
    """Print the bound and its count."""
    click.echo(f"staleness: {_shown(run_on_store(redis_url, namespace, lambda store: store.get_staleness()))}")


@staleness_command.command("clear")
@redis_url_option
@namespace_option
def clear_command(redis_url: str | None, namespace: str | None) -> None:
    """Remove the bound: claims are not limited (today's behaviour)."""
    run_on_store(redis_url, namespace, lambda store: store.set_staleness(None))
    click.echo(f"staleness: {_shown(None)}")
