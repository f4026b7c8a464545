"""One pipelined, read-only look at Redis per tick: queues, registries, workers and recent jobs.

Every tick costs one round trip, whatever the number of jobs: the commands whose
keys depend on an earlier reply (the worker hashes, the job hashes) use the
names the previous tick found, so a new worker or job shows up one tick late.
A tick sends only LLEN, ZCARD, SMEMBERS, HMGET, LRANGE and ZREVRANGE: RQ's
``Registry.count`` cleans up as it counts, which would write to what we watch.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
import zlib
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable

import redis

from sandbox.contract import keys
# Re-exported: the TUI's queue table and the tests name registries through this module.
from sandbox.contract.keys import REGISTRY_KINDS, registry_key
from sandbox.contract.timestamps import parse_instant
from sandbox.monitor.harvest import decode_exc_string

logger = logging.getLogger(__name__)

#: Job ids whose hashes each snapshot reads.
JOB_WINDOW = 200
#: Ids taken from the head of each queue and registry to find jobs others enqueued.
DISCOVER_PER_KEY = 20
#: Depth samples kept per queue; at 0.5 s a tick that is the last 5 minutes.
HISTORY_LEN = 600

_JOB_FIELDS = ("status", "origin", "description", "created_at", "enqueued_at", "started_at", "ended_at", "worker_name")
_WORKER_FIELDS = ("state", "current_job", "pid", "queues")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _instant(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError:
        return None


def _ms(later: datetime | None, earlier: datetime | None) -> float | None:
    if later is None or earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000.0


@dataclass(frozen=True)
class QueueStats:
    name: str
    #: LLEN of the queue list: jobs waiting for a worker.
    depth: int
    #: ZCARD per registry kind.
    registries: dict[str, int]
    #: Recent depths, oldest first, one per snapshot.
    history: tuple[int, ...] = ()


@dataclass(frozen=True)
class WorkerRow:
    name: str
    #: RQ's worker state (idle, busy, started, suspended), or "dead" once its hash is gone.
    state: str
    current_job: str | None
    pid: int | None
    queues: str = ""


@dataclass(frozen=True)
class JobRow:
    job_id: str
    #: RQ's status, or None when the hash is gone (expired or deleted).
    status: str | None
    function: str = ""
    origin: str = ""
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker_name: str | None = None

    @property
    def queue_wait_ms(self) -> float | None:
        return _ms(self.started_at, self.enqueued_at)

    @property
    def processing_ms(self) -> float | None:
        return _ms(self.ended_at, self.started_at)

    @property
    def total_ms(self) -> float | None:
        return _ms(self.ended_at, self.enqueued_at)


@dataclass(frozen=True)
class Snapshot:
    #: Wall-clock time the snapshot was taken, seconds since the epoch.
    at: float
    queues: tuple[QueueStats, ...]
    workers: tuple[WorkerRow, ...]
    #: The job window, newest first.
    jobs: tuple[JobRow, ...]
    #: Pipelines executed to build this snapshot; 1 by design.
    round_trips: int
    #: Milliseconds the round trip took.
    latency_ms: float


class Monitor:
    """Read-only watcher of one Redis; not thread-safe, use it from one thread."""

    def __init__(self, connection: redis.Redis, queues: Iterable[str] = (), window: int = JOB_WINDOW,
                 history_len: int = HISTORY_LEN):
        self.connection = connection
        self.window = window
        #: Queues watched even while their list is empty (an empty list has no key to find).
        self.known_queues = set(queues)
        self.queues: list[str] = sorted(self.known_queues)
        #: Round trips of the last `snapshot` call.
        self.round_trips = 0
        self.history_len = history_len
        self._history: dict[str, deque[int]] = {}
        self._workers: list[str] = []
        self._jobs: OrderedDict[str, None] = OrderedDict()

    def discover_queues(self) -> list[str]:
        """Find queues from ``rq:queues`` and SCANs of queue lists and registries; run it now and then.

        A queue once found stays: the Java writer never adds its queues to
        ``rq:queues``, and a drained queue has no list key left, so the next
        discovery could miss it.
        """
        names = {_text(raw) for raw in self.connection.smembers(keys.QUEUES_SET)}
        found = {name.removeprefix(keys.QUEUE_PREFIX) for name in names if name} | self.known_queues
        for raw in self.connection.scan_iter(match=f"{keys.QUEUE_PREFIX}*", count=1000):
            name = _text(raw)
            if name and not name.endswith(":intermediate"):
                found.add(name.removeprefix(keys.QUEUE_PREFIX))
        found |= self._registry_queues()
        self.queues = sorted(found | set(self.queues))
        return self.queues

    def add_queues(self, names: Iterable[str]) -> None:
        """Watch these queues from the next snapshot on, even while nothing shows them in Redis."""
        self.known_queues.update(names)
        self.queues = sorted(self.known_queues | set(self.queues))

    def _registry_queues(self) -> set[str]:
        # One walk of the keyspace that returns only sorted sets, so the job hashes do not cross the wire.
        prefixes = tuple(registry_key(kind, "") for kind in REGISTRY_KINDS)
        found = set()
        try:
            for raw in self.connection.scan_iter(match="rq:*", count=1000, _type="zset"):
                name = _text(raw)
                for prefix in prefixes:
                    if name.startswith(prefix) and len(name) > len(prefix):
                        found.add(name[len(prefix):])
        except redis.ResponseError as error:
            # SCAN ... TYPE needs Redis 6; older servers show the queues with a list only.
            logger.debug("Monitor: no registry scan on this Redis: %s", error)
        return found

    def watch(self, job_ids: Iterable[str]) -> None:
        """Put these ids at the newest end of the job window."""
        for job_id in job_ids:
            self._jobs.pop(job_id, None)
            self._jobs[job_id] = None
        while len(self._jobs) > self.window:
            self._jobs.popitem(last=False)

    def snapshot(self, job_ids: Iterable[str] = ()) -> Snapshot:
        """Take one snapshot in one pipelined round trip; ``job_ids`` join the job window first."""
        self.watch(job_ids)
        queues = list(self.queues)
        workers = list(self._workers)
        jobs = list(reversed(self._jobs))

        pipe = self.connection.pipeline(transaction=False)
        for queue in queues:
            pipe.llen(keys.queue_key(queue))
            for kind in REGISTRY_KINDS:
                pipe.zcard(registry_key(kind, queue))
        pipe.smembers(keys.WORKERS_SET)
        for name in workers:
            pipe.hmget(f"rq:worker:{name}", _WORKER_FIELDS)
        for job_id in jobs:
            pipe.hmget(keys.job_key(job_id), _JOB_FIELDS)
        for queue in queues:
            pipe.lrange(keys.queue_key(queue), -DISCOVER_PER_KEY, -1)
            for kind in ("started", "finished", "failed"):
                pipe.zrevrange(registry_key(kind, queue), 0, DISCOVER_PER_KEY - 1)

        started = time.perf_counter()
        replies = iter(self._execute(pipe))
        latency_ms = (time.perf_counter() - started) * 1000.0

        queue_stats = []
        for queue in queues:
            depth = int(next(replies))
            counts = {kind: int(next(replies)) for kind in REGISTRY_KINDS}
            history = self._history.setdefault(queue, deque(maxlen=self.history_len))
            history.append(depth)
            queue_stats.append(QueueStats(queue, depth, counts, tuple(history)))

        members = {_text(raw).removeprefix("rq:worker:") for raw in next(replies)}
        worker_rows = {name: _worker_row(name, next(replies)) for name in workers}
        rows = [_job_row(job_id, next(replies)) for job_id in jobs]

        discovered = []
        for _ in queues:
            discovered.extend(_text(raw) for raw in next(replies))
            for kind in ("started", "finished", "failed"):
                discovered.extend(_member_job_id(kind, _text(raw)) for raw in next(replies))

        self._workers = sorted(members)
        self._adopt(discovered)
        # A worker registered since the last tick has no hash read yet: its state shows as "?".
        worker_list = [worker_rows.get(name) or WorkerRow(name, "?", None, None) for name in sorted(members)]
        # A registered worker whose hash is gone died without deregistering.
        worker_list = [row if row.state else WorkerRow(row.name, "dead", None, row.pid) for row in worker_list]
        return Snapshot(time.time(), tuple(queue_stats), tuple(worker_list), tuple(rows), self.round_trips, latency_ms)

    def _execute(self, pipe: redis.client.Pipeline) -> list:
        self.round_trips = 1
        return pipe.execute()

    def _adopt(self, discovered: list[str | None]) -> None:
        # Jobs found in queues and registries join the window without pushing out newer ones.
        new = [job_id for job_id in discovered if job_id and job_id not in self._jobs]
        room = self.window - len(self._jobs)
        for job_id in new[: max(0, room)]:
            self._jobs[job_id] = None
            self._jobs.move_to_end(job_id, last=False)


def _member_job_id(kind: str, member: str | None) -> str | None:
    if member and kind == "started":
        return keys.started_member_job_id(member)
    return member


def _worker_row(name: str, values: list) -> WorkerRow:
    state, current_job, pid, queues = (_text(v) for v in values)
    return WorkerRow(
        name=name,
        state=state or "",
        current_job=current_job,
        pid=int(pid) if pid and pid.isdigit() else None,
        queues=queues or "",
    )


def _job_row(job_id: str, values: list) -> JobRow:
    status, origin, description, created, enqueued, started, ended, worker = (_text(v) for v in values)
    return JobRow(
        job_id=job_id,
        status=status,
        function=(description or "").split("(", 1)[0],
        origin=origin or "",
        enqueued_at=_instant(enqueued) or _instant(created),
        started_at=_instant(started),
        ended_at=_instant(ended),
        worker_name=worker,
    )


@dataclass
class JobDetail:
    """A job hash decoded for people, with its latest result."""

    job_id: str
    #: Hash fields as text; ``data`` decoded to ``[func, instance, args, kwargs]`` when it is JSON.
    fields: dict[str, str] = field(default_factory=dict)
    result_type: str | None = None
    return_value: str | None = None
    exception: str | None = None

    @property
    def exists(self) -> bool:
        return bool(self.fields)


def read_job_detail(connection: redis.Redis, job_id: str) -> JobDetail:
    """HGETALL the job hash and read its latest result, in one round trip."""
    pipe = connection.pipeline(transaction=False)
    pipe.hgetall(keys.job_key(job_id))
    pipe.xrevrange(keys.result_key(job_id), count=1)
    raw_hash, results = pipe.execute()

    detail = JobDetail(job_id)
    for name, value in sorted(raw_hash.items()):
        name = _text(name)
        detail.fields[name] = decode_data(value) if name == "data" else _text(value) or ""
    if results:
        _, entry = results[0]
        entry = {_text(k): v for k, v in entry.items()}
        detail.result_type = _result_type(_text(entry.get("type")))
        if entry.get("return_value") is not None:
            detail.return_value = _decode_return_value(entry["return_value"])
        if entry.get("exc_string"):
            detail.exception = decode_exc_string(entry["exc_string"])
    return detail


def decode_data(value: bytes | str) -> str:
    """Show a job's ``data`` field: JSON as written, or zlib-compressed JSON as rq writes it."""
    raw = value.encode() if isinstance(value, str) else value
    for candidate in (raw, _inflate(raw)):
        if candidate is None:
            continue
        try:
            return json.dumps(json.loads(candidate), ensure_ascii=False)
        except (UnicodeDecodeError, ValueError):
            continue
    # Pickled or otherwise binary: show its size rather than unpickle it.
    return f"<{len(raw)} bytes, not JSON>"


def _inflate(raw: bytes) -> bytes | None:
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return None


def _decode_return_value(value: bytes | str) -> str:
    try:
        raw = base64.b64decode(value)
    except (binascii.Error, ValueError):
        return _text(value) or ""
    try:
        return json.dumps(json.loads(raw), ensure_ascii=False)
    except (UnicodeDecodeError, ValueError):
        return f"<{len(raw)} bytes, not JSON>"


def _result_type(code: str | None) -> str | None:
    # rq's Result.Type values.
    return {"1": "successful", "2": "failed", "3": "stopped", "4": "retried"}.get(code or "", code)


class TimingWindow:
    """Timings of jobs that ended, kept for a bounded time and count."""

    def __init__(self, horizon_s: float = 600.0, max_jobs: int = 20_000, clock=time.time):
        self.horizon_s = horizon_s
        self._clock = clock
        self._entries: deque[tuple[float, str, float | None, float | None, float | None]] = deque(maxlen=max_jobs)
        self._seen: set[str] = set()

    def add(self, rows: Iterable[JobRow]) -> int:
        """Record the rows that ended and are new; returns how many were added."""
        added = 0
        for row in rows:
            if row.ended_at is None or row.job_id in self._seen:
                continue
            if len(self._entries) == self._entries.maxlen:
                self._seen.discard(self._entries[0][1])
            self._entries.append((row.ended_at.timestamp(), row.job_id, row.queue_wait_ms, row.processing_ms, row.total_ms))
            self._seen.add(row.job_id)
            added += 1
        return added

    def values(self, within_s: float | None = None, job_ids: set[str] | None = None) -> dict[str, list[float]]:
        """Queue wait, processing and total in ms for jobs that ended in the last ``within_s`` seconds."""
        since = self._clock() - (within_s if within_s is not None else self.horizon_s)
        out: dict[str, list[float]] = {"queue_wait": [], "processing": [], "total": []}
        for ended, job_id, wait, processing, total in self._entries:
            if ended < since or (job_ids is not None and job_id not in job_ids):
                continue
            for name, value in (("queue_wait", wait), ("processing", processing), ("total", total)):
                if value is not None:
                    out[name].append(value)
        return out
