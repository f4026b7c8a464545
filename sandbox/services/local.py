"""The stack as local processes: Redis, MariaDB and ClickHouse from the machine's own binaries.

Each service lives in ``<state_dir>/<name>/`` and runs in a session of its own, so Ctrl-C
in the terminal that ran ``up`` does not reach it. The state file records its pid, and
only that pid is signalled, after checking that it still runs the same program.
"""

from __future__ import annotations

import collections
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.secrets import mask_url
from sandbox.services.base import SERVICE_NAMES, STACK_PASSWORD, ServiceError, ServiceStatus, State
from sandbox.services.binaries import RedisBinary, choose_binary, find_redis_server, probe_version
from sandbox.services.health import Result, UnhealthyError, check_redis
from sandbox.services.local_clickhouse import LocalClickhouse
from sandbox.services.local_mysql import LocalMysql, MissingBinary
from sandbox.services.ports import LOCALHOST, free_port, port_in_use
from sandbox.services.redis_process import RedisProcess
from sandbox.services.statefile import ServiceRecord, StateFile, pid_alive, record_is_live

logger = logging.getLogger(__name__)

#: Seconds between two health checks while a service starts.
POLL_INTERVAL = 0.1

#: Seconds a service gets to exit after SIGTERM before SIGKILL; MariaDB flushes InnoDB on the way out.
STOP_TIMEOUT = 30.0

#: Log lines quoted from each log when a start fails.
FAILURE_TAIL_LINES = 5

#: Seconds between two looks at a log file that is being followed.
FOLLOW_INTERVAL = 0.2

#: Handles of the servers this process started, by pid, whichever backend object started
#: them: polled once they stop so that none stays a zombie, and kept while they run, since a
#: Popen that is garbage-collected while its process runs warns.
_children: dict[int, object] = {}


@dataclass
class _RedisHandle:
    """Makes a RedisProcess look like the Popen the other services return."""

    process: RedisProcess

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def poll(self) -> int | None:
        return None if self.process.is_running() else 0


class LocalRedis:
    """The sandbox's own RedisProcess, with the stack's password and an append-only file."""

    name = "redis"
    package = "redis-server"
    port_roles = ("port",)

    def __init__(self, binary: str | None = None) -> None:
        self._override = binary
        self._binary: RedisBinary | None = None

    def locate(self) -> str:
        try:
            if self._override is None:
                self._binary = find_redis_server()
            elif not Path(self._override).is_file():
                raise MissingBinary(f"redis-server not found at {self._override}: apt-get install {self.package}")
            else:
                path = Path(self._override)
                self._binary = choose_binary([(path, probe_version(path), "PATH")])
        except SandboxError as exc:
            raise MissingBinary(str(exc)) from None
        return str(self._binary.path)

    def log_path(self, folder: Path) -> Path:
        return folder / "redis.log"

    def failure_logs(self, folder: Path) -> list[Path]:
        return [self.log_path(folder)]

    def prepare(self, folder: Path, ports: dict[str, int]) -> None:
        """RedisProcess writes its own config."""

    def start(self, folder: Path, ports: dict[str, int], binary: str, spawn: object, timeout: float) -> _RedisHandle:
        # Data survives restart and down/up, as a container's volume would.
        process = RedisProcess(
            state_dir=folder, port=ports["port"], password=STACK_PASSWORD, persistence="aof-everysec", binary=self._binary,
        )
        try:
            process.start(timeout=timeout)
        except SandboxError as exc:
            raise ServiceError(" | ".join(str(exc).splitlines())) from None
        return _RedisHandle(process)

    def check(self, folder: Path, ports: dict[str, int]) -> Result:
        return check_redis(LOCALHOST, ports["port"], STACK_PASSWORD)

    def provision(self, folder: Path, ports: dict[str, int]) -> None:
        """Nothing to create: the password is in the config."""

    def url(self, ports: dict[str, int]) -> str:
        return f"redis://:{STACK_PASSWORD}@{LOCALHOST}:{ports['port']}/0"


def last_lines(path: Path, count: int) -> list[str]:
    """Return the last `count` lines of a text file; none when it does not exist."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in collections.deque(handle, maxlen=count)] if count > 0 else []
    except FileNotFoundError:
        return []


class LocalBackend:
    """Runs the stack's services as processes of this machine."""

    name = "local"

    def __init__(
        self,
        state_dir: Path,
        ports: Mapping[str, int] | None = None,
        binaries: Mapping[str, str] | None = None,
        stop_timeout: float = STOP_TIMEOUT,
    ) -> None:
        """`ports` fixes a service's main port; `binaries` names a server executable instead of searching PATH."""
        self.state_dir = Path(state_dir)
        self.state = StateFile(self.state_dir)
        self._ports = dict(ports or {})
        binaries = binaries or {}
        self._services = {
            "redis": LocalRedis(binaries.get("redis")),
            "mysql": LocalMysql(binaries.get("mysql")),
            "clickhouse": LocalClickhouse(binaries.get("clickhouse")),
        }
        self._stop_timeout = stop_timeout

    # -- Backend ---------------------------------------------------------------------

    def up(self, names: list[str], timeout: float = 60.0) -> list[ServiceStatus]:
        """Start what is not running, reuse what is; a missing binary gives UNAVAILABLE, a failed start raises."""
        selected = self._select(names)
        with self.state.operations_lock(timeout):
            return [self._up_one(name, timeout) for name in selected]

    def down(self, names: list[str]) -> list[ServiceStatus]:
        selected = self._select(names)
        with self.state.operations_lock(self._stop_timeout * len(selected) + 10):
            for name in reversed(selected):
                self._stop(name)
        return self.status(selected)

    def status(self, names: list[str]) -> list[ServiceStatus]:
        selected = self._select(names)
        records = self.state.read()
        results = [self._status_of(name, records.get(name)) for name in selected]
        self._repair([name for name in selected if self._is_stale(records.get(name))], records)
        return results

    def restart(self, name: str, timeout: float = 60.0) -> ServiceStatus:
        (name,) = self._select([name])
        with self.state.operations_lock(timeout + self._stop_timeout):
            record = self._stop(name)
            binary = self._services[name].locate()
            return self._start(name, binary, record, timeout, keep_ports=True)

    def logs(self, name: str, tail: int = 100, follow: bool = False) -> Iterator[str]:
        (name,) = self._select([name])
        path = self._services[name].log_path(self.state_dir / name)
        if not path.exists():
            raise ServiceError(f"{name} has no log yet ({path}): start it with 'rq-sandbox services up {name}'")
        yield from last_lines(path, tail)
        if follow:
            yield from _follow(path)

    def connection_url(self, name: str, show_secrets: bool = False) -> str | None:
        (name,) = self._select([name])
        record = self.state.read().get(name)
        if record is None or record.backend != self.name or record.pid is None:
            return None
        url = self._services[name].url(record.ports)
        return url if show_secrets else mask_url(url)

    # -- steps -----------------------------------------------------------------------

    def _select(self, names: list[str]) -> list[str]:
        unknown = [name for name in names if name not in self._services]
        if unknown:
            raise ServiceError(f"unknown service {', '.join(unknown)}: choose from {', '.join(SERVICE_NAMES)}")
        # Start order, whatever order they were asked in.
        return [name for name in SERVICE_NAMES if not names or name in names]

    def _up_one(self, name: str, timeout: float) -> ServiceStatus:
        record = self.state.read().get(name)
        if record is not None and record.backend != self.name and (record.pid or record.container_id):
            raise ServiceError(f"{name} is run by the {record.backend} backend: stop it there first")
        if record is not None and record_is_live(record):
            logger.info("%s: reusing pid %s on port %s", name, record.pid, self._main_port(name, record))
            self._wait_healthy(name, record, time.monotonic() + timeout, timeout, started_here=False)
            return self._status_of(name, record)

        try:
            binary = self._services[name].locate()
        except MissingBinary as exc:
            return ServiceStatus(name=name, backend=self.name, state=State.UNAVAILABLE, detail=str(exc))
        return self._start(name, binary, record, timeout)

    def _start(self, name: str, binary: str, previous: ServiceRecord | None, timeout: float, keep_ports: bool = False) -> ServiceStatus:
        deadline = time.monotonic() + timeout
        service = self._services[name]
        folder = self.state_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        ports = self._choose_ports(name, previous, keep_ports)

        service.prepare(folder, ports)
        try:
            handle = service.start(folder, ports, binary, self._spawn, timeout)
        except OSError as exc:
            raise ServiceError(f"{name}: cannot run {binary}: {exc.strerror}") from None
        _children[handle.pid] = handle

        record = ServiceRecord(
            backend=self.name, pid=handle.pid, ports=ports, folder=str(folder),
            started_at=time.time(), binary=Path(binary).name, phase="starting",
        )
        # Recorded before the wait: `status` elsewhere shows it starting, and if this command is
        # interrupted, a later `down` still finds the pid to stop.
        self.state.put(name, record)
        logger.info("%s: started %s (pid %s) on %s:%s", name, binary, record.pid, LOCALHOST, self._main_port(name, record))

        self._wait_healthy(name, record, deadline, timeout, started_here=True)
        try:
            service.provision(folder, ports)
        except ServiceError:
            self._stop(name)
            raise
        # Checked again now that the stack's user and database exist.
        self._wait_healthy(name, record, deadline, timeout, started_here=True)

        record.phase = "running"
        self.state.put(name, record)
        return self._status_of(name, record)

    def _wait_healthy(self, name: str, record: ServiceRecord, deadline: float, timeout: float, started_here: bool) -> None:
        service = self._services[name]
        folder = Path(record.folder or self.state_dir / name)
        port = self._main_port(name, record)
        while True:
            if not pid_alive(record.pid):
                self._mark_stopped(name)
                raise ServiceError(f"{name} exited while starting on {LOCALHOST}:{port}; {self._failure_tail(name, folder)}")

            ok, error = service.check(folder, record.ports)
            if ok:
                return
            if time.monotonic() >= deadline:
                if started_here:
                    self._stop(name)
                raise UnhealthyError(
                    f"{name} on {LOCALHOST}:{port} not healthy after {timeout:g} s: {error}; {self._failure_tail(name, folder)}"
                )
            time.sleep(POLL_INTERVAL)

    def _stop(self, name: str) -> ServiceRecord | None:
        """Stop the recorded pid when it is still ours; returns the record (ports kept for the next start)."""
        record = self.state.read().get(name)
        if record is None or record.backend != self.name or record.pid is None:
            return record
        if record_is_live(record):
            logger.info("%s: stopping pid %s", name, record.pid)
            self._terminate(record.pid)
        return self._mark_stopped(name)

    def _terminate(self, pid: int) -> None:
        for sig, wait in ((signal.SIGTERM, self._stop_timeout), (signal.SIGKILL, 5.0)):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not pid_alive(pid):
                    return
                time.sleep(POLL_INTERVAL)
            logger.warning("pid %s still running %g s after %s", pid, wait, sig.name)
        raise ServiceError(f"pid {pid} survived SIGKILL; it may be stuck in the kernel")

    def _mark_stopped(self, name: str) -> ServiceRecord | None:
        with self.state.editing() as records:
            record = records.get(name)
            if record is not None:
                _release(record.pid)
                record.pid, record.started_at, record.phase = None, None, "stopped"
            return record

    def _is_stale(self, record: ServiceRecord | None) -> bool:
        return record is not None and record.backend == self.name and record.pid is not None and not record_is_live(record)

    def _repair(self, stale: list[str], seen: dict[str, ServiceRecord]) -> None:
        if not stale:
            return
        with self.state.editing() as records:
            for name in stale:
                record = records.get(name)
                # Another process may have restarted it since we looked.
                if record is not None and record.pid == seen[name].pid and not record_is_live(record):
                    logger.info("%s: pid %s is gone; marking it stopped in %s", name, record.pid, self.state.path)
                    _release(record.pid)
                    record.pid, record.started_at, record.phase = None, None, "stopped"

    def _status_of(self, name: str, record: ServiceRecord | None) -> ServiceStatus:
        service = self._services[name]
        if record is not None and record.backend != self.name:
            return ServiceStatus(name=name, backend=record.backend, state=State.STOPPED, detail=f"run by the {record.backend} backend")
        if record is None or record.pid is None or not record_is_live(record):
            try:
                service.locate()
            except MissingBinary as exc:
                return ServiceStatus(name=name, backend=self.name, state=State.UNAVAILABLE, detail=str(exc))
            detail = f"pid {record.pid} is gone" if record is not None and record.pid is not None else ""
            return ServiceStatus(name=name, backend=self.name, state=State.STOPPED, detail=detail)

        ok, error = service.check(Path(record.folder or self.state_dir / name), record.ports)
        if ok:
            state = State.HEALTHY
        elif record.phase == "starting":
            state = State.STARTING
        else:
            state = State.UNHEALTHY
        return ServiceStatus(
            name=name, backend=self.name, state=state, port=self._main_port(name, record), pid=record.pid,
            started_at=record.started_at, detail=error, url=mask_url(service.url(record.ports)),
        )

    def _choose_ports(self, name: str, previous: ServiceRecord | None, keep_ports: bool) -> dict[str, int]:
        roles = self._services[name].port_roles
        requested = dict(previous.ports) if previous is not None else {}
        # Ports that must be used as they are: a configured one, and all of them on restart.
        strict: set[str] = set()
        if name in self._ports:
            requested[roles[0]] = self._ports[name]
            strict.add(roles[0])
        if keep_ports:
            strict.update(requested)

        ports: dict[str, int] = {}
        for role in roles:
            port = requested.get(role)
            if port is not None and port not in ports.values() and not port_in_use(port):
                ports[role] = port
            elif role in strict:
                raise ServiceError(
                    f"{name}: port {port} on {LOCALHOST} is already in use: stop what listens there or choose another port"
                )
            else:
                # A remembered port someone took since is simply replaced.
                ports[role] = next(p for p in iter(free_port, None) if p not in ports.values())
        return ports

    def _main_port(self, name: str, record: ServiceRecord) -> int | None:
        return record.ports.get(self._services[name].port_roles[0])

    def _spawn(self, command: list[str], log_path: Path, cwd: Path) -> subprocess.Popen:
        with open(log_path, "ab") as log:
            # A session of its own: Ctrl-C and a closed terminal do not reach the server.
            return subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=cwd, start_new_session=True, close_fds=True,
            )

    def _failure_tail(self, name: str, folder: Path) -> str:
        parts = []
        for path in self._services[name].failure_logs(folder):
            lines = [line.strip() for line in last_lines(path, FAILURE_TAIL_LINES) if line.strip()]
            if lines:
                parts.append(f"last lines of {path}: " + " | ".join(lines))
        return "; ".join(parts) or "no log written"


def _release(pid: int | None) -> None:
    """Let go of the handle of a server that stopped, collecting its exit status."""
    handle = _children.pop(pid, None) if pid is not None else None
    if handle is not None:
        handle.poll()


def _follow(path: Path) -> Iterator[str]:
    """Yield lines appended to `path` until the caller stops; a rotated or truncated file is reopened."""
    handle = open(path, encoding="utf-8", errors="replace")
    try:
        handle.seek(0, os.SEEK_END)
        while True:
            line = handle.readline()
            if line:
                yield line.rstrip("\n")
                continue
            try:
                rotated = os.stat(path).st_ino != os.fstat(handle.fileno()).st_ino
                truncated = os.stat(path).st_size < handle.tell()
            except FileNotFoundError:
                rotated, truncated = False, False
            if rotated or truncated:
                handle.close()
                handle = open(path, encoding="utf-8", errors="replace")
            else:
                time.sleep(FOLLOW_INTERVAL)
    finally:
        handle.close()
