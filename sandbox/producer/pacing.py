"""Open-loop arrival schedules: when each job of a load is due to be sent.

A closed loop (send, then send the next) lets a slow sender hide queueing delay,
because jobs are never sent while the system is behind. Here every job gets a
scheduled time up front, latency is measured from that time, and a late sender
sends at once without skipping.
"""

import math
import time
from dataclasses import dataclass
from typing import Iterator


@dataclass(frozen=True)
class PhasePlan:
    """One phase of a load: ``messages`` jobs at a constant rate, a ramp, or all at once."""

    messages: int
    #: Jobs per second; ``None`` with no ramp means a burst (every job due at the phase start).
    rate_per_s: float | None = None
    #: Linear ramp from the first rate to the second, jobs per second.
    ramp: tuple[float, float] | None = None


def phase_offsets(plan: PhasePlan) -> list[float]:
    """Return each job's due time in seconds from the phase start."""
    n = plan.messages
    if plan.ramp is not None:
        return _ramp_offsets(n, *plan.ramp)
    if plan.rate_per_s is None:
        return [0.0] * n
    interval = 1.0 / plan.rate_per_s
    return [i * interval for i in range(n)]


def _ramp_offsets(n: int, start_rate: float, end_rate: float) -> list[float]:
    # The rate grows linearly over the phase length T = 2n / (r0 + r1), so the number
    # sent by time t is r0*t + (r1 - r0)*t^2 / (2T); job i is due when that reaches i.
    length = 2.0 * n / (start_rate + end_rate)
    slope = (end_rate - start_rate) / length
    offsets = []
    for i in range(n):
        if abs(slope) < 1e-12:
            offsets.append(i / start_rate)
        else:
            offsets.append((-start_rate + math.sqrt(start_rate * start_rate + 2.0 * slope * i)) / slope)
    return offsets


def phase_length(plan: PhasePlan) -> float:
    """Seconds from the phase start until the next phase may start."""
    if plan.messages == 0:
        return 0.0
    if plan.ramp is not None:
        return 2.0 * plan.messages / (plan.ramp[0] + plan.ramp[1])
    if plan.rate_per_s is None:
        return 0.0
    return plan.messages / plan.rate_per_s


def schedule(plans: list[PhasePlan]) -> list[tuple[int, float]]:
    """Return ``(phase index, offset from the run start)`` for every job, in send order."""
    due = []
    phase_start = 0.0
    for index, plan in enumerate(plans):
        due.extend((index, phase_start + offset) for offset in phase_offsets(plan))
        phase_start += phase_length(plan)
    return due


class Pacer:
    """Release jobs at their due times against a monotonic clock."""

    def __init__(self, offsets: list[float], clock=time.perf_counter, sleep=time.sleep):
        self.offsets = offsets
        self._clock = clock
        self._sleep = sleep
        self.start = None

    def __iter__(self) -> Iterator[tuple[int, float]]:
        """Yield ``(index, offset)`` when each job is due; never skip one when behind."""
        self.start = self._clock()
        for index, offset in enumerate(self.offsets):
            delay = self.start + offset - self._clock()
            if delay > 0:
                self._sleep(delay)
            yield index, offset

    def lag(self, offset: float) -> float:
        """Seconds the sender is behind the job due at ``offset``."""
        return max(0.0, self._clock() - (self.start + offset))
