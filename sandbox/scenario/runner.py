"""Sequence one run of a scenario: Redis, workers, producer, monitor, report.

The runner emits events; the headless progress, the reports and the TUI are
subscribers, so every face shows the same numbers.
"""

import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import redis

from sandbox import redisconn
from sandbox.contract import keys
from sandbox.errors import ExitCode, InfrastructureError, SandboxError, UsageError
from sandbox.monitor import harvest
from sandbox.scenario import events
from sandbox.scenario.faults import EMBEDDED_ONLY, FaultInjector
from sandbox.scenario.sender import SentJob, send_load
from sandbox.scenario.model import Scenario
from sandbox.scenario.outcome import build_report
from sandbox.secrets import mask_url
from sandbox.services.redis_process import RedisProcess
from sandbox.worker.jobs import JobBehaviour
from sandbox.worker.pool import WorkerPool, WorkerSpec

logger = logging.getLogger(__name__)

#: Seconds between monitor ticks while few jobs are pending, and while many are.
TICK_S = 0.1
SLOW_TICK_S = 0.5
#: Pending jobs above which the monitor ticks slowly, since each tick reads every pending hash.
SLOW_TICK_PENDING = 2_000


@dataclass
class RunOptions:
    """Command-line settings that apply on top of a scenario."""

    #: An existing Redis to use; None starts a private one.
    redis_url: str | None = None
    #: Overrides the scenario's worker count.
    workers: int | None = None
    #: Overrides the scenario's producer profile.
    profile: str | None = None
    #: Overrides the Java-style producer's clock precision.
    clock_precision: str | None = None
    #: Leave the Redis the run started running at the end.
    keep_services: bool = False
    #: Delete the keys this run wrote (job hashes, results, its ids in queues and registries).
    cleanup: bool = False
    #: Folder for worker logs, metrics and the Redis data; a temporary one when None.
    state_dir: Path | None = None


@dataclass
class RunState:
    """Progress of a run, shared by the producer thread and the monitor loop."""

    sent: list[SentJob] = field(default_factory=list)
    #: Ids the producer wrote a hash for but never pushed to a queue (producer-crash faults).
    orphaned: set[str] = field(default_factory=set)
    #: Job ids and the TTL they were written with, when a fault shortened it.
    short_ttl: dict[str, int] = field(default_factory=dict)
    producer_retries: dict = field(default_factory=dict)
    #: Exits of workers that a fault killed or stopped on purpose.
    fault_exits: list = field(default_factory=list)
    #: Monitor ticks whose Redis read failed (Redis paused or restarting).
    monitor_errors: int = 0
    producer_error: BaseException | None = None
    producer_done: threading.Event = field(default_factory=threading.Event)
    stop_producing: threading.Event = field(default_factory=threading.Event)
    crashes: list = field(default_factory=list)
    deadline_hit: bool = False
    interrupted: bool = False
    infrastructure_error: str | None = None


class Runner:
    """Run one scenario and return its report and exit code."""

    def __init__(self, scenario: Scenario, options: RunOptions | None = None,
                 subscribers: list[Callable[[events.Event], None]] | None = None):
        self.options = options or RunOptions()
        if self.options.workers is not None:
            scenario = replace(scenario, workers=replace(scenario.workers, count=self.options.workers))
        producer_overrides = {}
        if self.options.profile:
            producer_overrides["profile"] = self.options.profile
        if self.options.clock_precision:
            producer_overrides["clock_precision"] = self.options.clock_precision
        if producer_overrides:
            scenario = replace(scenario, producer=replace(scenario.producer, **producer_overrides))
        self.scenario = scenario
        self.subscribers = list(subscribers or [])
        self.faults = FaultInjector(self, tuple(getattr(scenario, "faults", ())))
        #: Names of workers a fault ended; their exit is part of the scenario, not a crash.
        self.expected_exits: set[str] = set()
        #: What RQ did with each job a killed worker held, once its recovery ran.
        self.abandoned_actions: dict[str, str] = {}
        #: The service backend, when the scenario lists services beyond Redis or the docker backend.
        self.backend = None
        #: Services this run started through the backend (and stops at the end unless kept).
        self.services_started: list[str] = []
        #: Each backend service's status at start, as reported.
        self.service_statuses: list[dict] = []
        self.state = RunState()
        self.redis_process: RedisProcess | None = None
        self.pool: WorkerPool | None = None
        self.connection: redis.Redis | None = None
        self.redis_url: str | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    def emit(self, event: events.Event) -> None:
        for subscriber in self.subscribers:
            try:
                subscriber(event)
            except Exception:
                # A broken subscriber (a closed terminal, say) must not break the run.
                logger.exception("Subscriber %r failed on %s", subscriber, type(event).__name__)

    def emit_notice(self, message: str) -> None:
        self.emit(events.Notice(message))

    def run(self) -> tuple[dict, int]:
        started = time.time()
        if self.options.redis_url or self._uses_stack():
            needing = sorted({f.type for f in self.faults.pending if f.type in EMBEDDED_ONLY})
            if needing:
                raise UsageError(
                    f"faults {', '.join(needing)} need the private Redis a run starts itself; "
                    "drop --redis-url, and list only redis under services with the local backend"
                )
        state_dir = self._state_dir()
        try:
            self._start_redis(state_dir)
            self._start_workers(state_dir)
            self._produce_and_watch()
        except KeyboardInterrupt:
            self.state.interrupted = True
            self.state.stop_producing.set()
            self.emit(events.Notice("interrupted: stopping workers and writing a partial report"))
        except SandboxError as error:
            self.state.infrastructure_error = str(error)
            self.state.stop_producing.set()
            self.emit(events.Notice(f"error: {error}"))
        finally:
            self.faults.finish()
            self._stop_workers()

        report = self._report(started)
        exit_code = self._exit_code(report)
        report["exit_code"] = int(exit_code)

        self._finish_services()
        self.emit(events.RunFinished(report=report, exit_code=int(exit_code)))
        return report, int(exit_code)

    def _state_dir(self) -> Path:
        if self.options.state_dir is not None:
            path = Path(self.options.state_dir)
            path.mkdir(parents=True, exist_ok=True)
            return path
        self._tmp = tempfile.TemporaryDirectory(prefix="rq-sandbox-")
        return Path(self._tmp.name)

    def _uses_stack(self) -> bool:
        """Return whether the scenario needs the service backend rather than a private redis-server alone."""
        return self.scenario.backend == "docker" or set(self.scenario.services) != {"redis"}

    def _start_stack(self, state_dir: Path) -> None:
        """Bring up the scenario's services through its backend, reusing any already healthy."""
        from sandbox.services.base import ServiceError, State
        from sandbox.services.commands import make_backend
        from sandbox.services.statefile import default_state_dir

        names = [name for name in self.scenario.services if not (name == "redis" and self.options.redis_url)]
        if not names:
            return
        stack_dir = Path(self.options.state_dir) / "services" if self.options.state_dir else default_state_dir()
        self.backend = make_backend(self.scenario.backend, stack_dir)

        try:
            before = {status.name: status.state for status in self.backend.status(names)}
            for name in names:
                self.emit(events.ServiceState(name, "starting", self.scenario.backend))
            statuses = self.backend.up(names)
        except ServiceError as error:
            raise InfrastructureError(f"starting services {', '.join(names)} failed: {error}") from None
        self.services_started = [name for name in names if before.get(name) != State.HEALTHY]

        for status in statuses:
            self.service_statuses.append(status.as_dict())
            if status.state != State.HEALTHY:
                raise InfrastructureError(f"service {status.name} is {status.state.value}: {status.detail}")
            reused = "" if status.name in self.services_started else " (already running, reused)"
            self.emit(events.ServiceState(status.name, "healthy", f"{self.scenario.backend}{reused} {status.url or ''}"))

    def _start_redis(self, state_dir: Path) -> None:
        if self._uses_stack():
            self._start_stack(state_dir)

        if self.options.redis_url:
            self.redis_url = self.options.redis_url
        elif self.backend is not None:
            self.redis_url = self.backend.connection_url("redis", show_secrets=True)
        else:
            self.emit(events.ServiceState("redis", "starting", "embedded"))
            self.redis_process = RedisProcess(
                state_dir=state_dir / "redis", persistence=self.scenario.redis.persistence
            )
            self.redis_process.start()
            self.redis_url = self.redis_process.url

        self.connection = redisconn.connect(self.redis_url)
        redisconn.require_version(self.connection, self.redis_url)
        if self.backend is None:
            detail = "embedded" if self.redis_process else "external"
            self.emit(events.ServiceState("redis", "healthy", f"{detail} {mask_url(self.redis_url)}"))
        self.emit(events.RunStarted(
            scenario=self.scenario.name,
            total_jobs=self.scenario.total_messages,
            redis_url=mask_url(self.redis_url),
            embedded_redis=self.redis_process is not None or "redis" in self.services_started,
        ))

    def _start_workers(self, state_dir: Path) -> None:
        options = self.scenario.workers
        if options.count == 0:
            return
        job = self.scenario.job
        spec = WorkerSpec(
            redis_url=self.redis_url,
            queues=tuple(options.queues),
            count=options.count,
            mode=options.mode,
            serializer=options.serializer,
            decode_responses=options.decode_responses,
            behaviour=JobBehaviour(work_ms=job.work_s * 1000.0, failure_rate=job.failure_rate, seed=job.seed),
            pythonpath=tuple(str(path) for path in options.pythonpath),
            state_dir=state_dir / "workers",
            job_timeout_s=int(options.job_timeout_s) if options.job_timeout_s else None,
        )
        self.pool = WorkerPool(spec)
        self.pool.start()
        self.pool.wait_ready()
        self.emit(events.WorkersReady(names=tuple(w.name for w in self.pool.workers), mode=options.mode))

    def _produce_and_watch(self) -> None:
        producer = threading.Thread(target=self._produce, name="rq-sandbox-producer", daemon=True)
        start = time.perf_counter()
        producer.start()

        deadline = start + self.scenario.expect.deadline_s
        pending: list[str] = []
        seen = 0
        done = {"finished": 0, "failed": 0, "gone": 0}
        started_count = 0

        while True:
            tick = time.perf_counter()
            self._check_workers()

            sent = self.state.sent[seen:]
            seen += len(sent)
            pending.extend(job.job_id for job in sent)

            self.faults.tick(tick - start, done["finished"])
            self._recover_abandoned()
            try:
                records = harvest.read_jobs(self.connection, pending)
            except (redis.ConnectionError, redis.TimeoutError) as error:
                # Redis paused or restarting: keep the jobs pending and try again next tick.
                self.state.monitor_errors += 1
                logger.warning("Monitor read failed (%s); retrying", error)
                records = [harvest.JobRecord(job_id, "queued") for job_id in pending]
            still = []
            started_count = 0
            for record in records:
                if record.status == "finished":
                    done["finished"] += 1
                elif record.status is None:
                    # The hash is gone (TTL ran out, or Redis lost it): nothing more will happen to it.
                    done["gone"] += 1
                elif record.terminal:
                    done["failed"] += 1
                else:
                    started_count += record.status == "started"
                    still.append(record.job_id)
            pending = still

            self.emit(events.Progress(
                total=self.scenario.total_messages,
                enqueued=seen,
                finished=done["finished"],
                failed=done["failed"],
                started=started_count,
                elapsed_s=tick - start,
                gone=done["gone"],
            ))

            if self.state.producer_error is not None:
                raise InfrastructureError(f"the producer failed: {self.state.producer_error}")
            if self.state.producer_done.is_set() and seen == len(self.state.sent) and not pending:
                break
            if self._all_workers_gone() and self.state.producer_done.is_set():
                if self.scenario.workers.count == 0:
                    self.emit(events.Notice("no workers were started (workers.count is 0): the jobs stay queued"))
                else:
                    self.emit(events.Notice("no worker is left to run the remaining jobs"))
                break
            if self.state.crashes and not self.scenario.expect.worker_crash and not self.scenario.workers.restart_dead:
                break
            if self.state.producer_done.is_set() and not self.faults.pending and self._only_stuck(pending):
                break
            if tick >= deadline:
                self.state.deadline_hit = True
                self.state.stop_producing.set()
                self.emit(events.Notice(f"deadline of {self.scenario.expect.deadline_s:g}s reached"))
                break

            interval = TICK_S if len(pending) <= SLOW_TICK_PENDING else SLOW_TICK_S
            time.sleep(max(0.0, interval - (time.perf_counter() - tick)))

        self.state.stop_producing.set()
        producer.join(timeout=5)

    def _produce(self) -> None:
        send_load(self.scenario, self.connection, self.state, self.faults.producer)

    def _check_workers(self) -> None:
        if self.pool is None:
            return
        for exit_ in self.pool.poll():
            if exit_.name in self.expected_exits:
                self.state.fault_exits.append({"worker": exit_.name, "exit_code": exit_.exit_code,
                                               "job_id": exit_.current_job_id})
                continue
            job_id = exit_.current_job_id or self._job_in_intermediate_queue()
            crash = {
                "worker": exit_.name,
                "exit_code": exit_.exit_code,
                "last_error": exit_.last_error,
                "job_id": job_id,
                "log": str(exit_.log_path),
            }
            if self.scenario.workers.restart_dead and self.scenario.workers.mode != "thread":
                replacement = self.pool.add(1)[0]
                crash["replaced_by"] = replacement.name
            self.state.crashes.append(crash)
            logger.info("Worker %s: exited with %s holding job %s: %s",
                        exit_.name, exit_.exit_code, job_id, exit_.last_error)
            self.emit(events.WorkerCrashed(exit_.name, exit_.exit_code, exit_.last_error, job_id))

    def _job_in_intermediate_queue(self) -> str | None:
        """Find a job of this run that RQ moved out of its queue but never started.

        A worker that dies between dequeue and start (while restoring the job's
        hash, say) leaves the id in the queue's intermediate list, which names the
        job that killed it.
        """
        ours = {job.job_id for job in self.state.sent}
        try:
            for queue in self.scenario.workers.queues:
                for raw in self.connection.lrange(keys.intermediate_queue_key(queue), 0, -1):
                    job_id = raw.decode() if isinstance(raw, bytes) else raw
                    if job_id in ours:
                        return job_id
        except redis.RedisError as error:
            logger.warning("Reading the intermediate queues failed: %s", error)
        return None

    def _recover_abandoned(self) -> None:
        """Once a killed worker's exit is seen, let RQ clean up the job it held right away."""
        exited = {item["worker"] for item in self.state.fault_exits}
        waiting = {job_id for job_id, worker in self.faults.killed_jobs.items() if worker in exited}
        if waiting - set(self.abandoned_actions):
            try:
                self.abandoned_actions.update(self.faults.recover_abandoned())
            except (redis.ConnectionError, redis.TimeoutError) as error:
                logger.warning("Recovering abandoned jobs failed (%s); retrying next tick", error)

    def _only_stuck(self, pending: list[str]) -> bool:
        """Return whether every pending job is one that no worker will ever finish.

        Such jobs are orphaned (never queued) or were taken by a worker that
        crashed. RQ's maintenance fails the latter only after more than a minute.
        """
        held = {crash["job_id"] for crash in self.state.crashes if crash.get("job_id")}
        return bool(pending) and all(job_id in self.state.orphaned or job_id in held for job_id in pending)

    def _all_workers_gone(self) -> bool:
        if self.pool is None:
            return True
        return not any(worker.alive for worker in self.pool.workers)

    def _stop_workers(self) -> None:
        if self.pool is None:
            return
        try:
            self._check_workers()
            self.pool.stop()
        except Exception as error:  # noqa: BLE001 - the report must still be written
            logger.exception("Stopping workers failed")
            self.state.infrastructure_error = self.state.infrastructure_error or f"stopping workers failed: {error}"

    def _report(self, started: float) -> dict:
        return build_report(self, started)

    def _exit_code(self, report: dict) -> ExitCode:
        if self.state.interrupted:
            return ExitCode.INTERRUPTED
        if self.state.infrastructure_error:
            return ExitCode.INFRASTRUCTURE
        if self.state.crashes and not self.scenario.expect.worker_crash and not self.scenario.workers.restart_dead:
            return ExitCode.INFRASTRUCTURE
        return ExitCode.OK if report["passed"] else ExitCode.FAILED

    def _finish_services(self) -> None:
        if self.options.cleanup and self.connection is not None and self.state.sent:
            removed = cleanup_run(self.connection, self.scenario, [job.job_id for job in self.state.sent])
            self.emit(events.Notice(f"cleanup: removed {removed} keys and entries this run wrote"))

        if self.backend is not None and self.services_started:
            if self.options.keep_services:
                self.emit(events.Notice(f"services left running: {', '.join(self.services_started)}"))
            else:
                try:
                    self.backend.down(self.services_started)
                    for name in self.services_started:
                        self.emit(events.ServiceState(name, "stopped", self.scenario.backend))
                except Exception as error:  # noqa: BLE001 - the report is already built
                    logger.error("Stopping services %s failed: %s", self.services_started, error)
                    self.emit(events.Notice(f"stopping services failed: {error}"))

        if self.redis_process is not None:
            if self.options.keep_services:
                self.emit(events.Notice(
                    f"Redis left running at {mask_url(self.redis_process.url)} (pid {self.redis_process.pid}); "
                    f"stop it with: kill {self.redis_process.pid}"
                ))
            else:
                self.redis_process.stop()
                self.emit(events.ServiceState("redis", "stopped", "embedded"))
        if self._tmp is not None and not self.options.keep_services:
            self._tmp.cleanup()


def cleanup_run(connection: redis.Redis, scenario: Scenario, job_ids: list[str]) -> int:
    """Delete what this run wrote and nothing else: its job hashes, their results, its ids in lists and registries."""
    queues = set(scenario.workers.queues) | {scenario.producer.queue}
    removed = 0
    for start in range(0, len(job_ids), 500):
        batch = job_ids[start : start + 500]
        pipe = connection.pipeline(transaction=False)
        for job_id in batch:
            pipe.delete(keys.job_key(job_id), keys.result_key(job_id))
            for queue in queues:
                pipe.lrem(keys.queue_key(queue), 0, job_id)
                pipe.lrem(keys.intermediate_queue_key(queue), 0, job_id)
                for kind in keys.REGISTRY_KINDS:
                    pipe.zrem(keys.registry_key(kind, queue), job_id)
        removed += sum(int(value) for value in pipe.execute() if isinstance(value, int))
    return removed
