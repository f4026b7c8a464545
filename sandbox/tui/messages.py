"""Messages the dashboard's thread workers post; handlers on the screens change the widgets.

Every message carries ``at``, the wall-clock time it was made. Those that report
a state rather than a change (a snapshot, the service table, a log tail,
progress) replace an unprocessed one of their kind, so a slow screen draws the
latest state instead of a backlog.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from textual.message import Message

from sandbox.monitor.snapshot import JobDetail, Snapshot
from sandbox.scenario import events
from sandbox.services.base import ServiceStatus
from sandbox.worker.pool import WorkerHandle


@dataclass
class TimedMessage(Message):
    #: Wall-clock time the message was made, seconds since the epoch.
    at: float = field(default_factory=time.time, kw_only=True)


class _LatestWins:
    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


@dataclass
class SnapshotReady(_LatestWins, TimedMessage):
    snapshot: Snapshot
    #: The pool's own view of its workers, to show the ones that died.
    pool_workers: tuple[WorkerHandle, ...] = ()


@dataclass
class ConnectionChanged(TimedMessage):
    """The monitor lost or regained Redis."""

    connected: bool
    #: The Redis URL with any password masked.
    url: str
    detail: str = ""
    #: Seconds until the next attempt while disconnected.
    retry_in_s: float = 0.0


@dataclass
class ServicesUpdated(_LatestWins, TimedMessage):
    statuses: tuple[ServiceStatus, ...]


@dataclass
class ServiceActionDone(TimedMessage):
    service: str
    action: str
    #: One line for the user: what happened, or why it failed.
    message: str
    ok: bool


@dataclass
class LogTail(_LatestWins, TimedMessage):
    service: str
    lines: tuple[str, ...]


@dataclass
class WorkersChanged(TimedMessage):
    message: str
    ok: bool


@dataclass
class JobsSent(TimedMessage):
    job_ids: tuple[str, ...]
    requested: int
    seconds: float
    error: str | None = None


@dataclass
class SendProgress(_LatestWins, TimedMessage):
    sent: int
    total: int


@dataclass
class RunEvent(TimedMessage):
    """An event of the scenario run, as the runner emitted it."""

    event: events.Event

    def can_replace(self, message: Message) -> bool:
        # Only progress is a state; every other event is worth showing.
        return (isinstance(message, RunEvent) and isinstance(self.event, events.Progress)
                and isinstance(message.event, events.Progress))


@dataclass
class RunDone(TimedMessage):
    scenario: str
    report: dict | None
    exit_code: int
    report_path: Path | None = None
    error: str | None = None


@dataclass
class JobDetailLoaded(TimedMessage):
    detail: JobDetail | None
    #: Contract findings as (severity, field, rule, message); None when no checker is installed.
    findings: tuple[tuple[str, str, str, str], ...] | None = None
    error: str | None = None
