"""The state file: which service runs where, shared by every `rq-sandbox` process.

One JSON file per state folder is replaced atomically, so a reader never sees half a
write. Read-modify-write cycles take an fcntl lock on a separate lock file, because each
rename gives ``state.json`` a new inode.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from sandbox.services.base import ServiceError

logger = logging.getLogger(__name__)

STATE_NAME = "state.json"
LOCK_NAME = "state.lock"
OPERATIONS_LOCK_NAME = "operations.lock"
FORMAT_VERSION = 1

#: Seconds to wait for the state lock; writers hold it for milliseconds.
STATE_LOCK_TIMEOUT = 10.0

#: Seconds between two attempts at a busy lock.
LOCK_POLL_INTERVAL = 0.05

ENV_STATE_DIR = "RQ_SANDBOX_STATE_DIR"


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$RQ_SANDBOX_STATE_DIR``, else ``$XDG_STATE_HOME/rq-sandbox``, else ``~/.local/state/rq-sandbox``."""
    environ = os.environ if environ is None else environ
    if environ.get(ENV_STATE_DIR):
        return Path(environ[ENV_STATE_DIR]).expanduser()
    if environ.get("XDG_STATE_HOME"):
        return Path(environ["XDG_STATE_HOME"]).expanduser() / "rq-sandbox"
    return Path.home() / ".local" / "state" / "rq-sandbox"


@dataclass
class ServiceRecord:
    """The process (or container) one backend started for one service."""

    backend: str
    pid: int | None = None
    #: Ports on 127.0.0.1 by role, e.g. ``{"port": 6380}`` or ``{"http": 8123, "tcp": 9000}``.
    ports: dict[str, int] = field(default_factory=dict)
    #: The service's own folder: config, data, logs.
    folder: str | None = None
    #: Wall-clock start time, seconds since the epoch.
    started_at: float | None = None
    #: Executable name that ``/proc/<pid>/cmdline`` must contain for the pid to still be ours.
    binary: str | None = None
    container_id: str | None = None
    #: "starting" until the service first passed its health check, then "running".
    phase: str = "running"

    @classmethod
    def from_dict(cls, data: Mapping) -> ServiceRecord:
        known = {item.name for item in fields(cls)}
        # Keys another version wrote are dropped rather than refused.
        return cls(**{key: value for key, value in data.items() if key in known})


# -- processes -------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """Return whether `pid` is running; a child of ours that exited is reaped on the way."""
    try:
        reaped, _ = os.waitpid(pid, os.WNOHANG)
        if reaped == pid:
            return False
    except ChildProcessError:
        pass  # not our child, so /proc decides

    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError as exc:
        if exc.errno == errno.ESRCH:
            return False
        raise
    # The state letter follows the parenthesised command name. Z is a zombie its parent has not reaped yet.
    state = stat.rpartition(")")[2].split()[:1]
    return state != ["Z"]


def process_command(pid: int) -> str:
    """Return the process's command line, arguments joined by spaces; empty when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode("utf-8", errors="replace").strip()


def record_is_live(record: ServiceRecord) -> bool:
    """Return whether the record's pid still runs the program the record names.

    A pid the kernel handed to another program since is not ours: it must never be signalled.
    """
    if record.pid is None or not pid_alive(record.pid):
        return False
    if record.binary and record.binary not in process_command(record.pid):
        logger.info("pid %s no longer runs %s: the state entry is stale", record.pid, record.binary)
        return False
    return True


# -- the file --------------------------------------------------------------------------


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, what: str) -> Iterator[None]:
    """Hold an exclusive fcntl lock on `path`, waiting at most `timeout` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ServiceError(
                        f"{what} is locked: another rq-sandbox command still holds {path} after {timeout:g} s; "
                        "wait for it to finish"
                    ) from None
                time.sleep(LOCK_POLL_INTERVAL)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class StateFile:
    """``<state_dir>/state.json``: one record per service name."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / STATE_NAME
        self.lock_path = self.dir / LOCK_NAME

    def read(self) -> dict[str, ServiceRecord]:
        """Return the records as last written; no lock is needed, because a rename is atomic."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ServiceError(f"cannot read state file {self.path}: {exc.strerror}") from None

        try:
            data = json.loads(text)
            services = data.get("services", {})
            return {name: ServiceRecord.from_dict(entry) for name, entry in services.items()}
        except (ValueError, AttributeError, TypeError) as exc:
            raise ServiceError(
                f"state file {self.path} is damaged ({exc}); stop the services it lists by hand, then delete it"
            ) from None

    @contextlib.contextmanager
    def editing(self) -> Iterator[dict[str, ServiceRecord]]:
        """Lock, read, let the caller change the records in place, write them back."""
        with file_lock(self.lock_path, STATE_LOCK_TIMEOUT, "the state file"):
            records = self.read()
            yield records
            self._write(records)

    def put(self, name: str, record: ServiceRecord | None) -> None:
        """Set (or with None, forget) one service's record."""
        with self.editing() as records:
            if record is None:
                records.pop(name, None)
            else:
                records[name] = record

    def operations_lock(self, timeout: float) -> contextlib.AbstractContextManager[None]:
        """Serialise up, down and restart between processes sharing this state folder."""
        return file_lock(self.dir / OPERATIONS_LOCK_NAME, timeout, "the services state")

    def _write(self, records: dict[str, ServiceRecord]) -> None:
        payload = {
            "version": FORMAT_VERSION,
            "services": {name: asdict(record) for name, record in sorted(records.items())},
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(prefix=".state-", suffix=".json", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(payload, handle, indent=2)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
