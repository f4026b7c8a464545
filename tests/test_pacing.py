"""Open-loop schedules: due times are fixed up front, whatever the sender does."""

import pytest

from sandbox.contract.ids import uuid7, uuid7_time_ms
from sandbox.producer.pacing import Pacer, PhasePlan, phase_length, phase_offsets, schedule


def test_constant_rate_offsets():
    assert phase_offsets(PhasePlan(4, rate_per_s=20)) == pytest.approx([0.0, 0.05, 0.10, 0.15])


def test_burst_is_due_at_once():
    assert phase_offsets(PhasePlan(3)) == [0.0, 0.0, 0.0]
    assert phase_length(PhasePlan(3)) == 0.0


def test_ramp_speeds_up_and_keeps_length():
    offsets = phase_offsets(PhasePlan(100, ramp=(10, 100)))
    gaps = [b - a for a, b in zip(offsets, offsets[1:])]
    assert gaps[0] > gaps[-1] * 5
    assert offsets[-1] < phase_length(PhasePlan(100, ramp=(10, 100))) == pytest.approx(200 / 110)


def test_phases_follow_each_other():
    due = schedule([PhasePlan(2, rate_per_s=10), PhasePlan(2, rate_per_s=1)])
    assert due == [(0, 0.0), (0, 0.1), (1, pytest.approx(0.2)), (1, pytest.approx(1.2))]


def test_late_pacer_sends_without_skipping():
    now = [0.0]
    slept = []

    def clock():
        return now[0]

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    pacer = Pacer([0.0, 0.1, 0.2, 0.3], clock=clock, sleep=sleep)
    released = []
    for index, offset in pacer:
        released.append(index)
        if index == 0:
            now[0] += 0.25  # the sender stalls past the next two due times
    assert released == [0, 1, 2, 3]
    assert slept == [pytest.approx(0.05)]


def test_uuid7_is_time_ordered_version_7():
    ids = [uuid7(clock_ms=1_700_000_000_000) for _ in range(3000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3000
    assert all(job_id[14] == "7" for job_id in ids)
    assert uuid7_time_ms(uuid7(clock_ms=1_800_000_000_123)) >= 1_800_000_000_123
