"""The services and workers the dashboard starts and stops: Redis, MySQL, ClickHouse and a worker pool.

Plain engine calls with no Textual in them, so the app's thread workers can call
them and a test can drive them without a screen.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from sandbox import redisconn
from sandbox.errors import InfrastructureError, SandboxError, UsageError
from sandbox.secrets import mask_url
from sandbox.services.base import SERVICE_NAMES, ServiceError, ServiceStatus, State
from sandbox.services.redis_process import RedisProcess
from sandbox.worker.jobs import JobBehaviour
from sandbox.worker.pool import WorkerPool, WorkerSpec

logger = logging.getLogger(__name__)

#: The queues the deployed worker listens on.
DEFAULT_QUEUES = ("opik:optimizer-cloud", "opik:hello_world_queue")

ACTIONS = ("start", "stop", "restart")


@dataclass
class StackOptions:
    """Settings of `rq-sandbox tui`: which Redis, backend, workers and services."""

    #: An existing Redis to watch; None starts the stack's own.
    redis_url: str | None = None
    #: local or docker.
    backend: str = "local"
    workers: int = 1
    mode: str = "process"
    #: Worker logs, service data, reports and the TUI log go under here.
    state_dir: Path = field(default_factory=lambda: Path(".rq-sandbox"))
    keep_services: bool = False
    queues: tuple[str, ...] = DEFAULT_QUEUES
    #: Services besides Redis that the dashboard starts once it is up.
    extra_services: tuple[str, ...] = ("mysql", "clickhouse")
    #: Simulated work per job of the dashboard's workers, in milliseconds.
    work_ms: float = 0.0


def make_backend(kind: str, state_dir: Path):
    """Return the service backend, or None when the services package is not installed yet."""
    try:
        from sandbox.services.commands import make_backend as make
    except ImportError as error:
        logger.warning("No service backend available (%s); Redis runs as a bare redis-server", error)
        return None
    try:
        return make(kind, state_dir)
    except ImportError as error:
        logger.warning("The %s backend cannot be loaded: %s", kind, error)
        return None


class Stack:
    """Starts the services and workers the dashboard shows, and stops only what it started."""

    def __init__(self, options: StackOptions, backend=None):
        self.options = options
        self.backend = backend
        self.redis_url: str | None = options.redis_url
        self.pool: WorkerPool | None = None
        #: Services this stack started, stopped again on `stop`.
        self.started: set[str] = set()
        self._redis_process: RedisProcess | None = None
        self._paused_count = options.workers
        #: Pool workers removed on request, by name, with the wall-clock time of the request.
        self.removed_workers: dict[str, float] = {}

    @property
    def external_redis(self) -> bool:
        return self.options.redis_url is not None

    @property
    def masked_url(self) -> str:
        return mask_url(self.redis_url or "")

    def start(self) -> None:
        """Start Redis (unless given one) and the worker pool; raises SandboxError."""
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        if self.external_redis:
            redisconn.validate_url(self.redis_url)
        else:
            self.redis_url = self._start_redis()
        redisconn.connect(self.redis_url).close()

        spec = WorkerSpec(
            redis_url=self.redis_url,
            queues=tuple(self.options.queues),
            count=self.options.workers,
            mode=self.options.mode,
            state_dir=self.options.state_dir / "workers",
            name_prefix="tui",
            behaviour=JobBehaviour(work_ms=self.options.work_ms),
        )
        self.pool = WorkerPool(spec)
        self.pool.start()
        self.pool.wait_ready()

    def _start_redis(self) -> str:
        if self.backend is not None:
            before = self.backend.status(["redis"])[0]
            (status,) = self.backend.up(["redis"])
            if status.state is State.UNAVAILABLE:
                raise InfrastructureError(f"redis is unavailable: {status.detail}")
            if before.state is not State.HEALTHY:
                self.started.add("redis")
            url = self.backend.connection_url("redis", show_secrets=True)
            if not url:
                raise InfrastructureError("redis started but its backend reports no URL")
            return url

        self._redis_process = RedisProcess(state_dir=self.options.state_dir / "redis")
        self._redis_process.start()
        self.started.add("redis")
        return self._redis_process.url

    def start_extra_services(self) -> list[ServiceStatus]:
        """Bring up the other services; a missing binary gives an UNAVAILABLE status, not an error."""
        statuses = []
        for name in self.options.extra_services:
            try:
                statuses.append(self.act(name, "start"))
            except (ServiceError, SandboxError) as error:
                logger.warning("%s: start failed: %s", name, error)
                statuses.append(ServiceStatus(name, self._backend_name, State.UNHEALTHY, detail=str(error)))
        return statuses

    def stop(self) -> None:
        """Stop the workers, then the services this stack started, unless `keep_services` is set."""
        # The workers stop even with keep_services: nothing would be left to stop them later.
        if self.pool is not None:
            self.pool.stop()
        if self.options.keep_services:
            logger.info("Leaving %s running", ", ".join(sorted(self.started)) or "nothing")
            return
        for name in reversed(SERVICE_NAMES):
            if name in self.started:
                try:
                    self._down(name)
                except (ServiceError, SandboxError) as error:
                    logger.error("%s: stop failed: %s", name, error)

    # -- services --------------------------------------------------------------------

    @property
    def _backend_name(self) -> str:
        return self.backend.name if self.backend is not None else "process"

    def statuses(self) -> list[ServiceStatus]:
        """Return the current status of every service of the stack."""
        rows = []
        for name in SERVICE_NAMES:
            if name == "redis" and (self.external_redis or self.backend is None):
                rows.append(self._redis_status())
            elif self.backend is None:
                rows.append(ServiceStatus(name, "none", State.UNAVAILABLE,
                                          detail="no service backend installed with this sandbox"))
            else:
                try:
                    rows.extend(self.backend.status([name]))
                except (ServiceError, SandboxError) as error:
                    rows.append(ServiceStatus(name, self._backend_name, State.UNAVAILABLE, detail=str(error)))
        return rows

    def _redis_status(self) -> ServiceStatus:
        if self.external_redis:
            return ServiceStatus("redis", "external", State.HEALTHY, url=self.masked_url,
                                 detail="given with --redis-url; not managed here")
        process = self._redis_process
        running = process is not None and process.is_running()
        return ServiceStatus(
            "redis", "process", State.HEALTHY if running else State.STOPPED,
            port=process.port if process else None, pid=process.pid if running else None,
            url=self.masked_url if running else None,
        )

    def act(self, name: str, action: str) -> ServiceStatus:
        """Start, stop or restart one service; raises UsageError for what this stack does not manage."""
        if action not in ACTIONS:
            raise UsageError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        if name == "redis" and self.external_redis:
            raise UsageError("redis was given with --redis-url: the dashboard does not manage it")
        logger.info("%s: %s requested from the dashboard", name, action)

        if self.backend is None:
            if name != "redis":
                raise UsageError(f"{name}: no service backend installed with this sandbox")
            return self._act_on_process(action)

        if action == "stop":
            return self._down(name)
        if action == "restart":
            return self.backend.restart(name)
        before = self.backend.status([name])[0]
        (status,) = self.backend.up([name])
        if before.state is not State.HEALTHY and status.state is not State.UNAVAILABLE:
            self.started.add(name)
        return status

    def _down(self, name: str) -> ServiceStatus:
        if self.backend is None:
            return self._act_on_process("stop")
        (status,) = self.backend.down([name])
        return status

    def _act_on_process(self, action: str) -> ServiceStatus:
        process = self._redis_process
        if process is None:
            raise UsageError("redis was not started by the dashboard")
        if action in ("stop", "restart") and process.is_running():
            process.stop(keep=True)
        if action in ("start", "restart") and not process.is_running():
            process.start()
        return self._redis_status()

    def log_tail(self, name: str, lines: int = 200) -> list[str]:
        """Return the last lines of a service's log, or one line with the reason there is none."""
        if name == "redis" and self.external_redis:
            return ["(redis was given with --redis-url: its log is not here)"]
        try:
            if self.backend is None:
                if name != "redis" or self._redis_process is None or self._redis_process.log_path is None:
                    return [f"({name} has no log: no service backend installed)"]
                text = self._redis_process.log_path.read_text(encoding="utf-8", errors="replace")
                return text.splitlines()[-lines:]
            return list(self.backend.logs(name, tail=lines))
        except (ServiceError, SandboxError, OSError) as error:
            return [f"({error})"]

    # -- workers ---------------------------------------------------------------------

    def add_worker(self) -> str:
        if self.pool is None:
            raise UsageError("no worker pool is running")
        (handle,) = self.pool.add(1)
        self.pool.wait_ready()
        return handle.name

    def pause_workers(self) -> bool:
        """Stop the pool's workers so that a scenario run has the queues to its own workers."""
        if self.pool is None:
            return False
        self._paused_count = max(1, sum(1 for worker in self.pool.workers if worker.alive))
        self.pool.stop()
        return True

    def resume_workers(self) -> None:
        """Start as many workers as `pause_workers` stopped, in a fresh pool."""
        spec = replace(self.pool.spec, count=self._paused_count)
        self.pool = WorkerPool(spec)
        self.pool.start()
        self.pool.wait_ready()

    def remove_worker(self) -> str | None:
        """Stop the newest live pool worker; return its name, or None when none is left."""
        if self.pool is None:
            raise UsageError("no worker pool is running")
        live = [worker.name for worker in self.pool.workers if worker.alive]
        # Marked before it stops, so no snapshot in between shows it as a crash.
        marked = live[-1] if live else None
        if marked:
            self.removed_workers[marked] = time.time()
        exits = self.pool.remove(1)
        name = exits[0].name if exits else None
        if marked and marked != name:
            self.removed_workers.pop(marked, None)
        if name:
            self.removed_workers.setdefault(name, time.time())
        return name


def uptime(started_at: float | None, now: float | None = None) -> str:
    """``1h02m``, ``3m05s`` or ``12s``; empty when not running."""
    if not started_at:
        return ""
    seconds = max(0, int((now or time.time()) - started_at))
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{seconds:02d}s"
    return f"{seconds}s"
