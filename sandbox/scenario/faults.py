"""Fault injection: kill or stop workers, pause or restart Redis, break the producer mid-job.

Each fault fires once, on a trigger: a time offset from the first send, or a
number of finished jobs. Faults that act on the producer set a flag the
producer thread reads before its next job.
"""

import logging
import signal
import threading
import time
from dataclasses import dataclass, field

import redis
from rq.registry import StartedJobRegistry

from sandbox.contract import keys

logger = logging.getLogger(__name__)

FAULT_TYPES = (
    "kill-worker",
    "stop-worker",
    "pause-redis",
    "restart-redis",
    "producer-crash",
    "short-ttl",
    "long-jobs",
)

#: Faults that need the Redis the sandbox started itself.
EMBEDDED_ONLY = ("pause-redis", "restart-redis")


@dataclass(frozen=True, kw_only=True)
class Fault:
    """One fault of a scenario and its trigger."""

    type: str
    #: Seconds after the first scheduled send; None when the trigger is a finished count.
    at_s: float | None = None
    #: Fire once this many jobs of the run have finished.
    after_finished: int | None = None
    #: How long Redis stays paused (pause-redis), in seconds.
    duration_s: float = 1.0
    #: Start a replacement worker after a kill or stop.
    replace: bool = False
    #: Jobs the producer-side fault applies to (producer-crash, short-ttl, long-jobs).
    count: int = 1
    #: Job hash TTL in seconds for short-ttl jobs.
    ttl_s: int = 1
    #: Seconds of work for long-jobs jobs, meant to exceed the workers' job timeout.
    work_s: float = 5.0
    #: The fault as the scenario names it in reports, e.g. ``faults[0] kill-worker``.
    label: str = ""


@dataclass
class ProducerFaults:
    """Producer-side faults waiting for the next jobs; the producer thread consumes them."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    crash_next: int = 0
    short_ttl: list[tuple[int, int]] = field(default_factory=list)  # (jobs left, ttl seconds)
    long_jobs: list[tuple[int, float]] = field(default_factory=list)  # (jobs left, work seconds)

    def take(self) -> tuple[bool, int | None, float | None]:
        """Return ``(crash before RPUSH, ttl override, work override)`` for the next job."""
        with self.lock:
            crash = self.crash_next > 0
            if crash:
                self.crash_next -= 1
            ttl = _take(self.short_ttl)
            work = _take(self.long_jobs)
        return crash, ttl, work


def _take(pending: list) -> object | None:
    if not pending:
        return None
    left, value = pending[0]
    if left <= 1:
        pending.pop(0)
    else:
        pending[0] = (left - 1, value)
    return value


@dataclass
class FaultRecord:
    label: str
    type: str
    fired_at_s: float | None = None
    detail: str = ""

    def as_dict(self) -> dict:
        return {"fault": self.label, "type": self.type, "fired_at_s": self.fired_at_s, "detail": self.detail}


class FaultInjector:
    """Fire a run's faults when their triggers are reached; the runner calls ``tick`` from its monitor loop."""

    def __init__(self, runner, faults: tuple[Fault, ...]):
        self.runner = runner
        self.pending = list(faults)
        self.records = [FaultRecord(fault.label, fault.type) for fault in faults]
        self._record_of = {id(fault): record for fault, record in zip(faults, self.records)}
        self.producer = ProducerFaults()
        #: Job ids held by workers this injector killed, with the worker name.
        self.killed_jobs: dict[str, str] = {}
        self._resume_timers: list[threading.Timer] = []

    def tick(self, elapsed_s: float, finished: int) -> None:
        for fault in list(self.pending):
            due = (fault.at_s is not None and elapsed_s >= fault.at_s) or (
                fault.after_finished is not None and finished >= fault.after_finished
            )
            if not due:
                continue
            record = self._record_of[id(fault)]
            try:
                fired = self._fire(fault, record)
            except (redis.RedisError, OSError) as error:
                logger.warning("Fault %s failed: %s", fault.label, error)
                record.detail = f"failed: {error}"
                fired = True
            if fired:
                record.fired_at_s = round(elapsed_s, 3)
                self.pending.remove(fault)
                self.runner.emit_notice(f"fault {fault.label}: {record.detail}")

    def _fire(self, fault: Fault, record: FaultRecord) -> bool:
        handler = getattr(self, "_" + fault.type.replace("-", "_"))
        return handler(fault, record)

    def _busy_worker(self):
        """Return ``(index, name, job id)`` of a live pool worker that is running a job, or None."""
        pool = self.runner.pool
        if pool is None:
            return None
        connection = self.runner.connection
        live = [worker for worker in pool.workers if worker.alive]
        pipe = connection.pipeline(transaction=False)
        for worker in live:
            pipe.hmget(f"rq:worker:{worker.name}", ["state", "current_job"])
        for worker, (state, job_id) in zip(live, pipe.execute()):
            if state in (b"busy", "busy") and job_id:
                return worker.index, worker.name, job_id.decode() if isinstance(job_id, bytes) else job_id
        return None

    def _kill_worker(self, fault: Fault, record: FaultRecord) -> bool:
        return self._signal_busy_worker(fault, record, signal.SIGKILL, "killed with SIGKILL")

    def _stop_worker(self, fault: Fault, record: FaultRecord) -> bool:
        return self._signal_busy_worker(fault, record, signal.SIGTERM, "sent SIGTERM (warm shutdown)")

    def _signal_busy_worker(self, fault, record, sig, what) -> bool:
        busy = self._busy_worker()
        if busy is None:
            return False  # wait for a worker to hold a job
        index, name, job_id = busy
        self.runner.pool.kill(index, sig, group=sig == signal.SIGKILL)
        if sig == signal.SIGKILL:
            self.killed_jobs[job_id] = name
            self.runner.expected_exits.add(name)
        else:
            self.runner.expected_exits.add(name)
        record.detail = f"worker {name} {what} while holding job {job_id}"
        if fault.replace:
            added = self.runner.pool.add(1)
            record.detail += f"; replacement {added[0].name} started"
        return True

    def _pause_redis(self, fault: Fault, record: FaultRecord) -> bool:
        # A timer resumes Redis, so the monitor keeps ticking (and the deadline keeps counting) meanwhile.
        process = self.runner.redis_process
        process.pause()
        timer = threading.Timer(fault.duration_s, self._resume_redis)
        timer.daemon = True
        self._resume_timers.append(timer)
        timer.start()
        record.detail = f"Redis paused (SIGSTOP) for {fault.duration_s:g}s, then resumed (SIGCONT)"
        return True

    def _resume_redis(self) -> None:
        try:
            self.runner.redis_process.resume()
        except OSError as error:
            logger.error("Resuming Redis failed: %s", error)

    def finish(self) -> None:
        """Resume a Redis still paused when the run ends, so stopping it and reading the report work."""
        for timer in self._resume_timers:
            if timer.is_alive():
                timer.cancel()
                self._resume_redis()

    def _restart_redis(self, fault: Fault, record: FaultRecord) -> bool:
        process = self.runner.redis_process
        before = process.pid
        started = time.monotonic()
        process.restart()
        persistence = self.runner.scenario.redis.persistence
        record.detail = (
            f"Redis restarted (pid {before} -> {process.pid}, persistence {persistence}) "
            f"in {time.monotonic() - started:.2f}s"
        )
        return True

    def _producer_crash(self, fault: Fault, record: FaultRecord) -> bool:
        with self.producer.lock:
            self.producer.crash_next += fault.count
        record.detail = f"the producer dies between HSET and RPUSH for the next {fault.count} job(s)"
        return True

    def _short_ttl(self, fault: Fault, record: FaultRecord) -> bool:
        with self.producer.lock:
            self.producer.short_ttl.append((fault.count, fault.ttl_s))
        record.detail = f"the next {fault.count} job(s) get a {fault.ttl_s}s TTL"
        return True

    def _long_jobs(self, fault: Fault, record: FaultRecord) -> bool:
        with self.producer.lock:
            self.producer.long_jobs.append((fault.count, fault.work_s))
        record.detail = f"the next {fault.count} job(s) work {fault.work_s:g}s"
        return True

    def recover_abandoned(self, force: bool = False) -> dict[str, str]:
        """Let RQ itself clean up the started registries for jobs whose worker was killed.

        RQ moves a job whose started-registry entry expired to the failed registry
        (or requeues it when it has retries left). A killed worker's entry only
        expires after its heartbeat TTL, so the cleanup runs with a timestamp just
        past that entry's score. RQ sweeps every entry scoring below that
        timestamp, so while a live job's entry scores lower the cleanup waits
        (returns an empty dict) unless ``force`` is set, as after all workers stopped.
        """
        if not self.killed_jobs:
            return {}
        connection = self.runner.connection
        for queue in self.runner.scenario.workers.queues:
            registry = StartedJobRegistry(queue, connection=connection)
            entries = connection.zrange(registry.key, 0, -1, withscores=True)
            dead = [score for member, score in entries if keys.started_member_job_id(member) in self.killed_jobs]
            if not dead:
                continue
            threshold = max(dead)
            live_below = [score for member, score in entries if keys.started_member_job_id(member) not in self.killed_jobs and score <= threshold]
            if live_below and not force:
                return {}
            registry.cleanup(timestamp=threshold + 0.001)
        return {job_id: where_abandoned(connection, job_id, self.runner.scenario.workers.queues) for job_id in self.killed_jobs}


def where_abandoned(connection: redis.Redis, job_id: str, queues) -> str:
    """Name what RQ did with an abandoned job: requeued, moved to the failed registry, or left started."""
    for queue in queues:
        if connection.lpos(keys.queue_key(queue), job_id) is not None:
            return "requeued"
        if connection.lpos(keys.intermediate_queue_key(queue), job_id) is not None:
            return "left in the intermediate list"
        if connection.zscore(keys.registry_key("failed", queue), job_id) is not None:
            return "moved to the failed registry"
        started = keys.registry_key("started", queue)
        if any(keys.started_member_job_id(member) == job_id for member in connection.zrange(started, 0, -1)):
            return "left in the started registry"
    status = connection.hget(keys.job_key(job_id), "status")
    return f"status {status.decode() if status else 'gone'}"
