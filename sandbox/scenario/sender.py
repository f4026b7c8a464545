"""The producer side of a run: send every job of the scenario's phases on its schedule."""

import logging
import time
from dataclasses import dataclass

import redis

from sandbox.contract.ids import uuid7
from sandbox.contract.profiles import ProfileOptions
from sandbox.producer.pacing import PhasePlan, schedule
from sandbox.producer.publisher import Publisher, RetryPolicy
from sandbox.scenario.faults import ProducerFaults
from sandbox.scenario.model import Scenario
from sandbox.worker.jobs import WORK_OVERRIDE_KWARG

logger = logging.getLogger(__name__)

#: Jobs per pipelined round trip in batched mode.
BATCH_SIZE = 500


@dataclass
class SentJob:
    job_id: str
    #: Wall-clock time the job was due, seconds since the epoch.
    scheduled_at: float
    #: Seconds the sender was behind the schedule when it sent this job.
    lag_s: float


def _publisher(scenario: Scenario, connection: redis.Redis) -> Publisher:
    producer = scenario.producer
    options = ProfileOptions(
        name=producer.profile,
        clock_precision=producer.clock_precision,
        ttl_s=producer.ttl_s,
        description=producer.description,
        omit_fields=producer.omit_fields,
        extra_fields=dict(producer.extra_fields),
    )
    return Publisher(connection, options, retry=RetryPolicy())


def send_load(scenario: Scenario, connection: redis.Redis, state, faults: ProducerFaults) -> None:
    """Send the run's jobs open-loop, appending each to ``state.sent`` once its writes returned.

    Sets ``state.producer_error`` on a Redis error the retries could not cure, and
    ``state.producer_done`` when it stops for any reason.
    """
    publisher = _publisher(scenario, connection)
    due = schedule([PhasePlan(p.messages, p.rate_per_s, p.ramp) for p in scenario.phases])
    try:
        if scenario.producer.batched:
            _send_batched(scenario, publisher, state, due)
        else:
            _send_one_by_one(scenario, publisher, state, faults, due)
    except (redis.RedisError, OSError) as error:
        logger.error("Producer failed after %d jobs: %s", len(state.sent), error)
        state.producer_error = error
    finally:
        state.producer_retries = {
            "retries": publisher.retries,
            "hashes_found_on_retry": publisher.hashes_found_on_retry,
            "pushes_found_on_retry": publisher.pushes_found_on_retry,
        }
        state.producer_done.set()


def _send_one_by_one(scenario, publisher, state, faults, due) -> None:
    producer = scenario.producer
    counters = [0] * len(scenario.phases)
    start_wall = time.time()
    start = time.perf_counter()

    for number, (phase_index, offset) in enumerate(due, start=1):
        if state.stop_producing.is_set():
            return
        delay = start + offset - time.perf_counter()
        if delay > 0 and state.stop_producing.wait(delay):
            return

        phase = scenario.phases[phase_index]
        payload = phase.render_payload(number, counters[phase_index])
        counters[phase_index] += 1

        crash, ttl_s, work_s = faults.take()
        kwargs = {WORK_OVERRIDE_KWARG: work_s * 1000.0} if work_s else None
        job_id = uuid7()
        if crash:
            state.orphaned.add(job_id)
        if ttl_s:
            state.short_ttl[job_id] = ttl_s

        # The monitor reads a job only once it is in `sent`, so the job is appended after its writes.
        # A job whose writes failed is appended too, so it is still accounted for.
        try:
            publisher.enqueue(producer.queue, producer.function, [payload], kwargs=kwargs,
                              job_id=job_id, ttl_s=ttl_s, skip_push=crash)
        finally:
            lag = max(0.0, time.perf_counter() - (start + offset))
            state.sent.append(SentJob(job_id, start_wall + offset, lag))


def _send_batched(scenario, publisher, state, due) -> None:
    """Send every job already due in one pipelined round trip (at most BATCH_SIZE jobs each).

    The commands per job are the writer's own (HSET, EXPIRE, RPUSH) but they travel
    together, so this mode is for load, not for reproducing the writer's timing.
    Producer-side faults do not apply here.
    """
    producer = scenario.producer
    counters = [0] * len(scenario.phases)
    start_wall = time.time()
    start = time.perf_counter()
    index = 0

    while index < len(due):
        if state.stop_producing.is_set():
            return
        delay = start + due[index][1] - time.perf_counter()
        if delay > 0 and state.stop_producing.wait(delay):
            return

        now = time.perf_counter() - start
        batch = []
        while index < len(due) and len(batch) < BATCH_SIZE and due[index][1] <= now:
            phase_index, offset = due[index]
            phase = scenario.phases[phase_index]
            payload = phase.render_payload(index + 1, counters[phase_index])
            counters[phase_index] += 1
            batch.append((uuid7(), offset, [payload]))
            index += 1

        try:
            publisher.enqueue_many(producer.queue, producer.function, [args for _, _, args in batch],
                                   job_ids=[job_id for job_id, _, _ in batch])
        finally:
            sent_at = time.perf_counter()
            state.sent.extend(
                SentJob(job_id, start_wall + offset, max(0.0, sent_at - (start + offset)))
                for job_id, offset, _ in batch
            )
