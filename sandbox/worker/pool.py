"""A pool of live RQ workers: N processes, or N threads in one process.

Every worker runs in a child process started with `python -m sandbox.worker`,
with its output in `<state_dir>/worker-<index>.log` and its metrics in
`<state_dir>/metrics-<name>.json`. In thread mode one child process runs all
the workers on threads, shares one metrics file and logs to `worker-<first
index>.log`. A signal sent to one worker there reaches the whole process.

A worker that dies without calling RQ's `register_death` (a crash or SIGKILL)
stays in `rq:workers` until its key expires. The pool removes those
registrations for the workers it started when it reports them.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq.worker_registration import REDIS_WORKER_KEYS, WORKERS_BY_QUEUE_KEY

import sandbox
from sandbox.errors import InfrastructureError, UsageError
from sandbox.worker.classes import process_name, serializer_by_name, worker_name
from sandbox.worker.jobs import BEHAVIOUR_ENV, JobBehaviour
from sandbox.worker.metrics import load_metrics

logger = logging.getLogger(__name__)

MODES = ("process", "simple", "thread")
#: The worker processes read the Redis URL from here, which keeps a password out of the process list.
REDIS_URL_ENV = "RQ_SANDBOX_REDIS_URL"
#: Lines of a worker log quoted in a start-up error.
LOG_TAIL_LINES = 15


class WorkerStartError(InfrastructureError):
    """A worker exited or did not register in Redis in time."""


@dataclass(frozen=True)
class WorkerSpec:
    """The workers to run: their mode, count, Redis, queues and job behaviour."""

    redis_url: str
    queues: tuple[str, ...]
    count: int = 1
    #: process: one rq Worker per process, forking a work horse per job;
    #: simple: one rq SimpleWorker per process; thread: one process, `count` threads.
    mode: str = "process"
    #: json, pickle or a dotted path to a serializer.
    serializer: str = "json"
    #: Whether the workers' Redis client decodes responses to str.
    decode_responses: bool = False
    behaviour: JobBehaviour = JobBehaviour()
    #: Folders prepended to the PYTHONPATH of the worker processes.
    pythonpath: tuple[str, ...] = ()
    name_prefix: str = "sandbox"
    #: Folder for the worker logs, metrics snapshots and exit files.
    state_dir: Path = field(default_factory=lambda: Path(".rq-sandbox") / "workers")
    #: Seconds RQ allows a job stored without a timeout; thread mode enforces none.
    job_timeout_s: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.queues, str):
            raise UsageError(f"queues must be a tuple of names, got the string {self.queues!r}")
        if not self.queues or not all(isinstance(q, str) and q.strip() for q in self.queues):
            raise UsageError(f"at least one non-empty queue name is required, got {self.queues!r}")
        if any("," in q for q in self.queues):
            raise UsageError(f"a queue name cannot contain a comma: {self.queues!r}")
        if self.mode not in MODES:
            raise UsageError(f"unknown worker mode {self.mode!r}: use one of {', '.join(MODES)}")
        if self.count < 1:
            raise UsageError(f"worker count must be at least 1, got {self.count}")
        if self.job_timeout_s is not None and self.job_timeout_s < 1:
            raise UsageError(f"job timeout must be at least 1 s, got {self.job_timeout_s}")
        try:
            serializer_by_name(self.serializer)
        except Exception as error:
            raise UsageError(f"unknown serializer {self.serializer!r}: {error}") from None


@dataclass(frozen=True)
class WorkerHandle:
    """A worker of the pool as seen at the moment `WorkerPool.workers` was read."""

    name: str
    index: int
    pid: int | None
    mode: str
    alive: bool


@dataclass
class WorkerExit:
    """A worker that ended, with what can be known about why."""

    name: str
    index: int
    pid: int | None
    #: Exit status of the process (negative: killed by that signal); 1 for a crashed thread.
    exit_code: int | None
    #: The last exception line the worker logged, e.g. "ValueError: time data ...".
    last_error: str | None
    log_path: Path
    #: The job the worker held according to its RQ worker hash, when it still had one.
    current_job_id: str | None


@dataclass
class _Slot:
    index: int
    name: str
    process: subprocess.Popen
    log_path: Path
    stop_requested: bool = False
    reported: bool = False


class WorkerPool:
    """Start, watch and stop the workers a `WorkerSpec` describes."""

    def __init__(self, spec: WorkerSpec):
        self.spec = spec
        self._slots: list[_Slot] = []
        self._next_index = 0
        self._metrics_paths: list[Path] = []
        self._connection = redis.Redis.from_url(spec.redis_url)

    @property
    def workers(self) -> list[WorkerHandle]:
        return [
            WorkerHandle(slot.name, slot.index, slot.process.pid, self.spec.mode, self._slot_alive(slot))
            for slot in self._slots
        ]

    def start(self) -> None:
        """Start `spec.count` workers; `wait_ready` waits until they are registered."""
        if self._slots:
            raise UsageError("the worker pool is already started")
        self.spec.state_dir.mkdir(parents=True, exist_ok=True)
        if self.spec.mode == "thread":
            self._spawn(self.spec.count)
        else:
            for _ in range(self.spec.count):
                self._spawn(1)

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until every live worker is registered in `rq:workers`.

        Raises `WorkerStartError` naming the first worker that exited or is
        still missing, with the last lines of its log.
        """
        deadline = time.monotonic() + timeout
        while True:
            waiting = [slot for slot in self._slots if not slot.stop_requested and not slot.reported]
            for slot in waiting:
                exit_code = self._exit_code(slot)
                if exit_code is not None:
                    raise WorkerStartError(
                        f"worker {slot.name} exited with status {exit_code} while starting; "
                        f"last lines of {slot.log_path}:\n{_log_tail(slot.log_path)}"
                    )

            try:
                registered = self._registered_names()
            except redis.exceptions.RedisError as error:
                # Keep waiting: a worker that cannot reach Redis either exits
                # with the reason in its log or runs into the deadline.
                logger.debug("Worker pool: cannot read rq:workers yet: %s", error)
                registered = set()
            missing = [slot for slot in waiting if slot.name not in registered]
            if not missing:
                return
            if time.monotonic() >= deadline:
                slot = missing[0]
                raise WorkerStartError(
                    f"worker {slot.name} did not register in Redis within {timeout:.1f} s; "
                    f"last lines of {slot.log_path}:\n{_log_tail(slot.log_path)}"
                )
            time.sleep(0.05)

    def poll(self) -> list[WorkerExit]:
        """Return the workers that ended since the last call without being asked to stop."""
        exits = []
        for slot in self._slots:
            if slot.reported or slot.stop_requested:
                continue
            exit_code = self._exit_code(slot)
            if exit_code is None:
                continue
            exits.append(self._report(slot, exit_code))
        return exits

    def stop(self, timeout: float = 10.0) -> list[WorkerExit]:
        """Stop all workers warmly (SIGTERM), SIGKILL those still running after `timeout` seconds.

        Returns the exits of the workers that were still running when asked.
        """
        return self._stop_slots([slot for slot in self._slots if not slot.reported], timeout)

    def kill(self, index: int, sig: int = signal.SIGKILL, group: bool = False) -> None:
        """Send `sig` to the process of the worker with this index, as a fault would.

        With `group`, the signal goes to the worker's whole process group, work
        horse included, the way an out-of-memory kill of a container ends both.
        """
        slot = self._slot(index)
        if slot.process.poll() is None:
            logger.info("Worker %s: sending signal %s (pid %s, group %s)", slot.name, sig, slot.process.pid, group)
            if group:
                os.killpg(slot.process.pid, sig)
            else:
                slot.process.send_signal(sig)

    def add(self, n: int = 1) -> list[WorkerHandle]:
        """Start `n` more workers (process and simple mode)."""
        self._require_process_modes("add")
        for _ in range(n):
            self._spawn(1)
        return self.workers[-n:] if n > 0 else []

    def remove(self, n: int = 1, timeout: float = 10.0) -> list[WorkerExit]:
        """Stop the `n` newest live workers warmly (process and simple mode)."""
        self._require_process_modes("remove")
        live = [slot for slot in self._slots if not slot.reported and not slot.stop_requested]
        return self._stop_slots(live[-n:] if n > 0 else [], timeout)

    def metrics(self) -> dict:
        """Merge the metrics snapshots of every worker process this pool started."""
        return load_metrics(self._metrics_paths)

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _spawn(self, count: int) -> None:
        first_index = self._next_index
        self._next_index += count
        log_path = self.spec.state_dir / f"worker-{first_index}.log"
        command = [
            sys.executable,
            "-m",
            "sandbox.worker",
            "--queues",
            ",".join(self.spec.queues),
            "--mode",
            self.spec.mode,
            "--index",
            str(first_index),
            "--count",
            str(count),
            "--name-prefix",
            self.spec.name_prefix,
            "--serializer",
            self.spec.serializer,
            "--state-dir",
            str(self.spec.state_dir.resolve()),
        ]
        if self.spec.decode_responses:
            command.append("--decode-responses")
        if self.spec.job_timeout_s is not None:
            command += ["--job-timeout", str(self.spec.job_timeout_s)]

        with open(log_path, "wb") as log:
            # A session of its own keeps a Ctrl-C in the terminal from reaching
            # the workers directly: the pool decides how they stop.
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environment(),
                start_new_session=True,
            )

        names = [worker_name(self.spec.name_prefix, process.pid, first_index + i) for i in range(count)]
        for offset, name in enumerate(names):
            self._slots.append(_Slot(first_index + offset, name, process, log_path))
        metrics_name = process_name(self.spec.name_prefix, process.pid) if self.spec.mode == "thread" else names[0]
        self._metrics_paths.append(self.spec.state_dir / f"metrics-{metrics_name}.json")
        logger.info("Worker pool: started %s (pid %s, %s mode)", ", ".join(names), process.pid, self.spec.mode)

    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        # The folder that contains the sandbox package, so the child imports this same code.
        package_root = str(Path(sandbox.__file__).resolve().parent.parent)
        paths = [*self.spec.pythonpath, package_root]
        if env.get("PYTHONPATH"):
            paths.append(env["PYTHONPATH"])
        env["PYTHONPATH"] = os.pathsep.join(paths)
        env[REDIS_URL_ENV] = self.spec.redis_url
        env[BEHAVIOUR_ENV] = self.spec.behaviour.to_json()
        return env

    def _stop_slots(self, slots: list[_Slot], timeout: float) -> list[WorkerExit]:
        for slot in slots:
            slot.stop_requested = True
        processes = {id(slot.process): slot.process for slot in slots}.values()

        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)

        deadline = time.monotonic() + timeout
        for process in processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                logger.warning("Worker pool: pid %s ignored SIGTERM for %.1f s, killing it", process.pid, timeout)
                process.kill()
                process.wait()

        return [self._report(slot, slot.process.returncode) for slot in slots if not slot.reported]

    def _report(self, slot: _Slot, exit_code: int | None) -> WorkerExit:
        slot.reported = True
        exit_file = _read_exit_file(self.spec.state_dir / f"exit-{slot.name}.json")
        last_error = exit_file.get("last_error") if exit_file else None
        if last_error is None and not slot.stop_requested:
            last_error = last_exception_line(slot.log_path)

        current_job_id = None
        try:
            current_job_id = self._forget_worker(slot.name)
        except redis.exceptions.RedisError as error:
            logger.warning("Worker %s: cannot clean its registration: %s", slot.name, error)

        exit_ = WorkerExit(
            name=slot.name,
            index=slot.index,
            pid=slot.process.pid,
            exit_code=exit_code,
            last_error=last_error,
            log_path=slot.log_path,
            current_job_id=current_job_id,
        )
        if not slot.stop_requested:
            reason = last_error or (f"killed by signal {-exit_code}" if exit_code and exit_code < 0 else "no error logged")
            logger.warning("Worker %s: exited with status %s: %s", slot.name, exit_code, reason)
        return exit_

    def _forget_worker(self, name: str) -> str | None:
        """Read the job a dead worker held and remove its registration, as `register_death` would."""
        key = f"rq:worker:{name}"
        current_job = self._connection.hget(key, "current_job")
        with self._connection.pipeline() as pipe:
            pipe.srem(REDIS_WORKER_KEYS, key)
            for queue in self.spec.queues:
                pipe.srem(WORKERS_BY_QUEUE_KEY % queue, key)
            pipe.expire(key, 60)
            pipe.execute()
        return current_job.decode() if isinstance(current_job, bytes) else current_job

    def _exit_code(self, slot: _Slot) -> int | None:
        code = slot.process.poll()
        if code is not None:
            return code
        if self.spec.mode == "thread":
            # A thread that crashed leaves an exit file while the process keeps running.
            exit_file = _read_exit_file(self.spec.state_dir / f"exit-{slot.name}.json")
            if exit_file is not None:
                return int(exit_file.get("exit_code", 1))
        return None

    def _slot_alive(self, slot: _Slot) -> bool:
        return not slot.reported and self._exit_code(slot) is None

    def _registered_names(self) -> set[str]:
        prefix = "rq:worker:"
        keys = self._connection.smembers(REDIS_WORKER_KEYS)
        names = (key.decode() if isinstance(key, bytes) else key for key in keys)
        return {key[len(prefix) :] for key in names if key.startswith(prefix)}

    def _slot(self, index: int) -> _Slot:
        for slot in self._slots:
            if slot.index == index:
                return slot
        raise UsageError(f"the pool has no worker with index {index}")

    def _require_process_modes(self, action: str) -> None:
        if self.spec.mode == "thread":
            raise UsageError(f"cannot {action} workers in thread mode: its one process runs a fixed number of threads")


def last_exception_line(log_path: Path, max_bytes: int = 256 * 1024) -> str | None:
    """Return the exception line that ends the last traceback in a log, e.g. "ValueError: ..."."""
    try:
        with open(log_path, "rb") as log:
            log.seek(max(0, log_path.stat().st_size - max_bytes))
            text = log.read().decode("utf-8", errors="replace")
    except OSError:
        return None

    last = None
    in_traceback = False
    for line in text.splitlines():
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line.strip() and not line.startswith((" ", "\t")):
            last = line.strip()
            in_traceback = False
    return last


def _log_tail(log_path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        return f"(cannot read the log: {error})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


def _read_exit_file(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        logger.warning("Worker pool: unreadable exit file %s: %s", path, error)
        return None
