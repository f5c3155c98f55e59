"""The staleness bound of asynchronous RL (issue 17), enforced at claim time in the claim scripts.

With `max_staleness` S and `batch_size` B, a claim admits a rollout of a bounded mode only while

    admitted + 1 <= (S + (v - base) + 1) * B

where v is the namespace's policy version, `base` the version when the bound was set, and `admitted`
the rollouts of the bounded modes admitted since then: each counts once (its retries do not count
again), and one that ends without a usable result (failed, cancelled) gives its slot back. This is
AReaL's rule (capacity = (S + v + 1)·B − (accepted + running)) with v counted from `base`. Why it bounds
staleness: the trainer takes B rollouts per version, so the n-th admitted rollout is trained on at
training step ceil(n / B) − 1 (from `base`); admitted at version v it is at most S versions old then. The
count needs no report of consumption: the version itself moves with it. If the trainer steps with
other than B rollouts, or updates resources for other reasons than a step, the bound follows B and
the versions, not the trainer's real consumption.

A rollout of a bounded mode pinned to resources whose policy version is below latest − S is, at its
claim, re-pinned to the latest resources (`stale_policy="repin"`, default; the old id is kept in the
rollout's `repinned_from` field) or failed (`"fail"`). Rollouts without a pin run on the latest and are
never stale. `max_staleness=None` removes the bound: claims behave exactly as without this feature.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ..types import ROLLOUT_MODES
from .codec import text
from .keys import generate_id
from .schema import NO_MODE

if TYPE_CHECKING:
    from .redis import RedisLightningStore

StalePolicy = Literal["repin", "fail"]
STALE_POLICIES = ("repin", "fail")


@dataclass(frozen=True)
class StalenessBound:
    """The bound in force, with the count and the policy version it was read at."""

    max_staleness: int
    batch_size: int
    modes: tuple[str | None, ...]
    stale_policy: str
    base_version: int
    admitted: int
    policy_version: int

    @property
    def limit(self) -> int:
        """How many rollouts of the bounded modes may be admitted at this policy version, in all."""
        return (self.max_staleness + (self.policy_version - self.base_version) + 1) * self.batch_size

    @property
    def capacity(self) -> int:
        """How many more may be admitted now."""
        return max(0, self.limit - self.admitted)

    def describe(self) -> str:
        modes = ", ".join("(no mode)" if m is None else m for m in self.modes)
        return (
            f"max_staleness {self.max_staleness}, batch_size {self.batch_size}, modes {modes}, "
            f"stale_policy {self.stale_policy}; admitted {self.admitted} of {self.limit} at policy version "
            f"{self.policy_version} (counted from version {self.base_version})"
        )


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def _check_modes(modes: object) -> tuple[str | None, ...]:
    if isinstance(modes, (str, bytes)) or not isinstance(modes, Iterable):
        raise TypeError(f"modes must be a sequence of rollout modes (None for rollouts without one), got {modes!r}")
    checked = tuple(dict.fromkeys(modes))
    if not checked:
        raise ValueError("modes must name at least one rollout mode")
    for mode in checked:
        if mode is not None and mode not in ROLLOUT_MODES:
            raise ValueError(f"invalid mode {mode!r} in modes: use {', '.join(ROLLOUT_MODES)} or None")
    return checked


def _bound(fields: dict[str, Any], version: int) -> StalenessBound | None:
    if not fields:
        return None
    modes = (text(fields, "modes") or "").strip(",").split(",")
    return StalenessBound(
        max_staleness=int(fields["max_staleness"]),
        batch_size=int(fields["batch_size"]),
        modes=tuple(None if m == NO_MODE else m for m in modes if m),
        stale_policy=text(fields, "policy") or "repin",
        base_version=int(fields["base"]),
        admitted=int(fields["admitted"]),
        policy_version=version,
    )


async def set_bound(
    store: RedisLightningStore,
    max_staleness: int | None,
    batch_size: int | None = None,
    *,
    modes: Iterable[str | None] = ("train",),
    stale_policy: StalePolicy = "repin",
) -> StalenessBound | None:
    """Set (or with `max_staleness=None` remove) the namespace's bound; returns the bound in force."""
    if max_staleness is None:
        await store._checked()
        fields, version = await store.transitions.staleness("clear")
        return _bound(fields, version)
    s = _check_int("max_staleness", max_staleness, 0)
    b = _check_int("batch_size", batch_size, 1)
    checked = _check_modes(modes)
    if stale_policy not in STALE_POLICIES:
        raise ValueError(f"stale_policy must be one of {', '.join(STALE_POLICIES)}, got {stale_policy!r}")
    packed = "," + ",".join(NO_MODE if m is None else m for m in checked) + ","
    await store._checked()
    fields, version = await store.transitions.staleness("set", s, b, packed, stale_policy, "sg-" + generate_id(12))
    return _bound(fields, version)


async def read_bound(store: RedisLightningStore) -> StalenessBound | None:
    await store._checked()
    fields, version = await store.transitions.staleness("get")
    return _bound(fields, version)
