"""Show one job as Redis stores it: the hash field by field, where the id sits, its result and its findings.

Reads only, like `sandbox.contract.check`. Binary values are shown as hex and
every control character is escaped, so a job's bytes never reach a terminal raw.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import zlib
from typing import Any, Sequence

import redis

from sandbox.contract import keys
from sandbox.contract.check import Locator, check_job, client_with
from sandbox.contract.rules import escape_control, is_printable_text, is_zlib, show_value
from sandbox.monitor.harvest import decode_exc_string

#: Bytes of a binary value shown as hex. The note gives the full size.
HEX_LIMIT = 256
#: Characters of a text value shown before it is cut.
TEXT_LIMIT = 2000

_RESULT_TYPES = {1: "successful", 2: "failed", 3: "stopped", 4: "retried"}


def _text(value: Any) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _cut(text: str, limit: int = TEXT_LIMIT) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"


def _binary_note(raw: bytes) -> str:
    if is_zlib(raw):
        kind = "zlib stream"
    elif raw[:1] == b"\x80":
        kind = "pickle"
    else:
        try:
            raw.decode("utf-8")
            kind = "UTF-8 text with control characters"
        except UnicodeDecodeError:
            kind = "not UTF-8 text"
    return f"binary, {len(raw)} bytes, {kind}"


def _decoded_data(raw: bytes, serializer: str) -> str | None:
    """Return the job's ``[func, instance, args, kwargs]`` as compact JSON text, or None."""
    try:
        payload = zlib.decompress(raw)
    except zlib.error:
        payload = raw
    if serializer != "json":
        return None
    try:
        value = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return json.dumps(value, ensure_ascii=False)


def describe_field(name: str, raw: bytes, serializer: str = "json") -> dict:
    """Describe one hash field: text when printable UTF-8, else hex with a note."""
    described: dict[str, Any] = {"name": name, "size": len(raw)}
    if is_printable_text(raw):
        described["text"] = _cut(raw.decode("utf-8"))
    else:
        described["hex"] = raw[:HEX_LIMIT].hex(" ") + ("..." if len(raw) > HEX_LIMIT else "")
        described["note"] = _binary_note(raw)

    if name == "data":
        decoded = _decoded_data(raw, serializer)
        if decoded is not None:
            described["decoded"] = _cut(decoded)
    return described


def _score_time(score: float) -> str | None:
    if score < 0 or score == float("inf"):
        return None
    moment = datetime.datetime.fromtimestamp(score, tz=datetime.timezone.utc)
    return moment.isoformat().replace("+00:00", "Z")


def _where_view(where: dict) -> dict:
    view: dict[str, list] = {"queues": [], "intermediate": [], "registries": []}
    for queue, position in sorted(where.get("queues", {}).items()):
        view["queues"].append({"queue": queue, "key": keys.queue_key(queue), "position": position})
    for queue, position in sorted(where.get("intermediate", {}).items()):
        view["intermediate"].append({"queue": queue, "key": keys.intermediate_queue_key(queue), "position": position})
    for kind, by_queue in sorted(where.get("registries", {}).items()):
        for queue, score in sorted(by_queue.items()):
            view["registries"].append(
                {"kind": kind, "queue": queue, "key": keys.registry_key(kind, queue), "score": score,
                 "time": _score_time(score)}
            )
    return view


def _return_value(raw: bytes, serializer: str) -> str:
    try:
        payload = base64.b64decode(raw)
    except (binascii.Error, ValueError):
        return show_value(raw)
    if serializer != "json":
        # Unpickling runs code, so a pickled return value is only measured.
        return f"serialized, {len(payload)} bytes (not loaded)"
    return _cut(payload.decode("utf-8", errors="replace"))


def read_results(connection: redis.Redis, job_id: str, serializer: str = "json") -> dict | None:
    """Return the count of RQ's results for the job and its latest one, or None without results."""
    key = keys.result_key(job_id)
    entries = connection.xrevrange(key, count=1)
    if not entries:
        return None

    entry_id, fields = entries[0]
    fields = {_text(name): value for name, value in fields.items()}
    entry_text = _text(entry_id)
    created = datetime.datetime.fromtimestamp(int(entry_text.split("-")[0]) / 1000, tz=datetime.timezone.utc)
    result_type = int(fields["type"]) if fields.get("type", b"").isdigit() else None

    latest: dict[str, Any] = {
        "id": entry_text,
        "type": _RESULT_TYPES.get(result_type, _text(fields.get("type", b""))),
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "worker_name": _text(fields.get("worker_name", b"")),
    }
    if fields.get("return_value"):
        latest["return_value"] = _return_value(fields["return_value"], serializer)
    if fields.get("exc_string"):
        latest["exc_string"] = _cut(decode_exc_string(fields["exc_string"]), 4 * TEXT_LIMIT)
    return {"key": key, "count": int(connection.xlen(key)), "latest": latest}


def inspect_job(
    connection: redis.Redis, job_id: str, serializer: str = "json", *, pythonpath: Sequence[str] = ()
) -> dict:
    """Collect everything Redis stores about one job. ``found`` is False when there is no hash."""
    raw = client_with(connection, False)
    try:
        key = keys.job_key(job_id)
        key_type = _text(raw.type(key))
        fields = raw.hgetall(key) if key_type == "hash" else {}
        origin = _text(fields[b"origin"]) if fields.get(b"origin") else None
        where = Locator(raw).locate(job_id, origin)

        return {
            "job_id": job_id,
            "key": key,
            "found": key_type != "none",
            "key_type": key_type,
            "ttl": int(raw.ttl(key)),
            "fields": [describe_field(_text(name), value, serializer) for name, value in sorted(fields.items())],
            "where": _where_view(where),
            "results": read_results(raw, job_id, serializer),
            "findings": [
                finding.to_dict()
                for finding in check_job(raw, job_id, serializer=serializer, where=where, pythonpath=pythonpath)
            ],
        }
    finally:
        if raw is not connection:
            raw.close()


def _ttl_text(ttl: int) -> str:
    if ttl == -1:
        return "no TTL (never expires)"
    if ttl == -2:
        return "no key"
    return f"TTL {ttl} s"


def _render_fields(data: dict) -> list[str]:
    lines = ["Fields:"]
    width = max((len(item["name"]) for item in data["fields"]), default=0)
    for item in data["fields"]:
        if "text" in item:
            lines.append(f"  {item['name']:<{width}}  {item['text']}")
        else:
            lines.append(f"  {item['name']:<{width}}  hex {item['hex']}")
            lines.append(f"  {'':<{width}}  ({item['note']})")
        if "decoded" in item:
            lines.append(f"  {'':<{width}}  decoded: {item['decoded']}")
    return lines


def _render_where(where: dict) -> list[str]:
    lines = ["Where:"]
    for item in where["queues"]:
        lines.append(f"  queue list {item['key']} at position {item['position']}")
    for item in where["intermediate"]:
        lines.append(f"  intermediate list {item['key']} at position {item['position']}")
    for item in where["registries"]:
        label = "runs at" if item["kind"] == "scheduled" else "expires at"
        when = f"{label} {item['time']}" if item["time"] else "never expires"
        lines.append(f"  {item['kind']} registry {item['key']}, score {item['score']:g} ({when})")
    if len(lines) == 1:
        lines.append("  in no queue list and no registry")
    return lines


def _render_results(results: dict | None) -> list[str]:
    if results is None:
        return ["Result: none"]
    latest = results["latest"]
    lines = [f"Result (latest of {results['count']} in {results['key']}):"]
    lines.append(f"  {latest['type']} at {latest['created_at']} by worker {latest['worker_name'] or '(unknown)'}")
    if "return_value" in latest:
        lines.append(f"  return value: {latest['return_value']}")
    if "exc_string" in latest:
        lines.append("  exception:")
        lines.extend(f"    {line}" for line in latest["exc_string"].rstrip().splitlines())
    return lines


def render_inspect(data: dict) -> str:
    """Render `inspect_job` output for a terminal, with every control character escaped."""
    if not data["found"]:
        header = f"Job {data['job_id']}: not found (no hash {data['key']})"
    else:
        header = f"Job {data['job_id']} ({data['key']}, {data['key_type']}, {_ttl_text(data['ttl'])})"

    lines = [header]
    if data["found"]:
        lines.extend(_render_fields(data))
    lines.extend(_render_where(data["where"]))
    lines.extend(_render_results(data["results"]))
    lines.append(f"Findings: {len(data['findings'])}")
    for finding in data["findings"]:
        value = f" (value: {finding['value']})" if finding["value"] else ""
        lines.append(f"  {finding['severity']:<7} {finding['field']}: {finding['message']}{value}")
    return "\n".join(escape_control(line) for line in lines)
