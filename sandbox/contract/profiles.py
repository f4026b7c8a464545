"""Producer profiles: how each known writer encodes an RQ job hash.

``java`` is the backend's writer today (plain JSON ``data``); ``java-legacy-zlib``
is the historical writer whose zlib-compressed ``data`` broke workers reading
through a ``decode_responses=True`` client; ``rq-native`` is RQ's own
``Queue.enqueue`` with ``JSONSerializer``, as a Python producer writes.
"""

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Mapping

from sandbox.contract.timestamps import PRECISIONS

PROFILES = ("java", "java-legacy-zlib", "rq-native")

#: Field order of the Java writer's HSET (Jackson, snake_case, nulls omitted).
JAVA_FIELDS = (
    "id",
    "created_at",
    "enqueued_at",
    "status",
    "origin",
    "timeout_in_sec",
    "description",
    "data",
)

DEFAULT_TTL_S = 86_400


@dataclass(frozen=True)
class ProfileOptions:
    """Settings that differ between real producers of the same queue."""

    name: str = "java"
    #: Clock resolution of the writer: ``nanos`` (JDK 15+ on Linux), ``micros`` or ``millis``.
    clock_precision: str = "micros"
    #: Job hash time-to-live in seconds (EXPIRE), the writer's per-queue ``jobTTl``.
    ttl_s: int = DEFAULT_TTL_S
    #: Job description; ``None`` means the function name, as the Java writer does.
    description: str | None = None
    #: Fields added to the hash after the writer's own, e.g. to mimic another writer.
    extra_fields: Mapping[str, str] = field(default_factory=dict)
    #: Writer fields left out of the hash, e.g. ``("status",)``.
    omit_fields: tuple[str, ...] = ()

    def __post_init__(self):
        if self.name not in PROFILES:
            raise ValueError(f"unknown producer profile {self.name!r}; allowed: {', '.join(PROFILES)}")
        if self.clock_precision not in PRECISIONS:
            raise ValueError(
                f"unknown clock precision {self.clock_precision!r}; allowed: {', '.join(PRECISIONS)}"
            )
        if self.ttl_s < 1:
            raise ValueError(f"ttl_s must be at least 1 second, got {self.ttl_s}")
        unknown = set(self.omit_fields) - set(JAVA_FIELDS)
        if unknown:
            raise ValueError(f"cannot omit unknown fields {sorted(unknown)}; allowed: {', '.join(JAVA_FIELDS)}")


def job_data(func: str, args: list[Any], kwargs: Mapping[str, Any]) -> bytes:
    """Encode ``[func, null, args, kwargs]`` the way Jackson writes it: compact UTF-8 JSON."""
    return json.dumps([func, None, list(args), dict(kwargs)], separators=(",", ":"), ensure_ascii=False).encode()


def java_job_hash(
    job_id: str,
    queue: str,
    func: str,
    args: list[Any],
    kwargs: Mapping[str, Any],
    created_at: str,
    options: ProfileOptions,
) -> dict[str, bytes]:
    """Build the job hash a Java-style profile writes, fields in the writer's order."""
    data = job_data(func, args, kwargs)
    if options.name == "java-legacy-zlib":
        data = zlib.compress(data)

    description = options.description if options.description else func
    values = {
        "id": job_id,
        "created_at": created_at,
        # The writer takes Instant.now() once per job, so both fields carry one string.
        "enqueued_at": created_at,
        "status": "queued",
        "origin": queue,
        "timeout_in_sec": str(options.ttl_s),
        "description": description,
        "data": data,
    }

    hash_fields = {}
    for name in JAVA_FIELDS:
        if name in options.omit_fields:
            continue
        value = values[name]
        hash_fields[name] = value if isinstance(value, bytes) else value.encode()
    for name, value in options.extra_fields.items():
        hash_fields[name] = value.encode() if isinstance(value, str) else value
    return hash_fields
