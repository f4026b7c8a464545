"""Events a run emits. The headless progress, the reports and the TUI subscribe to them."""

import time
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Event:
    #: Wall-clock time the event was made, seconds since the epoch.
    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class RunStarted(Event):
    scenario: str
    total_jobs: int
    redis_url: str  # always masked
    embedded_redis: bool


@dataclass(frozen=True)
class ServiceState(Event):
    service: str
    state: str  # starting | healthy | stopped | failed
    detail: str = ""


@dataclass(frozen=True)
class WorkersReady(Event):
    names: tuple[str, ...]
    mode: str


@dataclass(frozen=True)
class Progress(Event):
    """Counts at one monitor tick; the same numbers every face shows."""

    total: int
    enqueued: int
    finished: int
    failed: int
    started: int
    elapsed_s: float
    #: Jobs whose hash disappeared (expired or lost); they will not finish.
    gone: int = 0


@dataclass(frozen=True)
class WorkerCrashed(Event):
    name: str
    exit_code: int | None
    last_error: str | None
    job_id: str | None


@dataclass(frozen=True)
class Notice(Event):
    """A one-line message about the run worth showing (deadline reached, cleanup done)."""

    message: str


@dataclass(frozen=True)
class RunFinished(Event):
    report: dict
    exit_code: int
