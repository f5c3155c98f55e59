"""The worker idle fraction: slot-seconds attempts held, against slots × the training window."""

from __future__ import annotations

import pytest

from algorithms.worker_idle import idle_fraction
from lightning_queue.types import Attempt


def attempt(start: float, end: float | None) -> Attempt:
    return Attempt(rollout_id="ro-1", attempt_id=f"at-{start}", sequence_id=1, start_time=start, end_time=end)


def test_idle_is_the_share_of_slot_seconds_no_attempt_held() -> None:
    # 2 slots over 10 s = 20 slot-seconds; attempts hold 4 + 6 = 10 of them.
    measured = idle_fraction([attempt(0, 4), attempt(2, 8)], start=0, end=10, slots=2)
    assert measured.idle == pytest.approx(0.5) and measured.busy_seconds == pytest.approx(10)


def test_attempts_are_clipped_to_the_window_and_an_unended_one_runs_to_its_end() -> None:
    # [-5, 3] counts 3 s, [8, 30] counts 2 s, the unended one from 6 counts 4 s: 9 of 10.
    measured = idle_fraction([attempt(-5, 3), attempt(8, 30), attempt(6, None)], start=0, end=10, slots=1)
    assert measured.busy_seconds == pytest.approx(9) and measured.idle == pytest.approx(0.1)


def test_no_attempts_is_fully_idle_and_overlap_past_capacity_is_not_negative() -> None:
    assert idle_fraction([], start=0, end=5, slots=3).idle == 1.0
    assert idle_fraction([attempt(0, 10), attempt(0, 10)], start=0, end=10, slots=1).idle == 0.0


@pytest.mark.parametrize(("slots", "start", "end", "named"), [(0, 0, 1, "slots"), (1, 5, 5, "window")])
def test_bad_windows_and_slot_counts_are_named(slots: int, start: float, end: float, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        idle_fraction([], start=start, end=end, slots=slots)
