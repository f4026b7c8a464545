"""A private redis-server that the sandbox starts, owns and stops."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sandbox.errors import InfrastructureError, UsageError
from sandbox.services.binaries import RedisBinary, find_redis_server
from sandbox.services.ports import LOCALHOST, free_port, port_in_use

logger = logging.getLogger(__name__)

PERSISTENCE_MODES = ("none", "aof-everysec", "aof-always")

#: Seconds between two PINGs while waiting for the server to come up.
POLL_INTERVAL = 0.05

#: Log lines quoted in an error when the server will not start.
LOG_TAIL_LINES = 15

CONFIG_NAME = "redis.conf"
LOG_NAME = "redis.log"
PID_NAME = "redis.pid"


def _quote(value: str) -> str:
    # redis.conf splits arguments like a shell, so quoting keeps spaces and quotes in paths
    # and passwords intact.
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


class RedisProcess:
    """A redis-server bound to 127.0.0.1 in its own folder and process group."""

    def __init__(
        self,
        state_dir: Path | None = None,
        port: int | None = None,
        password: str | None = None,
        persistence: str = "none",
        binary: RedisBinary | None = None,
    ) -> None:
        if persistence not in PERSISTENCE_MODES:
            raise UsageError(
                f"invalid Redis persistence {persistence!r}: use one of {', '.join(PERSISTENCE_MODES)}"
            )
        if port is not None and not 0 < port < 65536:
            raise UsageError(f"invalid Redis port {port}: use 1-65535")

        self._state_dir = Path(state_dir) if state_dir is not None else None
        self._requested_port = port
        self._port = port
        self._password = password or None
        self._persistence = persistence
        self._binary = binary

        #: Folder containing config, log, pid file and AOF. A temporary one is deleted by stop().
        self._dir: Path | None = None
        self._owns_dir = False
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    # -- properties ------------------------------------------------------------------

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def url(self) -> str:
        """redis://127.0.0.1:PORT/0, with the password when one is set."""
        if self._port is None:
            raise InfrastructureError("Redis has no port yet: start it first")
        auth = f":{quote(self._password, safe='')}@" if self._password else ""
        return f"redis://{auth}{LOCALHOST}:{self._port}/0"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def version(self) -> tuple[int, int, int] | None:
        return self._binary.version if self._binary is not None else None

    @property
    def dir(self) -> Path | None:
        return self._dir

    @property
    def log_path(self) -> Path | None:
        return self._dir / LOG_NAME if self._dir is not None else None

    @property
    def config_path(self) -> Path | None:
        return self._dir / CONFIG_NAME if self._dir is not None else None

    # -- lifecycle -------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Write the config, launch redis-server and wait until it responds to PING."""
        if self.is_running():
            raise InfrastructureError(f"Redis on port {self._port} is already running (pid {self.pid})")

        if self._binary is None:
            self._binary = find_redis_server()

        if self._port is None:
            self._port = free_port()
        if port_in_use(self._port):
            # A port the user chose is theirs to fix. A port chosen here was taken by another process.
            error = UsageError if self._requested_port is not None else InfrastructureError
            raise error(
                f"port {self._port} on {LOCALHOST} is already in use: "
                "stop what listens there or choose another Redis port"
            )

        self._prepare_dir()
        try:
            self._write_config()
            self._launch()
            self._wait_ready(timeout)
        except BaseException:
            # The error already contains the log lines, so a temporary folder has nothing else to keep.
            self._abort()
            self._remove_own_dir()
            raise

        logger.info(
            "Redis %s started on %s:%s (pid %s, persistence %s)",
            self._binary.version_text, LOCALHOST, self._port, self.pid, self._persistence,
        )

    def stop(self, timeout: float = 5.0, keep: bool = False) -> None:
        """Shut the server down, by SHUTDOWN and then by signals to its pid.

        The temporary folder is removed unless `keep` is true. A `state_dir` is never removed.
        """
        process = self._process
        if process is not None and process.poll() is None:
            # A stopped process cannot read SHUTDOWN or act on SIGTERM.
            self.resume()
            self._shutdown(process, timeout)

        if process is not None:
            logger.info(
                "Redis stopped on %s:%s (pid %s, exit code %s)",
                LOCALHOST, self._port, process.pid, process.returncode,
            )
        self._process = None
        self._paused = False

        if not keep:
            self._remove_own_dir()

    def restart(self, timeout: float = 10.0) -> None:
        """Stop and start again on the same port in the same folder, so an AOF is replayed."""
        self.stop(keep=True)
        self.start(timeout=timeout)

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): it keeps its port but responds to nothing."""
        if not self.is_running():
            raise InfrastructureError("Redis is not running: nothing to pause")
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)
        self._paused = True
        logger.info("Redis paused on %s:%s (pid %s)", LOCALHOST, self._port, self.pid)

    def resume(self) -> None:
        """Let a paused server run again (SIGCONT)."""
        if not self._paused or not self.is_running():
            return
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)
        self._paused = False
        logger.info("Redis resumed on %s:%s (pid %s)", LOCALHOST, self._port, self.pid)

    def __enter__(self) -> RedisProcess:
        if not self.is_running():
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- steps -----------------------------------------------------------------------

    def _prepare_dir(self) -> None:
        if self._dir is not None:
            return
        if self._state_dir is not None:
            self._state_dir.mkdir(parents=True, exist_ok=True)
            self._dir = self._state_dir.resolve()
        else:
            self._dir = Path(tempfile.mkdtemp(prefix="rq-sandbox-redis-"))
            self._owns_dir = True

    def _remove_own_dir(self) -> None:
        if self._owns_dir and self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
            self._owns_dir = False

    def _write_config(self) -> None:
        assert self._dir is not None
        assert self.config_path is not None
        assert self.log_path is not None
        lines = [
            f"bind {LOCALHOST}",
            "protected-mode yes",
            f"port {self._port}",
            "daemonize no",
            f"dir {_quote(str(self._dir))}",
            f"logfile {_quote(str(self.log_path))}",
            f"pidfile {_quote(str(self._dir / PID_NAME))}",
            # No RDB snapshots: persistence, when requested, is the AOF alone.
            'save ""',
        ]
        if self._persistence == "none":
            lines.append("appendonly no")
        else:
            lines.append("appendonly yes")
            lines.append(f"appendfsync {self._persistence.removeprefix('aof-')}")
        if self._password:
            lines.append(f"requirepass {_quote(self._password)}")

        # The file may contain the password, so only its owner may read it.
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")

    def _launch(self) -> None:
        assert self._binary is not None
        assert self.log_path is not None
        with open(self.log_path, "ab") as log:
            # A session of its own keeps Ctrl-C in the terminal from reaching the server,
            # so the sandbox decides when it stops.
            self._process = subprocess.Popen(
                [str(self._binary.path), str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                start_new_session=True,
                close_fds=True,
            )

    def _client(self, timeout: float) -> redis.Redis:
        return redis.Redis(
            host=LOCALHOST,
            port=self._port,
            password=self._password,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            # Retries with backoff would turn the refused connections of start-up, and the
            # closed one SHUTDOWN leaves, into seconds of waiting.
            retry=Retry(NoBackoff(), 0),
        )

    def _wait_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        client = self._client(timeout=min(1.0, timeout))
        try:
            while True:
                code = self._process.poll()
                if code is not None:
                    self._process = None
                    raise InfrastructureError(
                        f"redis-server exited with code {code} while starting on port {self._port}; "
                        f"{self._log_label()}:\n{self._log_tail()}"
                    )
                try:
                    if client.ping():
                        return
                except redis.AuthenticationError as exc:
                    self._abort()
                    raise InfrastructureError(f"Redis on port {self._port} rejected the configured password: {exc}") from None
                except (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError):
                    pass  # not listening yet, or still replaying its AOF

                if time.monotonic() >= deadline:
                    self._abort()
                    raise InfrastructureError(
                        f"redis-server start timed out: no reply to PING on port {self._port} after {timeout:g} s; "
                        f"{self._log_label()}:\n{self._log_tail()}"
                    )
                time.sleep(POLL_INTERVAL)
        finally:
            client.close()

    def _abort(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()
        self._process = None

    def _shutdown(self, process: subprocess.Popen[bytes], timeout: float) -> None:
        client = self._client(timeout=timeout)
        try:
            # Without persistence there is nothing worth writing on the way out.
            client.shutdown(nosave=self._persistence == "none")
        except redis.RedisError as exc:
            logger.warning("Redis on port %s: SHUTDOWN failed (%s); signalling pid %s", self._port, exc, process.pid)
        finally:
            client.close()

        for send in (process.terminate, process.kill):
            try:
                process.wait(timeout=timeout)
                return
            except subprocess.TimeoutExpired:
                logger.warning("Redis pid %s still running after %g s; sending %s", process.pid, timeout, send.__name__)
                send()
        process.wait()

    def _log_label(self) -> str:
        # A temporary folder is removed with the failed start, so its path would mislead.
        return "last log lines" if self._owns_dir else f"log {self.log_path}"

    def _log_tail(self) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log written)"
        lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:]) or "(log is empty)"
