"""The store: the abstract v0.3 contract and its Redis implementation."""

from .base import LightningStore
from .client import LightningStoreClient, StoreUnavailable
from .codec import CorruptRecord
from .connection import resolve_url
from .errors import AttemptNotFound, NotFound, RolloutNotFound
from .leases import Claim, Leases
from .memory import EvictingRedisError
from .redis import RedisLightningStore

__all__ = [
    "AttemptNotFound",
    "Claim",
    "CorruptRecord",
    "EvictingRedisError",
    "Leases",
    "LightningStore",
    "LightningStoreClient",
    "NotFound",
    "RedisLightningStore",
    "RolloutNotFound",
    "StoreUnavailable",
    "resolve_url",
]
