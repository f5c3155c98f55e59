"""The store behaviour suite, run through `LightningStoreClient` -> `lq store-server` -> the Redis store.

The modules imported below take only the `store` (and `make_span`) fixtures and the public store API,
so they run unchanged with `store` being the HTTP client. Modules left out reach past the contract
(leases, purge, memory policy, raw Redis keys, several store instances, fork) and test the Redis
store itself, not the protocol.
"""

from __future__ import annotations

import pytest

from lightning_queue import LightningStoreClient

from ..store.test_attempts import *  # noqa: F403
from ..store.test_queries import *  # noqa: F403
from ..store.test_records import *  # noqa: F403
from ..store.test_sequence_ids import *  # noqa: F403
from ..store.test_spans import *  # noqa: F403
from ..store.test_status_machine import *  # noqa: F403
from ..store.test_workers import *  # noqa: F403


@pytest.fixture
def store(client: LightningStoreClient) -> LightningStoreClient:
    return client
