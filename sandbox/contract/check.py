"""Lint RQ job hashes in Redis against the installed rq, reading only.

A job is selected by id, by the queue list holding it, or by a SCAN over
``rq:job:*``. Each one is read as raw bytes, located in the queue lists,
intermediate lists and registries, and run through the rules of
`sandbox.contract.rules`. Nothing here writes to Redis: the commands are
TYPE, HGETALL, TTL, LRANGE, LLEN, LPOS, ZSCORE, ZRANGE, SMEMBERS and SCAN, and
rq's `Job.fetch`, which only reads.
"""

from __future__ import annotations

import logging
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import redis

from sandbox.contract import keys
from sandbox.contract.rules import SEVERITIES, Finding, JobContext, run_rules
from sandbox.worker.classes import serializer_by_name

__all__ = ["CheckResult", "Finding", "Locator", "check_job", "check_jobs", "locate"]

logger = logging.getLogger(__name__)

#: Default number of job ids one check reads.
DEFAULT_SCAN_LIMIT = 1000
#: Keys SCAN returns per round trip (a hint to Redis, not a limit).
SCAN_COUNT = 500

_INTERMEDIATE_SUFFIX = re.compile(r":intermediate(:first_seen:.*)?$")


@dataclass
class CheckResult:
    """The findings of one check run and what it looked at."""

    findings: list[Finding]
    jobs_checked: int
    #: Description of the selection, e.g. ``queue opik:optimizer-cloud`` or ``scan rq:job:*``.
    selection: str
    #: True when the selection held more ids than the limit allowed.
    truncated: bool = False
    job_ids: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        return {severity: sum(1 for f in self.findings if f.severity == severity) for severity in SEVERITIES}

    @property
    def has_errors(self) -> bool:
        return any(finding.severity == "error" for finding in self.findings)

    def to_dict(self) -> dict:
        return {
            "selection": self.selection,
            "jobs_checked": self.jobs_checked,
            "truncated": self.truncated,
            "counts": self.counts,
            "findings": [finding.to_dict() for finding in self.findings],
        }


def sort_findings(findings: list[Finding]) -> list[Finding]:
    """Sort by severity (errors first), then job id. Findings of one job keep the rules' order."""
    rank = {severity: index for index, severity in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda finding: (rank[finding.severity], finding.job_id))


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def client_with(connection: redis.Redis, decode_responses: bool) -> redis.Redis:
    """Return a client to the same server whose decode_responses is the one given."""
    pool = connection.connection_pool
    if bool(pool.connection_kwargs.get("decode_responses")) == decode_responses:
        return connection
    kwargs = {**pool.connection_kwargs, "decode_responses": decode_responses}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))


def _close_derived(connection: redis.Redis, *clients: redis.Redis) -> None:
    """Close the clients `client_with` created, never the caller's own."""
    closed: list[redis.Redis] = []
    for client in clients:
        if client is not connection and all(client is not done for done in closed):
            client.close()
            closed.append(client)


@contextmanager
def extended_sys_path(entries: Sequence[str]) -> Iterator[None]:
    """Put `entries` first on sys.path while job functions are imported, then take them off."""
    added = [entry for entry in entries if entry not in sys.path]
    sys.path[:0] = added
    try:
        yield
    finally:
        for entry in added:
            if entry in sys.path:
                sys.path.remove(entry)


def _queue_from_key(key: str) -> str | None:
    if key.startswith(keys.QUEUE_PREFIX):
        # rq 2.x also keeps rq:queue:<q>:intermediate:first_seen:<id> while it cleans up.
        name = _INTERMEDIATE_SUFFIX.sub("", key[len(keys.QUEUE_PREFIX) :])
        return name or None
    for kind in keys.REGISTRY_KINDS:
        prefix = f"rq:{kind}:"
        if key.startswith(prefix):
            return key[len(prefix) :] or None
    return None


def known_queues(connection: redis.Redis) -> set[str]:
    """Return every queue name Redis shows: ``rq:queues`` plus the queue lists and registries SCAN finds.

    The Java writer never adds its queues to ``rq:queues``, so the key names are the
    only trace of them.
    """
    names = set()
    for key in connection.smembers(keys.QUEUES_SET):
        names.add(_queue_from_key(_text(key)) or _text(key))

    # NOTE: one SCAN walks the whole keyspace (MATCH filters after the walk), so this
    # costs one pass over all keys per check, not per job.
    for key in connection.scan_iter(match="rq:*", count=SCAN_COUNT):
        text = _text(key)
        if not text.startswith(keys.JOB_PREFIX):
            name = _queue_from_key(text)
            if name:
                names.add(name)
    return names


class Locator:
    """Find where job ids sit: queue lists, intermediate lists and registries, with positions and scores.

    Started registries are read once per queue and cached, because rq 2.x stores
    their members as ``<job id>:<execution id>``, which ZSCORE cannot look up.
    """

    def __init__(self, connection: redis.Redis, queues: Sequence[str] = ()):
        self.connection = connection
        self.queues = set(queues) | known_queues(connection)
        self._started: dict[str, dict[str, float]] = {}

    def _started_registry(self, queue: str) -> dict[str, float]:
        if queue not in self._started:
            members = self.connection.zrange(keys.registry_key("started", queue), 0, -1, withscores=True)
            self._started[queue] = {keys.started_member_job_id(member): score for member, score in members}
        return self._started[queue]

    def locate(self, job_id: str, origin: str | None = None) -> dict:
        """Return ``{"queues": {q: position}, "intermediate": {q: position}, "registries": {kind: {q: score}}}``."""
        queues = sorted(self.queues | ({origin} if origin else set()))
        other_kinds = [kind for kind in keys.REGISTRY_KINDS if kind != "started"]

        pipe = self.connection.pipeline(transaction=False)
        for queue in queues:
            pipe.lpos(keys.queue_key(queue), job_id)
            pipe.lpos(keys.intermediate_queue_key(queue), job_id)
            for kind in other_kinds:
                pipe.zscore(keys.registry_key(kind, queue), job_id)
        replies = iter(pipe.execute())

        where: dict = {"queues": {}, "intermediate": {}, "registries": {}}
        for queue in queues:
            position, stuck = next(replies), next(replies)
            if position is not None:
                where["queues"][queue] = position
            if stuck is not None:
                where["intermediate"][queue] = stuck
            for kind in other_kinds:
                score = next(replies)
                if score is not None:
                    where["registries"].setdefault(kind, {})[queue] = score
            started = self._started_registry(queue).get(job_id)
            if started is not None:
                where["registries"].setdefault("started", {})[queue] = started
        return where


def locate(connection: redis.Redis, job_id: str, queues: Sequence[str] = ()) -> dict:
    """Return where `job_id` sits among `queues`, the queues in ``rq:queues`` and the job's origin."""
    origin = connection.hget(keys.job_key(job_id), "origin")
    return Locator(connection, queues).locate(job_id, _text(origin) if origin else None)


def _missing_hash(job_id: str, where: dict) -> Finding:
    holding = sorted(set(where.get("queues", {})) | set(where.get("intermediate", {})))
    key = keys.job_key(job_id)
    if holding:
        message = (
            f"job hash {key} is missing (expired or never written) but the id is in queue "
            f"{', '.join(holding)}: the worker's dequeue skips the id silently, so the job never runs"
        )
    elif where.get("registries"):
        message = f"job hash {key} is missing but the id is in registry {', '.join(sorted(where['registries']))}"
    else:
        message = f"job {job_id} not found: no hash {key} and the id is in no queue list or registry"
    return Finding("error", job_id, "hash", "", "hash-missing", message)


def _check_one(
    raw: redis.Redis,
    fetch_connection: redis.Redis,
    locator: Locator,
    job_id: str,
    serializer_name: str,
    serializer,
    decode_responses: bool,
    where: dict | None,
) -> list[Finding]:
    key = keys.job_key(job_id)
    key_type = _text(raw.type(key))
    if key_type == "none":
        return [_missing_hash(job_id, where if where is not None else locator.locate(job_id))]
    if key_type != "hash":
        message = f"{key} is a {key_type}, not a hash: HGETALL in Job.fetch fails with WRONGTYPE"
        return [Finding("error", job_id, "hash", key_type, "key-type", message)]

    fields = {_text(name): value for name, value in raw.hgetall(key).items()}
    ttl = int(raw.ttl(key))
    origin = _text(fields["origin"]) if fields.get("origin") else None
    if where is None:
        where = locator.locate(job_id, origin)

    context = JobContext(
        job_id=job_id,
        fields=fields,
        ttl=ttl,
        where=where,
        serializer_name=serializer_name,
        serializer=serializer,
        decode_responses=decode_responses,
        fetch_connection=fetch_connection,
    )
    return run_rules(context)


def check_job(
    connection: redis.Redis,
    job_id: str,
    serializer: str = "json",
    decode_responses: bool = False,
    where: dict | None = None,
    *,
    pythonpath: Sequence[str] = (),
) -> list[Finding]:
    """Check one job hash. `where` (from `locate`) is looked up when not given."""
    raw = client_with(connection, False)
    fetch_connection = client_with(connection, decode_responses)
    try:
        with extended_sys_path(pythonpath):
            findings = _check_one(
                raw, fetch_connection, Locator(raw), job_id, serializer, serializer_by_name(serializer),
                decode_responses, where,
            )
    finally:
        _close_derived(connection, raw, fetch_connection)
    return sort_findings(findings)


def _queue_ids(connection: redis.Redis, queue: str, limit: int) -> tuple[list[str], bool]:
    ids: dict[str, None] = {}
    truncated = False
    for key in (keys.queue_key(queue), keys.intermediate_queue_key(queue)):
        for value in connection.lrange(key, 0, limit - 1):
            ids.setdefault(_text(value))
        truncated = truncated or connection.llen(key) > limit
    selected = list(ids)
    if len(selected) > limit:
        selected, truncated = selected[:limit], True
    return selected, truncated


def _scanned_ids(connection: redis.Redis, limit: int) -> tuple[list[str], bool]:
    ids: dict[str, None] = {}
    for key in connection.scan_iter(match=f"{keys.JOB_PREFIX}*", count=SCAN_COUNT):
        job_id = _text(key)[len(keys.JOB_PREFIX) :]
        # rq's own side keys such as rq:job:<id>:dependents share the prefix, but job ids have no colon.
        if ":" in job_id or job_id in ids:
            continue
        if len(ids) == limit:
            return list(ids), True
        ids[job_id] = None
    return list(ids), False


def check_jobs(
    connection: redis.Redis,
    *,
    queue: str | None = None,
    job_id: str | None = None,
    scan_limit: int = DEFAULT_SCAN_LIMIT,
    serializer: str = "json",
    decode_responses: bool = False,
    pythonpath: Sequence[str] = (),
) -> CheckResult:
    """Check one job, the ids of a queue (and its intermediate list), or every ``rq:job:*`` hash up to the limit."""
    if queue and job_id:
        raise ValueError("pass a queue or a job id, not both")
    if scan_limit < 1:
        raise ValueError(f"scan_limit must be at least 1, got {scan_limit}")

    raw = client_with(connection, False)
    if job_id:
        ids, truncated, selection = [job_id], False, f"job {job_id}"
    elif queue:
        ids, truncated = _queue_ids(raw, queue, scan_limit)
        selection = f"queue {queue}"
    else:
        ids, truncated = _scanned_ids(raw, scan_limit)
        selection = f"scan {keys.JOB_PREFIX}*"
    if truncated:
        logger.warning("Check of %s stopped at the limit of %s job ids", selection, scan_limit)

    resolved = serializer_by_name(serializer)
    fetch_connection = client_with(connection, decode_responses)
    locator = Locator(raw, [queue] if queue else [])
    findings: list[Finding] = []
    try:
        with extended_sys_path(pythonpath):
            for one_id in ids:
                findings.extend(
                    _check_one(raw, fetch_connection, locator, one_id, serializer, resolved, decode_responses, None)
                )
    finally:
        _close_derived(connection, raw, fetch_connection)

    return CheckResult(sort_findings(findings), len(ids), selection, truncated, ids)
