"""Simulated job functions that the Java-style producer enqueues by dotted path.

Each job sleeps for the configured work time, then either fails with
`SimulatedJobError` or returns a dict that echoes its payload. Whether a job
fails depends only on its payload and the seed, so a run can predict the exact
number of failed jobs with `will_fail`.

The behaviour is read from the `RQ_SANDBOX_JOB_BEHAVIOUR` environment variable
(JSON) when this module is imported, because a work horse or a worker process
started by the pool imports it on its own.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from hashlib import sha256
from typing import Any

from rq import get_current_job

logger = logging.getLogger(__name__)

BEHAVIOUR_ENV = "RQ_SANDBOX_JOB_BEHAVIOUR"


class SimulatedJobError(Exception):
    """The failure a simulated job raises when its payload is chosen to fail."""


@dataclass(frozen=True)
class JobBehaviour:
    """Settings of the simulated job functions: work time and failures."""

    #: Simulated work per job, in milliseconds.
    work_ms: float = 0
    #: Share of payloads that fail, from 0.0 (none) to 1.0 (all).
    failure_rate: float = 0.0
    #: Seed mixed into the payload hash; another seed picks other payloads to fail.
    seed: int = 0

    def __post_init__(self) -> None:
        if self.work_ms < 0:
            raise ValueError(f"work_ms must be >= 0, got {self.work_ms}")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be between 0.0 and 1.0, got {self.failure_rate}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobBehaviour:
        """Parse the JSON form `to_json` writes; unknown keys raise `ValueError`."""
        fields = json.loads(text)
        if not isinstance(fields, dict):
            raise ValueError(f"job behaviour must be a JSON object, got {text!r}")
        try:
            return cls(**fields)
        except TypeError as error:
            raise ValueError(f"invalid job behaviour {text!r}: {error}") from None


def behaviour_from_env(environ: dict[str, str] | None = None) -> JobBehaviour:
    """Read the behaviour from `RQ_SANDBOX_JOB_BEHAVIOUR`, or the defaults when it is unset."""
    environ = os.environ if environ is None else environ
    text = environ.get(BEHAVIOUR_ENV, "").strip()
    if not text:
        return JobBehaviour()
    try:
        return JobBehaviour.from_json(text)
    except ValueError as error:
        raise ValueError(f"{BEHAVIOUR_ENV}: {error}") from None


_behaviour = behaviour_from_env()


def configure(behaviour: JobBehaviour) -> None:
    """Set the behaviour of the job functions in this process."""
    global _behaviour
    _behaviour = behaviour


def current_behaviour() -> JobBehaviour:
    return _behaviour


def will_fail(payload: Any, behaviour: JobBehaviour) -> bool:
    """Return whether the job with this payload fails under this behaviour."""
    if behaviour.failure_rate <= 0.0:
        return False
    text = f"{behaviour.seed}:{json.dumps(payload, sort_keys=True)}"
    draw = int.from_bytes(sha256(text.encode("utf-8")).digest()[:8], "big") / 2**64
    return draw < behaviour.failure_rate


def process_hello_world(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return _simulate("Hello world job", args, kwargs)


def process_optimizer_job(*args: Any, **kwargs: Any) -> dict[str, Any]:
    return _simulate("Optimizer job", args, kwargs)


def process_noop(*args: Any, **kwargs: Any) -> None:
    """Return at once, so a benchmark measures RQ's own overhead."""
    return None


def job_payload(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Return the payload of a call: the message itself for the usual `f(message)` call."""
    if len(args) == 1 and not kwargs:
        return args[0]
    return {"args": list(args), "kwargs": kwargs}


#: Keyword a fault adds to a job's kwargs to make that one job work longer, in milliseconds.
WORK_OVERRIDE_KWARG = "sandbox_work_ms"


def _simulate(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    behaviour = _behaviour
    kwargs = dict(kwargs)
    work_ms = float(kwargs.pop(WORK_OVERRIDE_KWARG, behaviour.work_ms))
    payload = job_payload(args, kwargs)

    # The sleep is the simulated work itself.
    if work_ms > 0:
        time.sleep(work_ms / 1000)

    if will_fail(payload, behaviour):
        raise SimulatedJobError(f"{kind} failed for payload {_describe(payload)}")

    return {
        "status": "ok",
        "message": f"{kind} processed: {_describe(payload)}",
        "processed_by": _worker_name(),
        "payload": payload,
    }


def _describe(payload: Any) -> str:
    return payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)


def _worker_name() -> str:
    job = get_current_job()
    if job is not None and job.worker_name:
        return job.worker_name
    return f"{socket.gethostname()}-{os.getpid()}"
