"""Compare the job hash the Java writer stores with the one RQ's own enqueue stores.

One job goes in through the ``java`` profile and the same call through
``rq-native``. Both hashes are read raw and compared field by field, then both
jobs are restored with ``Job.fetch`` to compare what a worker would see. The
two jobs are deleted afterwards; nothing else is touched.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
import zlib
from dataclasses import asdict, dataclass
from typing import Any

import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from sandbox.contract import keys
from sandbox.contract.profiles import JAVA_FIELDS, ProfileOptions
from sandbox.producer.publisher import Publisher

logger = logging.getLogger(__name__)

SAME = "same"
FORMAT = "different format"
VALUE = "different value"
ONLY_JAVA = "only java"
ONLY_RQ = "only rq-native"

#: Fields whose values differ between any two jobs, from any writer.
NATURAL = {
    "id": "each job has its own id",
    "created_at": "each job has its own time",
    "enqueued_at": "each job has its own time",
}

#: Field notes that explain what a difference means to a worker.
NOTES = {
    "timeout_in_sec": "rq never reads it; rq reads 'timeout'",
    "timeout": "rq's job timeout; without it the worker's queue default applies",
    "ttl": "rq keeps the job TTL here too; the Java writer relies on EXPIRE alone",
    "description": "rq describes the call; the Java writer stores the function name",
}

#: Attributes of the restored ``Job`` that a worker acts on.
RESTORED = ("func_name", "args", "kwargs", "status", "origin", "timeout", "description")

_INSTANT = re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.(\d+))?Z")
_UUID = re.compile(rb"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
#: Characters of a value shown in a table cell; rows keep the whole value.
SHOWN_CHARS = 44


@dataclass(frozen=True)
class DiffRow:
    """One compared field: where it comes from, the verdict and both sides as text."""

    #: ``hash`` (raw HGETALL), ``key`` (the key itself, e.g. its TTL) or ``Job.fetch``.
    source: str
    field: str
    verdict: str
    java: str | None
    rq_native: str | None
    note: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def contract_diff(
    connection: redis.Redis,
    queue: str,
    func: str,
    args: list[Any],
    *,
    java_options: ProfileOptions | None = None,
) -> list[DiffRow]:
    """Enqueue ``func(*args)`` once per writer on ``queue``, compare the two jobs, then delete them.

    ``connection`` must return bytes (``decode_responses=False``): the hashes are compared raw.
    ``java_options`` sets the Java writer's clock precision and TTL; the rq-native job gets the same TTL.
    """
    java_options = java_options or ProfileOptions(name="java")
    if java_options.name != "java":
        raise ValueError(f"java_options must use the java profile, got {java_options.name!r}")
    queues_member = bool(connection.sismember(keys.QUEUES_SET, keys.queue_key(queue)))
    java_id = rq_id = None
    try:
        java_id = Publisher(connection, java_options).enqueue(queue, func, list(args))
        rq_options = ProfileOptions(name="rq-native", ttl_s=java_options.ttl_s, description=java_options.description)
        rq_id = Publisher(connection, rq_options).enqueue(queue, func, list(args))
        logger.info("Contract diff: enqueued java job %s and rq-native job %s on %s", java_id, rq_id, queue)

        java_hash = connection.hgetall(keys.job_key(java_id))
        rq_hash = connection.hgetall(keys.job_key(rq_id))
        rows = compare_hashes(java_hash, rq_hash)
        rows.append(_ttl_row(connection.ttl(keys.job_key(java_id)), connection.ttl(keys.job_key(rq_id))))
        rows += compare_restored(_restore(connection, java_id), _restore(connection, rq_id))
        return rows
    finally:
        _remove_jobs(connection, queue, [job_id for job_id in (java_id, rq_id) if job_id], queues_member)


def compare_hashes(java: dict[bytes, bytes], rq_native: dict[bytes, bytes]) -> list[DiffRow]:
    """Compare two raw job hashes field by field, the Java writer's fields first."""
    java = {_name(k): v for k, v in java.items()}
    rq_native = {_name(k): v for k, v in rq_native.items()}
    order = [f for f in JAVA_FIELDS if f in java] + sorted(set(java) - set(JAVA_FIELDS))
    order += sorted(set(rq_native) - set(order))

    rows = []
    for name in order:
        left, right = java.get(name), rq_native.get(name)
        note = NOTES.get(name, "")
        if right is None:
            rows.append(DiffRow("hash", name, ONLY_JAVA, show(left), None, note))
        elif left is None:
            rows.append(DiffRow("hash", name, ONLY_RQ, None, show(right), note))
        else:
            rows.append(_compare_values(name, left, right))
    return rows


def _compare_values(name: str, left: bytes, right: bytes) -> DiffRow:
    left_shape, right_shape = shape(left), shape(right)
    if left == right:
        return DiffRow("hash", name, SAME, show(left), show(right), NOTES.get(name, ""))

    if left_shape != right_shape:
        note = f"{left_shape} vs {right_shape}"
        if name == "data" and _json_content(left) is not None and _json_content(left) == _json_content(right):
            note += "; the same JSON once decompressed"
        if name in NATURAL:
            note += f"; the values differ anyway: {NATURAL[name]}"
        return DiffRow("hash", name, FORMAT, show(left), show(right), note)

    note = NATURAL.get(name) or NOTES.get(name, "")
    return DiffRow("hash", name, VALUE, show(left), show(right), note)


def compare_restored(java: dict[str, Any], rq_native: dict[str, Any]) -> list[DiffRow]:
    """Compare what ``Job.fetch`` restored from each hash."""
    rows = []
    for name in RESTORED:
        left, right = java.get(name), rq_native.get(name)
        verdict = SAME if left == right else VALUE
        note = ""
        if name == "timeout" and left is None:
            note = "no 'timeout' field: the worker applies its queue's default timeout"
        elif name == "description" and verdict == VALUE:
            note = NOTES["description"]
        rows.append(DiffRow("Job.fetch", name, verdict, _restored_text(left), _restored_text(right), note))
    return rows


def shape(value: bytes) -> str:
    """Name the format of a stored value, e.g. ``ISO-8601 UTC, 6 fraction digits`` or ``zlib-compressed``."""
    if value == b"":
        return "empty"
    instant = _INSTANT.fullmatch(value)
    if instant:
        digits = len(instant.group(1) or b"")
        return f"ISO-8601 UTC, {digits} fraction digits"
    if _UUID.fullmatch(value):
        return "UUID"
    if value.isdigit():
        return "integer text"
    if _is_zlib(value):
        return "zlib-compressed"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return "binary"
    try:
        decoded = json.loads(text)
    except ValueError:
        return "text"
    return "JSON text" if isinstance(decoded, (list, dict)) else "text"


def show(value: bytes | None) -> str | None:
    """Render a stored value as text; bytes that are not UTF-8 as their length and first bytes."""
    if value is None:
        return None
    if value == b"":
        return '""'
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        # Show the leading bytes as hex: the zlib header 78 9c is what broke the old workers.
        head = " ".join(f"{byte:02x}" for byte in value[:4])
        return f"<{len(value)} bytes: {head} ...>"
    return text


def render_table(rows: list[DiffRow]) -> str:
    """Render rows as a plain-text table, one block per source."""
    headers = ("field", "verdict", "java", "rq-native", "note")
    lines = []
    for source in ("hash", "key", "Job.fetch"):
        block = [r for r in rows if r.source == source]
        if not block:
            continue
        cells = [(r.field, r.verdict, _clip(r.java or "-"), _clip(r.rq_native or "-"), r.note) for r in block]
        widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
        lines.append(f"{source}:")
        lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip())
        lines.append("  " + "  ".join("-" * w for w in widths))
        for row in cells:
            lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _clip(text: str) -> str:
    return text if len(text) <= SHOWN_CHARS else text[: SHOWN_CHARS - 3] + "..."


def default_queue() -> str:
    """Return a fresh queue name no worker listens on, so no worker takes a job before it is read."""
    return f"rq-sandbox:contract-diff:{uuid.uuid4().hex}"


def _ttl_row(java_ttl: int, rq_ttl: int) -> DiffRow:
    verdict = SAME if java_ttl == rq_ttl else VALUE
    # Both keys were written a moment apart, so a second of difference is rounding.
    if abs(java_ttl - rq_ttl) <= 1 and verdict == VALUE:
        verdict = SAME
    return DiffRow("key", "EXPIRE (s)", verdict, str(java_ttl), str(rq_ttl), "TTL of the job hash key")


def _restore(connection: redis.Redis, job_id: str) -> dict[str, Any]:
    try:
        job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
        return {name: _attribute(job, name) for name in RESTORED}
    except Exception as error:  # noqa: BLE001 - a job rq cannot restore is itself a finding
        logger.info("Contract diff: Job.fetch(%s) failed: %s", job_id, error)
        return {name: f"<{type(error).__name__}: {error}>" for name in RESTORED}


def _attribute(job: Job, name: str) -> Any:
    if name == "status":
        return job.get_status(refresh=False)
    value = getattr(job, name)
    return list(value) if name == "args" else value


def _restored_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, default=str)


def _remove_jobs(connection: redis.Redis, queue: str, job_ids: list[str], queues_member: bool) -> None:
    """Delete the jobs this diff wrote, their ids in the queue, and the queue's entry if the diff added it."""
    if not job_ids:
        return
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.delete(keys.job_key(job_id))
        pipe.lrem(keys.queue_key(queue), 0, job_id)
    if not queues_member:
        # RQ's enqueue adds the queue to rq:queues; leave it there only if it was there before.
        pipe.srem(keys.QUEUES_SET, keys.queue_key(queue))
    pipe.execute()
    logger.info("Contract diff: removed jobs %s from %s", ", ".join(job_ids), queue)


def _is_zlib(value: bytes) -> bool:
    try:
        zlib.decompress(value)
    except zlib.error:
        return False
    return True


def _json_content(value: bytes) -> Any:
    """Parse a ``data`` value as JSON, decompressing it first when it is zlib; None when it is not JSON."""
    raw = zlib.decompress(value) if _is_zlib(value) else value
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _name(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key
