"""Redis key names RQ 2.x reads and writes, in one place."""

JOB_PREFIX = "rq:job:"
QUEUE_PREFIX = "rq:queue:"
QUEUES_SET = "rq:queues"
WORKERS_SET = "rq:workers"

#: Registry kinds RQ keeps per queue, each a sorted set.
REGISTRY_KINDS = ("started", "finished", "failed", "deferred", "scheduled", "canceled")

#: Key prefix per registry kind; rq 2.x keeps started jobs in ``rq:wip:<queue>``.
_REGISTRY_PREFIXES = {
    "started": "rq:wip:",
    "finished": "rq:finished:",
    "failed": "rq:failed:",
    "deferred": "rq:deferred:",
    "scheduled": "rq:scheduled:",
    "canceled": "rq:canceled:",
}


def job_key(job_id: str) -> str:
    return f"{JOB_PREFIX}{job_id}"


def queue_key(queue: str) -> str:
    return f"{QUEUE_PREFIX}{queue}"


def intermediate_queue_key(queue: str) -> str:
    """Return the list RQ 2.x moves an id into (LMOVE) between dequeue and start."""
    return f"{QUEUE_PREFIX}{queue}:intermediate"


def registry_key(kind: str, queue: str) -> str:
    if kind not in REGISTRY_KINDS:
        raise ValueError(f"unknown registry {kind!r}; allowed: {', '.join(REGISTRY_KINDS)}")
    return f"{_REGISTRY_PREFIXES[kind]}{queue}"


def started_member_job_id(member: bytes | str) -> str:
    """Return the job id of a started-registry member, which rq 2.x writes as ``<job id>:<execution id>``."""
    text = member.decode() if isinstance(member, bytes) else member
    return text.partition(":")[0]


def result_key(job_id: str) -> str:
    """Return the stream where RQ 2.x stores a job's results."""
    return f"rq:results:{job_id}"
