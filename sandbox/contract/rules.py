"""The contract rules: what the installed rq does with one job hash, as findings.

Each rule reads a `JobContext` (the raw hash, its TTL and where the id sits) and
returns `Finding`s. Only `rule_fetch` touches Redis, through `Job.fetch`, which
reads and never writes. The facts about rq quoted in messages come from rq 2.6's
`Job.restore`, `utils.utcparse`, `Queue.dequeue_any` and `Worker.perform_job`.
"""

from __future__ import annotations

import builtins
import importlib
import json
import re
import zlib
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import redis
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.utils import utcparse

from sandbox.secrets import mask_text

SEVERITIES = ("error", "warning", "info")

#: Characters of a value shown in a finding.
VALUE_LIMIT = 80

TIMESTAMP_FIELDS = ("created_at", "enqueued_at", "started_at", "ended_at", "last_heartbeat")

STATUSES = tuple(status.value for status in JobStatus)

#: Registry an id should sit in for each status (rq 2.x moves stopped jobs to the failed registry).
STATUS_REGISTRY = {
    "started": "started",
    "finished": "finished",
    "failed": "failed",
    "stopped": "failed",
    "deferred": "deferred",
    "scheduled": "scheduled",
    "canceled": "canceled",
}

#: Hash fields rq 2.6 reads in `Job.restore` (or writes in `Job.to_dict`).
RQ_FIELDS = frozenset(
    """allow_dependency_failures created_at data dependency_id dependency_ids description ended_at
    enqueue_at_front enqueued_at exc_info failure_callback_name failure_callback_timeout failure_ttl
    group_id last_heartbeat meta number_of_retries origin repeat_intervals repeats_left result
    result_ttl retries_left retry_intervals started_at status stopped_callback_name
    stopped_callback_timeout success_callback_name success_callback_timeout timeout ttl worker_name""".split()
)

#: Defaults rq 2.6 falls back to when a field is missing, in seconds.
RQ_DEFAULTS = {
    "timeout": (Queue.DEFAULT_TIMEOUT, "the job runs with the queue's default timeout of {} s"),
    "result_ttl": (500, "a worker keeps the result {} s (its default_result_ttl)"),
    "failure_ttl": (31_536_000, "a failed job is kept {} s (one year, rq's DEFAULT_FAILURE_TTL)"),
}

#: A job hash TTL above this many seconds (one year) is reported as absurd.
MAX_SANE_TTL_S = 365 * 86_400
#: A queued job whose hash expires within this many seconds may vanish before a worker dequeues it.
MIN_QUEUED_TTL_S = 60

_FRACTION = re.compile(r"\.(\d+)Z$")


@dataclass(frozen=True)
class Finding:
    """One problem (or fact worth knowing) about one job hash."""

    severity: str
    job_id: str
    field: str
    #: The stored value, shortened to about 80 characters, with binary shown as hex.
    value: str
    #: A short stable id of the rule, e.g. ``timestamp-format``.
    rule: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class JobContext:
    """Inputs of the rules for one job id."""

    job_id: str
    #: The hash as stored, read through a client with decode_responses=False.
    fields: dict[str, bytes]
    #: TTL of the hash in seconds: -1 without expiry, -2 when the key is gone.
    ttl: int
    #: Location of the id in queue lists and registries, as `check.locate` returns it.
    where: dict
    serializer_name: str
    serializer: Any
    decode_responses: bool
    #: Client with the decode_responses under test, used for `Job.fetch`.
    fetch_connection: redis.Redis
    findings: list[Finding] = field(default_factory=list)

    def add(self, severity: str, name: str, rule: str, message: str, value: Any = None) -> None:
        display = show_value(self.fields.get(name) if value is None else value)
        self.findings.append(Finding(severity, self.job_id, name, display, rule, message))

    def text(self, name: str) -> str | None:
        """Return a field as text, or None when it is missing or empty (rq treats both alike)."""
        raw = self.fields.get(name)
        if not raw:
            return None
        return raw.decode("utf-8", errors="replace")

    def holding_queues(self) -> set[str]:
        return set(self.where.get("queues", {})) | set(self.where.get("intermediate", {}))


def escape_control(text: str) -> str:
    """Escape control and other non-printable characters so a terminal shows them as text."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def is_printable_text(raw: bytes) -> bool:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(char.isprintable() or char in "\t\n\r" for char in text)


def show_value(raw: Any, limit: int = VALUE_LIMIT) -> str:
    """Render a stored value in one line: printable text, else hex with its size."""
    if raw is None:
        return ""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", errors="surrogateescape")
    if not isinstance(raw, bytes):
        raw = str(raw).encode()

    if not is_printable_text(raw):
        head = raw[: limit // 3].hex(" ")
        more = "..." if len(raw) > limit // 3 else ""
        return f"hex {head}{more} ({len(raw)} bytes)"

    # Job arguments may carry a URL with a password, and the masked form is enough to diagnose.
    text = escape_control(mask_text(raw.decode("utf-8"), []))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_zlib(raw: bytes) -> bool:
    """Return True when `raw` starts with a zlib header (0x78 0x9c and the other levels)."""
    return len(raw) >= 2 and raw[0] == 0x78 and (raw[0] * 256 + raw[1]) % 31 == 0


def rule_fetch(ctx: JobContext) -> None:
    """Run the installed rq's `Job.fetch`, as a worker's dequeue does, and quote its exception."""
    try:
        Job.fetch(ctx.job_id, connection=ctx.fetch_connection, serializer=ctx.serializer)
    except Exception as exc:  # noqa: BLE001 - every exception here is a finding
        text = f"{type(exc).__name__}: {exc}"
        if type(exc).__name__ == "NoSuchJobError":
            effect = "the worker's dequeue skips the id silently, so the job never runs"
        else:
            effect = (
                f"a worker that dequeues the id exits, and a one-queue worker leaves it in "
                f"rq:queue:{_origin(ctx)}:intermediate"
            )
        if ctx.decode_responses and isinstance(exc, TypeError):
            effect += "; rq 2.x needs a client with decode_responses=False"
        ctx.add("error", "hash", "rq-fetch", f"Job.fetch raises {text}: {effect}")


def rule_data(ctx: JobContext) -> None:
    """Check `data` the way rq decodes it: zlib if it inflates, then the serializer's loads."""
    raw = ctx.fields.get("data")
    if raw is None:
        ctx.add("error", "data", "data-missing", "data is missing: rq raises NoSuchJobError('Unexpected job format')")
        return

    compressed = is_zlib(raw)
    if ctx.decode_responses:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            kind = "zlib-compressed data" if compressed else "data"
            ctx.add("error", "data", "data-not-utf8", f"{kind} read with decode_responses=True fails: {exc}")
            return

    try:
        payload = zlib.decompress(raw)
    except zlib.error:
        payload = raw
    else:
        ctx.add("info", "data", "data-zlib", "data is zlib-compressed, which rq inflates when it reads bytes")

    decoded = _load_data(ctx, payload)
    if decoded is not None:
        _check_shape(ctx, decoded)


def _load_data(ctx: JobContext, payload: bytes) -> Any:
    if ctx.serializer_name == "pickle":
        # NOTE: pickled data is not loaded: unpickling runs code, so only the protocol marker is checked.
        if payload[:1] != b"\x80":
            ctx.add("error", "data", "data-not-pickle", "data does not start with a pickle protocol marker (0x80)")
        return None

    try:
        if ctx.serializer_name == "json":
            return json.loads(payload.decode("utf-8"))
        return ctx.serializer.loads(payload)
    except Exception as exc:  # noqa: BLE001 - any loads failure is what the worker meets
        rule = "data-not-json" if ctx.serializer_name == "json" else "data-not-loadable"
        ctx.add(
            "error",
            "data",
            rule,
            f"{ctx.serializer_name} serializer cannot load data ({type(exc).__name__}: {exc}); "
            "the worker fails the job with DeserializationError",
        )
        return None


def _check_shape(ctx: JobContext, decoded: Any) -> None:
    expected = "[func, null, args, kwargs]"
    if not isinstance(decoded, (list, tuple)) or len(decoded) != 4:
        found = type(decoded).__name__ if not isinstance(decoded, (list, tuple)) else f"{len(decoded)} items"
        ctx.add("error", "data", "data-shape", f"data must be {expected}, found {found}; rq cannot unpack it")
        return

    func, instance, args, kwargs = decoded
    problems = []
    if not isinstance(func, str) or not func:
        problems.append(f"func must be a dotted name, found {type(func).__name__}")
    if instance is not None and ctx.serializer_name == "json":
        problems.append("instance must be null with the json serializer")
    if not isinstance(args, list) and not (ctx.serializer_name != "json" and isinstance(args, tuple)):
        problems.append(f"args must be a list, found {type(args).__name__}")
    if not isinstance(kwargs, dict):
        problems.append(f"kwargs must be an object, found {type(kwargs).__name__}")
    if problems:
        ctx.add("error", "data", "data-shape", f"data must be {expected}: " + ", ".join(problems))
        return

    _check_func(ctx, func)


def _check_func(ctx: JobContext, func: str) -> None:
    """Resolve `func` like rq's `import_attribute`: the longest importable module, then attributes.

    Both outcomes are errors: rq fails the job with ValueError('Invalid attribute name')
    whether the module or only the attribute is missing. A missing module may only
    mean this environment lacks the worker's code, which `pythonpath` can add.
    """
    parts = func.split(".")
    module = None
    failure = None
    for cut in range(len(parts) - 1, 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            module = importlib.import_module(module_name)
            break
        except ImportError as exc:
            failure = failure or exc
        except Exception as exc:  # noqa: BLE001 - a module that fails while importing
            ctx.add("error", "data", "func-import", f"importing {module_name} raises {type(exc).__name__}: {exc}", func)
            return

    if module is None:
        if len(parts) == 1 and hasattr(builtins, func):
            return
        reason = f"{type(failure).__name__}: {failure}" if failure else "no module part"
        message = f"function {func} cannot be imported here ({reason}); pass --pythonpath with the worker's code"
        ctx.add("error", "data", "func-import", message, func)
        return

    target: Any = module
    for name in parts[cut:]:
        if not hasattr(target, name):
            ctx.add(
                "error", "data", "func-attribute", f"module {module.__name__} has no attribute {name!r}", func
            )
            return
        target = getattr(target, name)
    if not callable(target):
        ctx.add("error", "data", "func-not-callable", f"{func} is a {type(target).__name__}, not callable", func)


def rule_timestamps(ctx: JobContext) -> None:
    """Parse each timestamp with rq's own `utcparse`, which takes at most 6 fraction digits."""
    if not ctx.fields.get("created_at"):
        ctx.add("info", "created_at", "created_at-missing", "created_at is missing: rq uses the time of each fetch")

    for name in TIMESTAMP_FIELDS:
        raw = ctx.fields.get(name)
        if not raw:
            continue
        try:
            utcparse(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as exc:
            digits = _FRACTION.search(raw.decode("utf-8", errors="replace"))
            if digits and len(digits.group(1)) > 6:
                message = (
                    f"{name} has {len(digits.group(1))} fraction digits but rq 2.x parses at most 6 fraction "
                    f"digits (%f), so Job.fetch raises ValueError and a worker that dequeues the id exits "
                    f"(a one-queue worker leaves it in rq:queue:{_origin(ctx)}:intermediate)"
                )
            else:
                message = f"{name} is not in rq's format YYYY-MM-DDTHH:MM:SS[.ffffff]Z: {exc}"
            ctx.add("error", name, "timestamp-format", message)


def rule_status(ctx: JobContext) -> None:
    status = ctx.text("status")
    if status is None:
        ctx.add(
            "warning",
            "status",
            "status-missing",
            "status is missing: rq assumes 'created', so is_queued is False and "
            "job.get_status() raises InvalidJobOperation until a worker sets a status",
        )
    elif status not in STATUSES:
        ctx.add(
            "error",
            "status",
            "status-invalid",
            f"status {status!r} is not an rq status ({', '.join(STATUSES)}): Job.fetch raises ValueError",
        )


def rule_location(ctx: JobContext) -> None:
    """Compare the status with the queue lists and registries that hold the id."""
    status = ctx.text("status") or "created"
    if status not in STATUSES:
        return
    in_lists = ctx.where.get("queues", {})
    registries = ctx.where.get("registries", {})

    if status == "queued" and not ctx.holding_queues():
        ctx.add("warning", "status", "status-location", "status is queued but the id is in no queue list: "
                "no worker will dequeue it")
    if in_lists and status not in ("queued", "created"):
        ctx.add("warning", "status", "status-location", f"status is {status} but the id is in queue list "
                f"{', '.join(sorted(in_lists))}: a worker will run it again")

    expected = STATUS_REGISTRY.get(status)
    if expected and expected not in registries:
        ctx.add("warning", "status", "status-location", f"status is {status} but the id is in no {expected} registry")
    if "started" in registries and status not in ("started", "queued"):
        ctx.add("warning", "status", "status-location", f"status is {status} but the id is still in the started "
                "registry")

    stuck = set(ctx.where.get("intermediate", {}))
    if stuck and "started" not in registries:
        names = ", ".join(f"rq:queue:{queue}:intermediate" for queue in sorted(stuck))
        ctx.add("warning", "status", "intermediate", f"the id sits in {names}: a worker dequeued it but never "
                "started it (a Job.fetch failure leaves it so); rq's cleanup fails it after about 1 minute")


def rule_origin(ctx: JobContext) -> None:
    origin = ctx.text("origin")
    holding = ctx.holding_queues()
    if origin is None:
        ctx.add("warning", "origin", "origin-missing", "origin is missing: rq restores '' so the worker "
                "registers the job under queue '' and leaves the id in the intermediate list")
    elif holding and origin not in holding:
        ctx.add("warning", "origin", "origin-mismatch", f"origin {origin!r} differs from the queue holding the id "
                f"({', '.join(sorted(holding))}): the worker uses origin's registries and intermediate list")


def rule_fields(ctx: JobContext) -> None:
    """Report fields rq ignores and fields rq reads that are missing, with what rq does instead."""
    stored_id = ctx.text("id")
    if stored_id is not None and stored_id != ctx.job_id:
        ctx.add("warning", "id", "id-mismatch", f"id differs from the key's id {ctx.job_id}: rq uses the key")

    for name in sorted(set(ctx.fields) - RQ_FIELDS - {"id", "timeout_in_sec"}):
        ctx.add("info", name, "field-ignored", f"rq ignores the field {name}")

    timeout_default, timeout_effect = RQ_DEFAULTS["timeout"]
    if ctx.fields.get("timeout_in_sec") is not None:
        severity = "info" if ctx.fields.get("timeout") else "warning"
        effect = "it reads timeout" if ctx.fields.get("timeout") else timeout_effect.format(timeout_default)
        ctx.add(severity, "timeout_in_sec", "field-ignored", f"rq ignores timeout_in_sec: {effect}")

    for name, (default, effect) in RQ_DEFAULTS.items():
        if ctx.fields.get(name):
            continue
        if name == "timeout" and ctx.fields.get("timeout_in_sec") is not None:
            continue
        ctx.add("info", name, "field-default", f"{name} is missing: {effect.format(default)}")

    if not ctx.fields.get("description"):
        ctx.add("info", "description", "description-missing", "description is missing: rq shows none "
                "(rq's own enqueue writes the call, e.g. func(args))")


def rule_ttl(ctx: JobContext) -> None:
    ttl = ctx.ttl
    status = ctx.text("status") or "created"
    if ttl == -1:
        ctx.add("warning", "ttl", "ttl-none", "the job hash has no TTL: it never expires", value="-1")
    elif ttl > MAX_SANE_TTL_S:
        ctx.add("warning", "ttl", "ttl-absurd", f"TTL {ttl} s is more than a year", value=str(ttl))
    elif 0 <= ttl < MIN_QUEUED_TTL_S and status == "queued":
        ctx.add("warning", "ttl", "ttl-short", f"the hash expires in {ttl} s: if no worker dequeues it first, "
                "the dequeue skips the id silently", value=str(ttl))


RULES = (rule_fetch, rule_data, rule_timestamps, rule_status, rule_location, rule_origin, rule_fields, rule_ttl)


def run_rules(ctx: JobContext, rules: Iterable = RULES) -> list[Finding]:
    for rule in rules:
        rule(ctx)
    return ctx.findings


def _origin(ctx: JobContext) -> str:
    holding = sorted(ctx.holding_queues())
    return holding[0] if holding else ctx.text("origin") or "<queue>"
