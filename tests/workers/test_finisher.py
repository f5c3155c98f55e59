"""The worker's group commit of results (`workers/finisher.py`), against a stand-in for `Leases.finish_many`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, cast

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from lightning_queue.store.leases import Finish, FinishOutcome
from workers.finisher import Finisher


class FakeFinishMany:
    """Records each batch; answers per Finish by its status (`failed` -> a ValueError), after `delay`."""

    def __init__(self, delay: float = 0.0, error: BaseException | None = None) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.error = error

    async def __call__(self, finishes: Sequence[Finish]) -> list[FinishOutcome | Exception]:
        self.batches.append([f.consumer for f in finishes])
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return [
            ValueError(f"{f.consumer} refused") if f.status == "failed" else FinishOutcome(True, [1]) for f in finishes
        ]


def _finish(name: str, status: Any = "succeeded") -> Finish:
    return Finish(consumer=name, claim=cast(Any, None), status=status)


async def test_ends_made_together_go_in_one_batch() -> None:
    fake = FakeFinishMany()
    finisher = Finisher(fake)

    outcomes = await asyncio.gather(*(finisher.finish(_finish(f"w{i}")) for i in range(8)))

    assert fake.batches == [[f"w{i}" for i in range(8)]]
    assert all(o.held for o in outcomes) and finisher.batches == 1 and finisher.finished == 8


async def test_ends_arriving_while_a_batch_is_in_flight_form_the_next_one() -> None:
    fake = FakeFinishMany(delay=0.05)
    finisher = Finisher(fake)
    first = asyncio.create_task(finisher.finish(_finish("a")))
    await asyncio.sleep(0.01)  # "a" is in flight
    later = [asyncio.create_task(finisher.finish(_finish(n))) for n in ("b", "c")]

    await asyncio.gather(first, *later)

    assert fake.batches == [["a"], ["b", "c"]]


async def test_a_batch_is_bounded_by_max_batch() -> None:
    fake = FakeFinishMany()
    finisher = Finisher(fake, max_batch=3)

    await asyncio.gather(*(finisher.finish(_finish(f"w{i}")) for i in range(7)))

    assert [len(b) for b in fake.batches] == [3, 3, 1]
    with pytest.raises(ValueError, match="max_batch must be at least 1, got 0"):
        Finisher(fake, max_batch=0)


async def test_each_end_gets_its_own_error_and_the_others_their_outcome() -> None:
    finisher = Finisher(FakeFinishMany())

    results = await asyncio.gather(
        finisher.finish(_finish("ok")), finisher.finish(_finish("bad", "failed")), return_exceptions=True
    )

    assert isinstance(results[0], FinishOutcome)
    assert isinstance(results[1], ValueError) and str(results[1]) == "bad refused"


async def test_a_lost_connection_fails_every_end_of_its_batch_and_the_next_batch_still_goes() -> None:
    fake = FakeFinishMany(error=RedisConnectionError("Connection refused"))
    finisher = Finisher(fake)

    results = await asyncio.gather(*(finisher.finish(_finish(n)) for n in ("a", "b")), return_exceptions=True)
    assert all(isinstance(r, RedisConnectionError) for r in results)

    fake.error = None  # the caller's retry, once Redis is back
    assert (await finisher.finish(_finish("a"))).held


async def test_a_caller_cancelled_mid_flight_does_not_cancel_the_others() -> None:
    fake = FakeFinishMany(delay=0.05)
    finisher = Finisher(fake)
    cancelled = asyncio.create_task(finisher.finish(_finish("gone")))
    kept = asyncio.create_task(finisher.finish(_finish("kept")))
    await asyncio.sleep(0.01)
    cancelled.cancel()

    assert (await kept).held
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert fake.batches == [["gone", "kept"]]  # the round trip went on: its result is stored


async def test_a_short_answer_fails_its_batch_instead_of_leaving_callers_waiting() -> None:
    async def short(finishes: Sequence[Finish]) -> list[FinishOutcome | Exception]:
        return []

    finisher = Finisher(short)
    with pytest.raises(RuntimeError, match="finish_many answered 0 of 1 finishes"):
        await asyncio.wait_for(finisher.finish(_finish("a")), 5)
