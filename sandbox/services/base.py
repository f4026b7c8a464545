"""The interface every service backend (Docker containers or local processes) implements."""

import enum
from dataclasses import asdict, dataclass
from typing import Iterator, Protocol

#: Services of the stack the Java backend expects, in start order.
SERVICE_NAMES = ("redis", "mysql", "clickhouse")

#: The stack's shared credentials (the project's docker-compose file uses these).
STACK_PASSWORD = "opik"
STACK_DATABASE = "opik"
STACK_USER = "opik"

#: Label every container the sandbox creates carries; only labelled containers are ever stopped or removed.
PROJECT_LABEL = "io.rq-sandbox.project"


class State(str, enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    #: The backend cannot run this service here (binary or image missing, engine unreachable).
    UNAVAILABLE = "unavailable"


@dataclass
class ServiceStatus:
    """One service's current state, as its backend reports it."""

    name: str
    backend: str
    state: State
    #: Host port on 127.0.0.1, when the service listens.
    port: int | None = None
    #: Process id (local backend) or container id (Docker backend).
    pid: int | None = None
    container_id: str | None = None
    #: Wall-clock start time, seconds since the epoch.
    started_at: float | None = None
    #: The last health error, or why the service is unavailable and what to install.
    detail: str = ""
    #: Connection URL with the password masked, e.g. ``redis://:***@127.0.0.1:6379/0``.
    url: str | None = None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["state"] = self.state.value
        return data


class ServiceError(Exception):
    """A service could not be started, stopped or checked; the message is one line."""


class Backend(Protocol):
    """A way to run the stack's services."""

    name: str

    def up(self, names: list[str], timeout: float = 60.0) -> list[ServiceStatus]:
        """Start (or reuse) the services and wait until healthy; raise ServiceError naming the failed check."""

    def down(self, names: list[str]) -> list[ServiceStatus]:
        """Stop what this backend started for those services; never touch anything else."""

    def status(self, names: list[str]) -> list[ServiceStatus]:
        """Report each service's state, repairing a stale state file on the way."""

    def restart(self, name: str, timeout: float = 60.0) -> ServiceStatus:
        """Stop and start one service, keeping its port and data."""

    def logs(self, name: str, tail: int = 100, follow: bool = False) -> Iterator[str]:
        """Yield the service's log lines: the last ``tail``, then new ones while ``follow``."""

    def connection_url(self, name: str, show_secrets: bool = False) -> str | None:
        """URL a developer points the Java backend or the worker at; password masked unless asked."""
