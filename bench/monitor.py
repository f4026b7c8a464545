"""Monitor snapshots with many jobs in Redis: round trips, commands and latency.

Redis is filled with java-profile job hashes whose ids sit in two queues and
their finished and failed registries. Each snapshot is timed next to a baseline
taken in the same loop: a pipeline with one LLEN and one ZCARD, the cheapest
read there is. Round trips are counted on the client (`Pipeline.execute` and
the socket writes under it); `INFO commandstats` shows what the server ran.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import redis
from redis.client import Pipeline
from redis.connection import AbstractConnection

from bench.results import Section, Table, Target
from bench.stats import median, ms, percentile, ratio, times
from sandbox.contract import keys
from sandbox.contract.ids import uuid7
from sandbox.contract.profiles import ProfileOptions, java_job_hash
from sandbox.contract.timestamps import now_instant
from sandbox.monitor.snapshot import JOB_WINDOW, Monitor

logger = logging.getLogger(__name__)

FUNCTION = "sandbox.worker.jobs.process_noop"
QUEUES = ("bench-monitor-a", "bench-monitor-b")
#: Jobs in Redis for each measured size; the target is about the largest.
SIZES = (1_000, 100_000)
#: Share of each queue's jobs per place: waiting in the list, finished, failed.
SHARES = {"queued": 0.2, "finished": 0.7, "failed": 0.1}
#: Commands per pipeline while filling Redis.
FILL_CHUNK = 2_000
#: Snapshots (and as many baseline reads) timed per repeat.
SNAPSHOTS = 20
#: Snapshots before timing, so the job window is full as in a running dashboard.
WARM_UP = 3
#: Commands that change data; a snapshot must send none of them.
WRITES = {"hset", "hdel", "del", "unlink", "zadd", "zrem", "zremrangebyscore", "rpush", "lpush", "lrem",
          "lmove", "expire", "set", "sadd", "srem"}


@dataclass
class Counts:
    """Client-side round trips seen while a `counting` block runs."""

    executes: int = 0
    sends: int = 0


@contextmanager
def counting() -> Iterator[Counts]:
    """Count `Pipeline.execute` calls and the packed-command writes to the socket."""
    counts = Counts()
    execute = Pipeline.execute
    send = AbstractConnection.send_packed_command

    def counted_execute(self, *args, **kwargs):
        counts.executes += 1
        return execute(self, *args, **kwargs)

    def counted_send(self, *args, **kwargs):
        counts.sends += 1
        return send(self, *args, **kwargs)

    Pipeline.execute = counted_execute
    AbstractConnection.send_packed_command = counted_send
    try:
        yield counts
    finally:
        Pipeline.execute = execute
        AbstractConnection.send_packed_command = send


def fill(connection: redis.Redis, jobs: int) -> tuple[float, list[str]]:
    """Write `jobs` job hashes and spread their ids over QUEUES and registries.

    Return the seconds it took and JOB_WINDOW ids spread evenly over all jobs,
    for the monitor's job window.
    """
    start = time.perf_counter()
    now = now_instant("micros")
    template = java_job_hash(uuid7(), QUEUES[0], FUNCTION, ["Test_0"], {}, now, ProfileOptions(name="java"))
    # Registries score by expiry (finished, failed) as rq does; the values only need to be in the future.
    expires = time.time() + 3600

    plan = []
    for queue in QUEUES:
        per_queue = jobs // len(QUEUES)
        for kind, share in SHARES.items():
            plan += [(queue, kind)] * round(per_queue * share)

    step = max(1, len(plan) // JOB_WINDOW)
    window: list[str] = []
    pipe = connection.pipeline(transaction=False)
    batch: dict[tuple[str, str], list[str]] = {}
    for number, (queue, kind) in enumerate(plan, 1):
        job_id = uuid7()
        job_hash = dict(template, id=job_id.encode(), origin=queue.encode(), status=kind.encode())
        if kind != "queued":
            job_hash.update(started_at=now.encode(), ended_at=now.encode(), worker_name=b"bench-worker")
        pipe.hset(keys.job_key(job_id), mapping=job_hash)
        batch.setdefault((queue, kind), []).append(job_id)
        if number % step == 0 and len(window) < JOB_WINDOW:
            window.append(job_id)
        if number % FILL_CHUNK == 0 or number == len(plan):
            for (where, what), ids in batch.items():
                if what == "queued":
                    pipe.rpush(keys.queue_key(where), *ids)
                else:
                    pipe.zadd(keys.registry_key(what, where), {member: expires for member in ids})
            pipe.execute()
            batch = {}
    connection.sadd(keys.QUEUES_SET, *(keys.queue_key(queue) for queue in QUEUES))
    return time.perf_counter() - start, window


def cheapest_read(connection: redis.Redis) -> None:
    """Send one LLEN and one ZCARD in one pipeline: the baseline."""
    pipe = connection.pipeline(transaction=False)
    pipe.llen(keys.queue_key(QUEUES[0]))
    pipe.zcard(keys.registry_key("finished", QUEUES[0]))
    pipe.execute()


def command_calls(connection: redis.Redis) -> dict[str, tuple[int, int]]:
    """Return calls and server microseconds per command from INFO commandstats."""
    stats = connection.info("commandstats")
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"])) for name, v in stats.items()}


@dataclass
class SizeResult:
    jobs: int
    fill_s: float
    keys: int
    #: Pipelines executed and socket writes per snapshot, one entry per timed snapshot.
    executes: list[int] = field(default_factory=list)
    sends: list[int] = field(default_factory=list)
    #: Per-repeat medians in ms: the whole `snapshot()` call, its `Pipeline.execute` alone, and the baseline.
    call_ms: list[float] = field(default_factory=list)
    execute_ms: list[float] = field(default_factory=list)
    baseline_ms: list[float] = field(default_factory=list)
    call_p90_ms: list[float] = field(default_factory=list)
    #: Commands the server ran per snapshot, by name, and their server time in microseconds.
    commands: dict[str, float] = field(default_factory=dict)
    server_us: float = 0.0
    jobs_read: int = 0


def server_side(
    connection: redis.Redis, monitor: Monitor, snapshots: int = SNAPSHOTS
) -> tuple[dict[str, float], float]:
    """Run snapshots between two INFO commandstats; return commands and server microseconds per snapshot."""
    before = command_calls(connection)
    for _ in range(snapshots):
        monitor.snapshot()
    after = command_calls(connection)

    commands, usec = {}, 0
    for name, (calls, spent) in after.items():
        old_calls, old_spent = before.get(name, (0, 0))
        # The INFO that took the second reading counts itself.
        if name == "info" or calls == old_calls:
            continue
        commands[name] = (calls - old_calls) / snapshots
        usec += spent - old_spent
    return commands, usec / snapshots


@dataclass
class Setting:
    """One size under test: its own database, the monitor that watches it and what was measured."""

    connection: redis.Redis
    monitor: Monitor
    result: SizeResult


def prepare(connection: redis.Redis, jobs: int, db: int) -> Setting:
    """Fill database `db` with `jobs` jobs and warm a monitor up on it."""
    kwargs = dict(connection.connection_pool.connection_kwargs, db=db)
    client = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
    client.flushdb()
    fill_s, window = fill(client, jobs)
    result = SizeResult(jobs, fill_s, client.dbsize())
    logger.info("Monitor: %d jobs written to db %d in %.1f s (%d keys)", jobs, db, fill_s, result.keys)

    # A full window is the most a snapshot reads, as in a dashboard that has seen many jobs.
    monitor = Monitor(client, queues=QUEUES)
    monitor.watch(window)
    for _ in range(WARM_UP):
        warm = monitor.snapshot()
    result.jobs_read = len(warm.jobs)
    result.commands, result.server_us = server_side(client, monitor)
    return Setting(client, monitor, result)


def time_repeat(setting: Setting, repeat: int) -> None:
    """Time SNAPSHOTS snapshots and as many baseline reads, one after the other, and record their medians."""
    result = setting.result
    calls, trips, base = [], [], []
    for _ in range(SNAPSHOTS):
        # Interleaved one by one, so a stall on the shared machine hits both sides alike.
        start = time.perf_counter()
        cheapest_read(setting.connection)
        base.append((time.perf_counter() - start) * 1000.0)

        with counting() as counts:
            start = time.perf_counter()
            snapshot = setting.monitor.snapshot()
            calls.append((time.perf_counter() - start) * 1000.0)
        trips.append(snapshot.latency_ms)
        result.executes.append(counts.executes)
        result.sends.append(counts.sends)

    result.call_ms.append(median(calls))
    result.call_p90_ms.append(percentile(calls, 90))
    result.execute_ms.append(median(trips))
    result.baseline_ms.append(median(base))
    logger.info("Monitor %d jobs, repeat %d: snapshot p50 %.2f ms (execute %.2f ms), baseline %.3f ms",
                result.jobs, repeat + 1, result.call_ms[-1], result.execute_ms[-1], result.baseline_ms[-1])


def _per_repeat_ratio(result: SizeResult) -> float:
    return median([ratio(a, b) for a, b in zip(result.call_ms, result.baseline_ms)])


def _trips(values: list[int]) -> str:
    low, high = min(values), max(values)
    return str(low) if low == high else f"{low}-{high}"


def measure(connection: redis.Redis, repeats: int) -> Section:
    section = Section(f"Monitor: one snapshot with up to {max(SIZES):,} jobs in Redis")
    # Each size has a database of its own, so the repeats of all sizes can alternate.
    settings = [prepare(connection, jobs, db) for db, jobs in enumerate(SIZES)]
    try:
        for repeat in range(repeats):
            for setting in settings:
                time_repeat(setting, repeat)
    finally:
        for setting in settings:
            setting.connection.close()
        connection.flushall()
    results = [setting.result for setting in settings]

    section.tables.append(Table(
        ["jobs in Redis", "keys", "pipelines per snapshot", "socket writes per snapshot",
         "commands per snapshot", "snapshot p50 ms", "snapshot p90 ms", "its `execute()` p50 ms",
         "baseline LLEN + ZCARD p50 ms", "snapshot vs baseline"],
        [[
            f"{r.jobs:,}", f"{r.keys:,}", _trips(r.executes), _trips(r.sends),
            f"{sum(r.commands.values()):.0f}", ms(median(r.call_ms)), ms(median(r.call_p90_ms)),
            ms(median(r.execute_ms)), ms(median(r.baseline_ms)), times(_per_repeat_ratio(r)),
        ] for r in results],
    ))

    largest = results[-1]
    one_trip = set(largest.executes) == {1} and set(largest.sends) == {1}
    section.targets.append(Target(
        f"A monitor refresh with {largest.jobs:,} jobs in Redis stays within one pipelined round trip",
        "1 round trip per snapshot",
        f"{_trips(largest.executes)} in each of {len(largest.executes)} snapshots, "
        f"p50 {ms(median(largest.call_ms))} ms vs {ms(median(largest.baseline_ms))} ms for LLEN + ZCARD",
        one_trip,
    ))

    writes = sorted(name for r in results for name in r.commands if name in WRITES)
    if writes:
        section.notes.append(f"Snapshots sent commands that write: {', '.join(writes)}.")
    mix = ", ".join(f"{name.upper()} {count:.0f}" for name, count in sorted(largest.commands.items()))
    spread = ", ".join(f"{share:.0%} {kind}" for kind, share in SHARES.items())
    section.notes.append(
        f"Jobs spread over {len(QUEUES)} queues ({spread}), each a java-profile hash; filling Redis took "
        f"{', '.join(f'{r.fill_s:.1f} s' for r in results)}. The monitor watches those queues and reads "
        f"{largest.jobs_read} job hashes (its full window) after {WARM_UP} warm-up snapshots. Per repeat "
        f"{SNAPSHOTS} snapshots, each right after a baseline read; medians over {repeats} repeats of the "
        "per-repeat p50 and p90, and the ratio is the median of per-repeat ratios. Snapshot is the whole "
        "`Monitor.snapshot()` call, building the pipeline and decoding the replies included; its `execute()` "
        "is `Snapshot.latency_ms`: packing, the round trip and parsing the replies. Server side, per snapshot "
        f"with {largest.jobs:,} jobs (INFO commandstats): {mix}; {largest.server_us / 1000.0:.2f} ms of Redis time."
    )
    return section
