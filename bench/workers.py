"""Worker per-job overhead on no-op jobs, from the timestamps RQ records.

Each setup runs one worker on one queue. A drain enqueues DRAIN_JOBS no-op jobs
in one batch while the worker is idle and waits until all are finished. A
low-load phase then sends LOW_LOAD_JOBS jobs one at a time at LOW_LOAD_RATE.
From RQ's `started_at` and `ended_at`:

- cycle: the gap between the `started_at` of consecutive jobs in the drain,
  i.e. everything a worker spends per job (dequeue, fork, run, result, metrics);
- processing: `ended_at - started_at`;
- drain rate: jobs / (last `ended_at` - first `started_at`);
- queue wait at low load: `started_at - created_at`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import redis

from bench.results import Section, Table, Target
from bench.stats import median, ms, percentile, rate, ratio, spread, times
from sandbox.contract import keys
from sandbox.contract.profiles import ProfileOptions
from sandbox.monitor.harvest import JobRecord, read_jobs
from sandbox.producer.pacing import Pacer, PhasePlan, schedule
from sandbox.producer.publisher import Publisher
from sandbox.worker.pool import WorkerPool, WorkerSpec

logger = logging.getLogger(__name__)

FUNCTION = "sandbox.worker.jobs.process_noop"
QUEUE = "bench-workers"
DRAIN_JOBS = 300
LOW_LOAD_JOBS = 20
LOW_LOAD_RATE = 10.0
#: Seconds allowed for a worker to register and for a drain to finish.
READY_TIMEOUT_S = 30.0
DRAIN_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 10.0
#: A plain rq worker sometimes hangs in its pubsub teardown after SIGTERM. Its
#: jobs are measured by then, so it is killed sooner.
CLI_STOP_TIMEOUT_S = 3.0
POLL_S = 0.02

PLAIN_SIMPLE = "rq worker -w rq.SimpleWorker"


@dataclass(frozen=True)
class Setup:
    """One way of running a worker: the sandbox's pool in a mode, or rq's own CLI with a worker class."""

    label: str
    #: "pool" or "rq-cli".
    kind: str
    #: Pool mode, or the dotted worker class for the rq CLI.
    target: str
    forks: bool


SETUPS = (
    Setup("pool process (MetricsWorker, fork per job)", "pool", "process", True),
    Setup("pool simple (MetricsSimpleWorker)", "pool", "simple", False),
    Setup("pool thread (ThreadWorker, 1 thread)", "pool", "thread", False),
    Setup(PLAIN_SIMPLE, "rq-cli", "rq.SimpleWorker", False),
    Setup("rq worker -w sandbox MetricsSimpleWorker", "rq-cli", "sandbox.worker.classes.MetricsSimpleWorker", False),
    Setup("rq worker -w rq.Worker (fork per job)", "rq-cli", "rq.Worker", True),
)


@dataclass
class Sample:
    """One repeat of one setup."""

    ready_s: float
    #: The worker did not stop within its timeout after SIGTERM and was killed.
    killed: bool
    drain_rate: float
    cycle_p50_ms: float
    processing_p50_ms: float
    wait_p50_ms: float


def _rq_executable() -> str:
    beside = Path(sys.executable).with_name("rq")
    return str(beside) if beside.exists() else "rq"


def _worker_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def _log_tail(path: Path, lines: int = 10) -> str:
    # The log sits in a temporary folder that is gone once the error propagates, so quote it.
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(log {path} unreadable: {error})"


def _wait_registered(connection: redis.Redis, name: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not connection.sismember(keys.WORKERS_SET, f"rq:worker:{name}"):
        if process.poll() is not None:
            raise RuntimeError(
                f"rq worker {name} exited with {process.returncode} while starting; last log lines:\n"
                f"{_log_tail(log_path)}"
            )
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"rq worker {name} did not register within {READY_TIMEOUT_S:g} s; last log lines:\n"
                f"{_log_tail(log_path)}"
            )
        time.sleep(POLL_S)


def _stop_process(process: subprocess.Popen) -> bool:
    """Stop the worker warmly and kill it when it lingers. Return whether it had to be killed."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=CLI_STOP_TIMEOUT_S)
        return False
    except subprocess.TimeoutExpired:
        logger.info("Worker pid %s still running %g s after SIGTERM, killing it", process.pid, CLI_STOP_TIMEOUT_S)
        process.kill()
        process.wait()
        return True


@dataclass
class Stop:
    """Outcome of stopping the worker of a `running_worker` block, set once the block is left."""

    killed: bool = False


@contextmanager
def running_worker(setup: Setup, redis_url: str, connection: redis.Redis, state_dir: Path) -> Iterator[Stop]:
    """Start one worker of `setup`, wait until it is registered, stop it on exit."""
    stop = Stop()
    if setup.kind == "pool":
        pool = WorkerPool(WorkerSpec(
            redis_url=redis_url, queues=(QUEUE,), mode=setup.target, name_prefix="bench", state_dir=state_dir,
        ))
        try:
            pool.start()
            pool.wait_ready(timeout=READY_TIMEOUT_S)
            yield stop
        finally:
            exits = pool.stop(timeout=STOP_TIMEOUT_S)
            stop.killed = any(exit_.exit_code == -signal.SIGKILL for exit_ in exits)
        return

    name = f"bench-cli-{time.time_ns()}"
    log_path = state_dir / f"{name}.log"
    command = [
        _rq_executable(), "worker", "--url", redis_url, "--name", name, "--worker-class", setup.target,
        "--serializer", "rq.serializers.JSONSerializer", QUEUE,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_worker_env(), start_new_session=True,
        )
    try:
        _wait_registered(connection, name, process, log_path)
        yield stop
    finally:
        stop.killed = _stop_process(process)


def _wait_finished(connection: redis.Redis, expected: int) -> None:
    """Poll the finished registry (one ZCARD per round) until it contains `expected` jobs."""
    finished_key = keys.registry_key("finished", QUEUE)
    failed_key = keys.registry_key("failed", QUEUE)
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        pipe = connection.pipeline(transaction=False)
        pipe.zcard(finished_key)
        pipe.zcard(failed_key)
        finished, failed = pipe.execute()
        if failed:
            raise RuntimeError(f"{failed} no-op jobs failed; see the worker log")
        if finished >= expected:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"only {finished} of {expected} jobs finished within {DRAIN_TIMEOUT_S:g} s")
        time.sleep(POLL_S)


def _span_ms(start, end) -> float:
    return (end - start).total_seconds() * 1000.0


def drain(connection: redis.Redis, publisher: Publisher, jobs: int = DRAIN_JOBS) -> list[JobRecord]:
    ids = publisher.enqueue_many(QUEUE, FUNCTION, [[f"noop_{n}"] for n in range(jobs)])
    _wait_finished(connection, jobs)
    return read_jobs(connection, ids)


def low_load(connection: redis.Redis, publisher: Publisher, already: int) -> list[JobRecord]:
    """Send LOW_LOAD_JOBS one at a time at LOW_LOAD_RATE to an idle worker."""
    offsets = [offset for _, offset in schedule([PhasePlan(LOW_LOAD_JOBS, LOW_LOAD_RATE)])]
    ids = [publisher.enqueue(QUEUE, FUNCTION, [f"slow_{index}"]) for index, _ in Pacer(offsets)]
    _wait_finished(connection, already + len(ids))
    return read_jobs(connection, ids)


def sample(setup: Setup, redis_url: str, connection: redis.Redis, state_dir: Path) -> Sample:
    connection.flushall()
    publisher = Publisher(connection, ProfileOptions(name="java"))

    start = time.perf_counter()
    with running_worker(setup, redis_url, connection, state_dir) as stop:
        ready_s = time.perf_counter() - start
        drained = drain(connection, publisher)
        waited = low_load(connection, publisher, len(drained))

    started = sorted(record.started_at for record in drained)
    cycles = [_span_ms(a, b) for a, b in zip(started, started[1:])]
    processing = [_span_ms(r.started_at, r.ended_at) for r in drained]
    span_s = _span_ms(started[0], max(r.ended_at for r in drained)) / 1000.0
    waits = [_span_ms(r.created_at, r.started_at) for r in waited]
    return Sample(
        ready_s=ready_s,
        killed=stop.killed,
        drain_rate=len(drained) / span_s,
        cycle_p50_ms=percentile(cycles, 50),
        processing_p50_ms=percentile(processing, 50),
        wait_p50_ms=percentile(waits, 50),
    )


def measure(redis_url: str, connection: redis.Redis, repeats: int) -> Section:
    """Run every setup `repeats` times, interleaved, and compare drain rates within each repeat."""
    section = Section("Workers: per-job overhead on no-op jobs (one worker)")
    samples: dict[str, list[Sample]] = {setup.label: [] for setup in SETUPS}

    with tempfile.TemporaryDirectory(prefix="rq-sandbox-bench-") as tmp:
        for repeat in range(repeats):
            for setup in SETUPS:
                state_dir = Path(tmp) / f"{setup.kind}-{setup.target}-{repeat}"
                state_dir.mkdir(parents=True)
                result = sample(setup, redis_url, connection, state_dir)
                samples[setup.label].append(result)
                logger.info(
                    "Workers %s, repeat %d: %.0f jobs/s, cycle p50 %.2f ms, wait p50 %.2f ms",
                    setup.label, repeat + 1, result.drain_rate, result.cycle_p50_ms, result.wait_p50_ms,
                )
    connection.flushall()

    def rate_ratio(label: str, baseline: str) -> float:
        pairs = zip(samples[label], samples[baseline])
        return median([ratio(a.drain_rate, b.drain_rate) for a, b in pairs])

    def med(label: str, attribute: str) -> float:
        return median([getattr(s, attribute) for s in samples[label]])

    rows = []
    for setup in SETUPS:
        rates = [s.drain_rate for s in samples[setup.label]]
        rows.append([
            setup.label,
            ms(1000.0 / median(rates)),
            f"{rate(median(rates))} ({spread(rates)})",
            times(rate_ratio(setup.label, PLAIN_SIMPLE)),
            ms(med(setup.label, "cycle_p50_ms")),
            ms(med(setup.label, "processing_p50_ms")),
            ms(med(setup.label, "wait_p50_ms")),
            f"{med(setup.label, 'ready_s'):.2f}",
        ])
    section.tables.append(Table(
        ["worker", "wall ms/job", "drain jobs/s (range)", "vs plain SimpleWorker", "cycle p50 ms", "processing p50 ms",
         f"queue wait p50 ms at {LOW_LOAD_RATE:g}/s", "start to registered s"],
        rows,
    ))

    for setup in SETUPS[:3]:
        limit = 15.0 if setup.forks else 5.0
        cycle = med(setup.label, "cycle_p50_ms")
        section.targets.append(Target(
            f"per-job overhead p50, {setup.label}", f"< {limit:g} ms", f"{ms(cycle)} ms", cycle < limit,
        ))
    for label in ("rq worker -w sandbox MetricsSimpleWorker", "pool simple (MetricsSimpleWorker)"):
        value = rate_ratio(label, PLAIN_SIMPLE)
        # Three decimals, so a ratio just under the goal does not print as the goal itself.
        section.targets.append(Target(
            f"{label} drain rate vs plain rq SimpleWorker", ">= 0.95x", f"{value:.3f}x", value >= 0.95,
        ))

    killed = {label: sum(s.killed for s in runs) for label, runs in samples.items() if any(s.killed for s in runs)}
    if killed:
        section.notes.append(
            "Workers that did not stop after SIGTERM and were killed once measured: "
            + ", ".join(f"{label} ({count} of {repeats})" for label, count in killed.items())
            + ". The drain and wait numbers come before the stop, so they are unaffected."
        )
    section.notes.append(
        f"{DRAIN_JOBS} no-op jobs drained per repeat, then {LOW_LOAD_JOBS} sent one at a time at "
        f"{LOW_LOAD_RATE:g}/s; medians over {repeats} repeats of each per-repeat p50. Cycle is the gap "
        "between consecutive `started_at` in the drain; jobs were written by the java profile."
    )
    return section
