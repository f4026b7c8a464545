"""Pacer accuracy: the java producer sending on an open-loop schedule of RATE jobs/s."""

import logging
import time

import redis

from bench.results import Section, Table, Target
from bench.stats import median, ms, percentile, rate
from sandbox.contract.profiles import ProfileOptions
from sandbox.producer.pacing import Pacer, PhasePlan, schedule
from sandbox.producer.publisher import Publisher

logger = logging.getLogger(__name__)

FUNCTION = "sandbox.worker.jobs.process_noop"
QUEUE = "bench-pacer"
RATE = 1_000.0
SECONDS = 3.0
#: Largest relative error of the achieved rate that meets the target.
TOLERANCE = 0.02


def paced_run(connection: redis.Redis) -> tuple[float, list[float]]:
    """Send RATE * SECONDS jobs on schedule; return the achieved rate and each job's send lag in ms.

    The lag is taken after the job's three commands returned, as the scenario
    runner records it. The achieved rate counts the intervals between the first
    and the last send, so a perfect pacer scores exactly RATE.
    """
    publisher = Publisher(connection, ProfileOptions(name="java"))
    offsets = [offset for _, offset in schedule([PhasePlan(int(RATE * SECONDS), RATE)])]
    pacer = Pacer(offsets)
    lags_ms = []
    sent_at = []
    for index, offset in pacer:
        publisher.enqueue(QUEUE, FUNCTION, [f"Test_{index}"])
        sent_at.append(time.perf_counter())
        lags_ms.append(pacer.lag(offset) * 1000.0)
    achieved = (len(sent_at) - 1) / (sent_at[-1] - sent_at[0])
    return achieved, lags_ms


def measure(connection: redis.Redis, repeats: int) -> Section:
    section = Section(f"Pacer: {RATE:,.0f} jobs/s for {SECONDS:g} s with the java producer")
    rates, p50s, p99s, maxima = [], [], [], []
    for repeat in range(repeats):
        connection.flushall()
        achieved, lags = paced_run(connection)
        rates.append(achieved)
        p50s.append(percentile(lags, 50))
        p99s.append(percentile(lags, 99))
        maxima.append(max(lags))
        logger.info("Pacer repeat %d: %.1f jobs/s, lag p50 %.3f ms, p99 %.3f ms",
                    repeat + 1, achieved, p50s[-1], p99s[-1])
    connection.flushall()

    achieved = median(rates)
    error = abs(achieved - RATE) / RATE
    section.tables.append(Table(
        ["target jobs/s", "achieved jobs/s", "error", "send lag p50 ms", "send lag p99 ms", "send lag max ms"],
        [[rate(RATE), f"{achieved:,.1f}", f"{error:.2%}", ms(median(p50s)), ms(median(p99s)), ms(median(maxima))]],
    ))
    section.targets.append(Target(
        "pacer achieved rate", f"within {TOLERANCE:.0%} of {RATE:,.0f}/s", f"{achieved:,.1f}/s ({error:.2%} off)",
        error <= TOLERANCE,
    ))
    section.notes.append(
        "Send lag: time from a job's due time to the return of its third command; "
        f"medians over {repeats} repeats of each repeat's p50, p99 and max."
    )
    return section
