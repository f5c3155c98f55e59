"""The store: the abstract v0.3 contract, its Redis implementation and the in-process one for tests."""

from .base import LightningStore
from .client import LightningStoreClient, StoreUnavailable
from .codec import CorruptRecord
from .connection import resolve_url
from .errors import AttemptNotFound, NotFound, RolloutNotFound
from .in_memory import InMemoryLightningStore
from .leases import Claim, Leases
from .memory import EvictingRedisError
from .redis import RedisLightningStore
from .threaded import LightningStoreThreaded
from .unported import LightningStoreServer, MongoLightningStore, SqliteLightningStore, UnportedStoreError

__all__ = [
    "AttemptNotFound",
    "Claim",
    "CorruptRecord",
    "EvictingRedisError",
    "InMemoryLightningStore",
    "Leases",
    "LightningStore",
    "LightningStoreClient",
    "LightningStoreServer",
    "LightningStoreThreaded",
    "MongoLightningStore",
    "NotFound",
    "RedisLightningStore",
    "RolloutNotFound",
    "SqliteLightningStore",
    "StoreUnavailable",
    "UnportedStoreError",
    "resolve_url",
]
