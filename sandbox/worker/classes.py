"""RQ worker classes that record the job metrics, in fork, simple and thread mode.

Where the metrics are recorded: around `execute_job`, in the process (or thread)
that dequeued the job. In fork mode that is the parent, after the work horse has
exited. The parent then fetches the job again from Redis and records what RQ
stored there: the status, `created_at`, `started_at` and `ended_at`, and for a
failure the exception string of the latest result. The horse records nothing,
so a horse that dies loses no count, no job is counted twice, and all three
modes share one code path.
"""

from __future__ import annotations

import logging
import re
import signal
import socket
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import redis
from rq import SimpleWorker, Worker
from rq.utils import as_text, utcparse
from rq.exceptions import StopRequested
from rq.job import Job, JobStatus
from rq.results import Result
from rq.serializers import DefaultSerializer, JSONSerializer, resolve_serializer

from sandbox.worker.deathpenalty import NoOpDeathPenalty
from sandbox.worker.metrics import MetricsSink, WorkerInstruments, default_sink

logger = logging.getLogger(__name__)

#: Seconds a thread worker blocks on a dequeue before it checks for a stop request.
THREAD_DEQUEUE_TIMEOUT_S = 0.2
#: Seconds the pubsub thread waits per round, which bounds how long stopping it takes.
PUBSUB_WAIT_S = 0.2

_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)(?::|$)")


def process_name(prefix: str, pid: int, hostname: str | None = None) -> str:
    """Name a worker process: `<prefix>-<hostname>-<pid>`."""
    return f"{prefix}-{hostname or socket.gethostname()}-{pid}"


def worker_name(prefix: str, pid: int, index: int, hostname: str | None = None) -> str:
    """Name a worker like the deployed service does: `<prefix>-<hostname>-<pid>-<index>`."""
    return f"{process_name(prefix, pid, hostname)}-{index}"


def serializer_by_name(name: str) -> Any:
    """Resolve `json`, `pickle` or a dotted path to an RQ serializer."""
    if name == "json":
        return JSONSerializer
    if name == "pickle":
        return DefaultSerializer
    return resolve_serializer(name)


@dataclass(frozen=True)
class JobOutcome:
    """The status, timestamps and error type RQ recorded for a job after a worker ran it."""

    queue: str
    function: str
    status: str | None
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    error_type: str | None

    @property
    def attributes(self) -> dict[str, str]:
        return {"queue": self.queue, "function": self.function}


def error_type_from(exc_string: str | None, status: str | None) -> str:
    """Return the exception class name from the traceback text RQ stored for a failed job.

    RQ stores `traceback.format_exception` output, whose last line reads
    `module.ClassName: message`. A work horse that died without an exception
    leaves a plain sentence instead, which maps to `WorkHorseTerminated`.
    """
    lines = [line for line in (exc_string or "").strip().splitlines() if line.strip()]
    if lines:
        match = _EXCEPTION_LINE.match(lines[-1])
        if match:
            return match.group(1).rsplit(".", 1)[-1]
        if lines[-1].startswith("Work-horse terminated"):
            return "WorkHorseTerminated"
    if status == JobStatus.STOPPED:
        return "JobStopped"
    return "Unknown"


def _function_name(job: Job) -> str:
    """Return the job's function name, or a placeholder when its data cannot be deserialized.

    RQ fails such a job and carries on; reading `func_name` here must not crash
    the worker where RQ itself would not.
    """
    try:
        return job.func_name
    except Exception:  # noqa: BLE001 - any serializer error means the same here
        return "<undeserializable>"


_OUTCOME_FIELDS = ("status", "origin", "created_at", "started_at", "ended_at")


def fetch_outcome(job: Job, connection: redis.Redis, serializer: Any, job_class: type[Job] = Job) -> JobOutcome:
    """Read what RQ stored for the job after it ran: one HMGET, plus the latest result when it failed.

    When the job hash is gone (a result TTL of 0 deletes it at once), the
    outcome falls back to the fields of the job object the worker holds.
    """
    function = _function_name(job)
    values = [as_text(value) if value is not None else None for value in connection.hmget(job.key, _OUTCOME_FIELDS)]
    status, origin, created_at, started_at, ended_at = values
    if status is None:
        logger.warning("Job %s: gone from Redis after it ran; its outcome is unknown", job.id)
        return JobOutcome(job.origin, function, None, job.created_at, job.started_at, job.ended_at, None)

    error_type = None
    if status in (JobStatus.FAILED.value, JobStatus.STOPPED.value):
        result = Result.fetch_latest(job, serializer=serializer)
        exc_string = result.exc_string if result is not None and result.type == Result.Type.FAILED else None
        error_type = error_type_from(exc_string, status)

    return JobOutcome(
        queue=origin or job.origin,
        function=function,
        status=status,
        created_at=_parse(created_at),
        started_at=_parse(started_at),
        ended_at=_parse(ended_at),
        error_type=error_type,
    )


def outcome_in_process(job: Job, exc_string: str | None) -> JobOutcome | None:
    """Return the outcome from the job object RQ updated in this process, or None when it lacks one."""
    status = job.get_status(refresh=False)
    if status is None or job.ended_at is None and status == JobStatus.FINISHED:
        return None
    status_text = str(getattr(status, "value", status))
    error_type = None
    if status_text in (JobStatus.FAILED.value, JobStatus.STOPPED.value):
        error_type = error_type_from(exc_string, status_text)
    return JobOutcome(
        queue=job.origin,
        function=_function_name(job),
        status=status_text,
        created_at=job.created_at,
        started_at=job.started_at,
        ended_at=job.ended_at,
        error_type=error_type,
    )


def _parse(value: str | None) -> datetime | None:
    """Parse a timestamp the way RQ does; None when it is missing or RQ could not parse it either."""
    if not value:
        return None
    try:
        return utcparse(value)
    except ValueError:
        return None


def record_outcome(instruments: WorkerInstruments, outcome: JobOutcome) -> None:
    """Record one job run: counted as processed, then as succeeded or failed.

    A job that RQ requeued or scheduled for a retry counts as processed only.
    """
    attributes = outcome.attributes
    instruments.processed.add(1, attributes)

    if outcome.status == JobStatus.FINISHED.value:
        instruments.succeeded.add(1, attributes)
    elif outcome.status in (JobStatus.FAILED.value, JobStatus.STOPPED.value):
        instruments.failed.add(1, {**attributes, "error_type": outcome.error_type or "Unknown"})

    _record_span(instruments.processing_time, outcome.started_at, outcome.ended_at, attributes)
    _record_span(instruments.queue_wait_time, outcome.created_at, outcome.started_at, attributes)
    _record_span(instruments.total_time, outcome.created_at, outcome.ended_at, attributes)


def _record_span(histogram: Any, start: datetime | None, end: datetime | None, attributes: dict[str, str]) -> None:
    if start is None or end is None:
        return
    histogram.record((end - start).total_seconds() * 1000, attributes)


class MetricsMixin:
    """Record the job metrics around RQ's `execute_job`.

    `sink` defaults to the process-wide sink of `metrics.default_sink`.
    """

    def __init__(self, *args: Any, sink: MetricsSink | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.sink = sink or default_sink()
        self.warm_shutdown_requested = False
        #: Traceback text RQ passed to handle_job_failure for the job running in this process.
        self._exc_string: str | None = None

    def handle_job_failure(self, job: Job, queue: Any, started_job_registry=None, exc_string: str = "") -> None:
        self._exc_string = exc_string
        super().handle_job_failure(job, queue, started_job_registry=started_job_registry, exc_string=exc_string)

    def execute_job(self, job: Job, queue: Any) -> None:
        instruments = self.sink.instruments
        attributes = {"queue": job.origin, "function": _function_name(job)}

        self._exc_string = None
        stop: StopRequested | None = None
        instruments.concurrent.add(1, attributes)
        try:
            super().execute_job(job, queue)
        except StopRequested as requested:
            # RQ's SIGTERM handler raises this once the worker is no longer busy, which
            # can be in the last lines of execute_job, after the job's outcome is saved.
            stop = requested
        finally:
            instruments.concurrent.add(-1, attributes)

        # Held back for these few lines, the signal cannot cut the recording short.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
        try:
            self._record(job, instruments)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
        if stop is not None:
            raise stop

    def _record(self, job: Job, instruments: WorkerInstruments) -> None:
        # A SimpleWorker runs the job in this process, so the job object contains the
        # status and timestamps RQ just saved. A forked work horse kept them to itself.
        if isinstance(self, SimpleWorker):
            outcome = outcome_in_process(job, self._exc_string)
            if outcome is not None:
                record_outcome(instruments, outcome)
                return

        try:
            outcome = fetch_outcome(job, self.connection, self.serializer, self.job_class)
        except redis.exceptions.RedisError:
            # The job ran; losing its metrics must not stop the worker.
            logger.exception("Worker %s: cannot read the outcome of job %s", self.name, job.id)
            return
        record_outcome(instruments, outcome)

    def handle_warm_shutdown_request(self) -> None:
        self.warm_shutdown_requested = True
        super().handle_warm_shutdown_request()

    def subscribe(self) -> None:
        # RQ's own subscribe waits 60 s per pubsub round. With redis-py 8.2,
        # whose PubSubWorkerThread.stop() joins without a timeout, a warm
        # shutdown sometimes hung in teardown for up to that minute. A short
        # round bounds the wait.
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(
            sleep_time=PUBSUB_WAIT_S, daemon=True, exception_handler=self._pubsub_exception_handler
        )


class MetricsWorker(MetricsMixin, Worker):
    """An RQ `Worker` (a work horse forked per job) that records the job metrics."""


class MetricsSimpleWorker(MetricsMixin, SimpleWorker):
    """An RQ `SimpleWorker` (jobs run in the worker process) that records the job metrics."""


class ThreadWorker(MetricsMixin, SimpleWorker):
    """A worker that runs on a non-main thread, as the deployed service runs its workers.

    Signals can only be handled on the main thread, so this worker installs no
    signal handlers and enforces no job timeout. `request_thread_stop` stops it
    after the current job.
    """

    death_penalty_class = NoOpDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass

    def request_thread_stop(self) -> None:
        """Ask the worker to stop once its current job (if any) is done."""
        self.warm_shutdown_requested = True
        self._stop_requested = True

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Any] | None:
        # RQ blocks in its dequeue loop until a job arrives. Short blocking
        # rounds let the thread see a stop request within THREAD_DEQUEUE_TIMEOUT_S.
        if timeout is None:
            return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

        idle_since = time.monotonic()
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(THREAD_DEQUEUE_TIMEOUT_S, THREAD_DEQUEUE_TIMEOUT_S)
            if result is not None:
                return result
            if max_idle_time is not None and time.monotonic() - idle_since >= max_idle_time:
                return None
        return None
