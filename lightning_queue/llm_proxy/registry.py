"""Every proxy's drain status in its namespace, and `wait_proxies_drained`: the barrier across proxies.

Each running proxy on a Redis store keeps a record (`px:<proxy id>`, msgpack, with a TTL of a few read
intervals, so a crashed proxy drops out by itself) of its in-flight calls and the claims pause it sees.
A drain writes a fresh token (`px:drain`); a proxy answers it only from a view that saw the pause before
the token was read, so "acknowledged, paused, 0 in flight" means no call of that proxy can reach the
upstream until the pause ends.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ..store import codec, schema
from ..store.base import LightningStore
from ..store.errors import NotSupported
from ..store.keys import generate_id
from ..store.redis import RedisLightningStore
from .in_flight import DrainTimeout

# A record outlives its proxy's last write by this many read intervals (and at least RECORD_TTL_MIN).
RECORD_TTL_INTERVALS = 20
RECORD_TTL_MIN = 2.0
# How often a drain re-reads the records.
DRAIN_POLL_SECONDS = 0.05
# The drain token is kept this long past its drain's timeout (a later drain overwrites it anyway).
_TOKEN_SLACK_SECONDS = 60.0


@dataclass(frozen=True)
class ProxyStatus:
    """One proxy's last published view: `drained` once it acknowledged the current drain with nothing in flight."""

    proxy_id: str
    endpoint: str
    in_flight: int
    paused: bool
    policy_version: int | None
    drain_ack: str | None
    published: float

    def drained_for(self, token: str) -> bool:
        return self.drain_ack == token and self.paused and self.in_flight == 0

    def as_record(self) -> dict[str, Any]:
        return {
            "id": self.proxy_id,
            "endpoint": self.endpoint,
            "in_flight": self.in_flight,
            "paused": self.paused,
            "policy_version": self.policy_version,
            "ack": self.drain_ack,
            "at": self.published,
        }

    @classmethod
    def from_record(cls, record: Any, key: str) -> ProxyStatus:
        if not isinstance(record, dict):
            raise codec.CorruptRecord(key, f"expected a map, got {type(record).__name__}")
        try:
            return cls(
                proxy_id=str(record["id"]),
                endpoint=str(record["endpoint"]),
                in_flight=int(record["in_flight"]),
                paused=bool(record["paused"]),
                policy_version=None if record["policy_version"] is None else int(record["policy_version"]),
                drain_ack=None if record["ack"] is None else str(record["ack"]),
                published=float(record["at"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise codec.CorruptRecord(key, f"proxy status {record!r:.200}: {exc}") from None


def _keys(store: RedisLightningStore) -> tuple[str, str, str]:
    prefix = store.keys.prefix
    return prefix + schema.KEY_PROXY, prefix + schema.KEY_PROXIES_INDEX, prefix + schema.KEY_DRAIN_REQUEST


def redis_store(store: LightningStore, what: str) -> RedisLightningStore:
    if not isinstance(store, RedisLightningStore):
        raise NotSupported(store, what)
    return store


class ProxyRegistry:
    """Publishes one proxy's status; `publish` returns the drain token in force (None if no drain asked)."""

    def __init__(self, store: RedisLightningStore, endpoint: str, interval: float) -> None:
        self.store = store
        self.proxy_id = "px-" + generate_id(12)
        self.endpoint = endpoint
        self.ttl_ms = max(1, round(max(RECORD_TTL_MIN, RECORD_TTL_INTERVALS * interval) * 1000))

    async def publish(self, in_flight: int, paused: bool, policy_version: int | None, ack: str | None) -> str | None:
        status = ProxyStatus(self.proxy_id, self.endpoint, in_flight, paused, policy_version, ack, time.time())
        record_prefix, index, drain = _keys(self.store)
        redis = self.store._redis
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(record_prefix + self.proxy_id, codec.pack(status.as_record()), px=self.ttl_ms)
            # Scored by expiry on this proxy's clock: each publish prunes members long gone (10 TTLs, so
            # a skewed clock prunes late, never a live proxy's record, which readers check by its key).
            pipe.zadd(index, {self.proxy_id: status.published * 1000 + self.ttl_ms})
            pipe.zremrangebyscore(index, "-inf", status.published * 1000 - 10 * self.ttl_ms)
            pipe.get(drain)
            *_, token = await pipe.execute()
        return token.decode() if isinstance(token, bytes) else token

    async def withdraw(self) -> None:
        record_prefix, index, _drain = _keys(self.store)
        async with self.store._redis.pipeline(transaction=False) as pipe:
            pipe.delete(record_prefix + self.proxy_id)
            pipe.zrem(index, self.proxy_id)
            await pipe.execute()


async def proxy_statuses(store: LightningStore) -> list[ProxyStatus]:
    """The last published status of every proxy running on `store`'s namespace."""
    target = redis_store(store, "proxy_statuses()")
    record_prefix, index, _drain = _keys(target)
    redis = target._redis
    # Liveness is the record's TTL (Redis's clock); the index's scores come from each proxy's clock and
    # only serve pruning, so a skewed clock cannot hide a live proxy from a drain.
    ids = [m.decode() if isinstance(m, bytes) else str(m) for m in await redis.zrange(index, 0, -1)]
    if not ids:
        return []
    raw = await redis.mget([record_prefix + proxy_id for proxy_id in ids])
    statuses = []
    for proxy_id, blob in zip(ids, raw, strict=True):
        if blob is not None:  # expired between the two reads: that proxy is gone
            key = record_prefix + proxy_id
            statuses.append(ProxyStatus.from_record(codec.unpack(blob, key=key), key))
    return statuses


async def wait_proxies_drained(store: LightningStore, timeout: float | None = 60.0) -> list[ProxyStatus]:
    """Wait until every proxy of the namespace has seen the claims pause and has no call in flight.

    Call it while holding the pause (`async with store.claims_pause(ttl): await wait_proxies_drained(store)`);
    returns the proxies' statuses. Raises RuntimeError if claims are not paused, DrainTimeout naming the
    proxies still busy (or not answering) once `timeout` seconds passed. A proxy that stopped publishing
    (crashed, or its loop blocked for longer than its record's TTL) is not waited for.
    """
    if timeout is not None and (timeout != timeout or timeout < 0):
        raise ValueError(f"drain timeout must be None or a number of seconds >= 0, got {timeout!r}")
    target = redis_store(store, "wait_proxies_drained()")
    if not await target.claims_paused():
        raise RuntimeError(
            "wait_proxies_drained() needs the claims pause in force, else proxies keep admitting calls: "
            "async with store.claims_pause(ttl): await wait_proxies_drained(store)"
        )
    token = "drain-" + generate_id(12)
    _record, _index, drain = _keys(target)
    keep = (timeout if timeout is not None else 3600.0) + _TOKEN_SLACK_SECONDS
    await target._redis.set(drain, token, px=max(1, round(keep * 1000)))
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        statuses = await proxy_statuses(target)
        busy = [s for s in statuses if not s.drained_for(token)]
        if not busy:
            return statuses
        if deadline is not None and time.monotonic() >= deadline:
            raise DrainTimeout(
                f"{len(busy)} of {len(statuses)} proxies were not drained after {timeout:g} s: "
                + "; ".join(_why(s, token) for s in busy)
            )
        await asyncio.sleep(DRAIN_POLL_SECONDS)


def _why(status: ProxyStatus, token: str) -> str:
    where = f"{status.proxy_id} at {status.endpoint}"
    if status.drain_ack != token or not status.paused:
        return f"{where} has not seen the pause yet"
    return f"{where} has {status.in_flight} call(s) in flight"
