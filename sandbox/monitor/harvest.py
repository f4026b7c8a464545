"""Read what RQ recorded for the jobs of a run, in pipelined batches.

Reads only: HMGET on job hashes and XREVRANGE on result streams. No KEYS, no
writes, so watching a run never changes it.
"""

import base64
import binascii
import zlib
from dataclasses import dataclass
from datetime import datetime
from typing import Iterable

import redis

from sandbox.contract import keys
from sandbox.contract.timestamps import parse_instant

#: Job ids read per pipelined round trip.
BATCH_SIZE = 500

_FIELDS = ("status", "created_at", "enqueued_at", "started_at", "ended_at", "worker_name", "origin")

TERMINAL = frozenset({"finished", "failed", "stopped", "canceled"})


@dataclass
class JobRecord:
    """The state of one job as RQ stored it; ``status`` is ``None`` when the hash is gone."""

    job_id: str
    status: str | None
    created_at: datetime | None = None
    enqueued_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker_name: str | None = None
    origin: str | None = None
    #: Fields whose stored value could not be read, mapped to the reason.
    problems: dict[str, str] | None = None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _timestamp(value: str | None, field: str, problems: dict[str, str]) -> datetime | None:
    if not value:
        return None
    try:
        return parse_instant(value)
    except ValueError as error:
        problems[field] = str(error)
        return None


def read_jobs(connection: redis.Redis, job_ids: Iterable[str], batch_size: int = BATCH_SIZE) -> list[JobRecord]:
    """Return one record per id, reading ``batch_size`` hashes per round trip."""
    ids = list(job_ids)
    records = []
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        pipe = connection.pipeline(transaction=False)
        for job_id in batch:
            pipe.hmget(keys.job_key(job_id), _FIELDS)
        for job_id, values in zip(batch, pipe.execute()):
            records.append(_record(job_id, values))
    return records


def _record(job_id: str, values: list) -> JobRecord:
    status, created, enqueued, started, ended, worker_name, origin = (_text(v) for v in values)
    problems: dict[str, str] = {}
    record = JobRecord(
        job_id=job_id,
        status=status,
        created_at=_timestamp(created, "created_at", problems),
        enqueued_at=_timestamp(enqueued, "enqueued_at", problems),
        started_at=_timestamp(started, "started_at", problems),
        ended_at=_timestamp(ended, "ended_at", problems),
        worker_name=worker_name,
        origin=origin,
    )
    record.problems = problems or None
    return record


def read_errors(connection: redis.Redis, job_ids: Iterable[str], batch_size: int = BATCH_SIZE) -> dict[str, str]:
    """Return the exception text RQ stored in each job's latest result, for jobs that have one."""
    ids = list(job_ids)
    errors = {}
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        pipe = connection.pipeline(transaction=False)
        for job_id in batch:
            pipe.xrevrange(keys.result_key(job_id), count=1)
        for job_id, entries in zip(batch, pipe.execute()):
            if not entries:
                continue
            _, fields = entries[0]
            raw = fields.get(b"exc_string") or fields.get("exc_string")
            if raw:
                errors[job_id] = decode_exc_string(raw)
    return errors


def decode_exc_string(raw) -> str:
    """Decode a result's ``exc_string``: RQ 2.x stores it zlib-compressed and base64-encoded."""
    try:
        return zlib.decompress(base64.b64decode(raw)).decode("utf-8", errors="replace")
    except (binascii.Error, zlib.error, ValueError):
        # Older writers stored the text as it was.
        return _text(raw) or ""


def last_error_line(exc_string: str) -> str:
    """Return the last non-empty line of a traceback: the exception type and message."""
    lines = [line for line in exc_string.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
