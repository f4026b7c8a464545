"""The validated scenario: frozen dataclasses holding every default in one place.

Durations are float seconds and rates float messages per second. The loader fills
these classes from YAML, and nothing here reads files.
"""

import operator
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Allowed values of the enumerated keys, in the order the docs list them.
SERVICES = ("redis", "mysql", "clickhouse")
BACKENDS = ("local", "docker")
PERSISTENCE_MODES = ("none", "aof-everysec", "aof-always")
WORKER_MODES = ("process", "simple", "thread")
PRODUCER_PROFILES = ("java", "java-legacy-zlib", "rq-native")
CLOCK_PRECISIONS = ("nanos", "micros", "millis")
LATENCY_STATS = ("p50", "p95", "p99", "max")
LATENCY_TIMINGS = ("queue_wait", "processing", "total")
PAYLOAD_PLACEHOLDERS = ("n", "phase", "i")

#: Comparison operators of latency rules. Two-character ones come first so a regex alternation tries them first.
COMPARISONS = {
    "<=": operator.le,
    ">=": operator.ge,
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
}

DEFAULT_PAYLOAD = "Test_{n}"
DEFAULT_TTL_S = 86_400
DEFAULT_DEADLINE_S = 60.0

#: Bounds that catch typing mistakes rather than machine limits.
MAX_WORKERS = 64
MAX_PHASE_MESSAGES = 10_000_000
MAX_DURATION_S = 365 * 86_400.0


@dataclass(frozen=True, kw_only=True)
class RedisOptions:
    """Settings of the Redis the sandbox starts itself (ignored for an external Redis)."""

    #: Append-only file mode: `none`, `aof-everysec` or `aof-always`.
    persistence: str = "none"


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """The rq workers the run starts."""

    #: Number of workers. With 0 the producer runs alone.
    count: int = 1
    #: `process` (rq Worker, forks a work horse per job), `simple` (SimpleWorker) or `thread`.
    mode: str = "process"
    #: Queues every worker listens on, in priority order. The loader uses the producer's queue when the file names none.
    queues: tuple[str, ...] = ()
    #: `json`, `pickle` or the dotted path `module.attr` of an rq serializer.
    serializer: str = "json"
    #: Whether the workers' Redis connection decodes replies to str.
    decode_responses: bool = False
    #: Absolute folders prepended to the workers' import path.
    pythonpath: tuple[Path, ...] = ()
    #: Job timeout in seconds passed to rq, or None for rq's default.
    job_timeout_s: float | None = None
    #: Start a new worker in place of one that crashed; its crash is then reported, not fatal.
    restart_dead: bool = False


@dataclass(frozen=True, kw_only=True)
class ProducerOptions:
    """Settings of the simulated producer that writes jobs into Redis."""

    #: RQ queue name the jobs are enqueued on.
    queue: str
    #: Dotted path `module.attr` of the job function, stored in the job hash.
    function: str
    #: `java` (byte-faithful Java writer), `java-legacy-zlib` (the old compressed writer) or `rq-native` (`Queue.enqueue`).
    profile: str = "java"
    #: Job hash TTL in whole seconds.
    ttl_s: int = DEFAULT_TTL_S
    #: Job description, or None to let the writer use the function name.
    description: str | None = None
    #: Precision of the timestamps the writer stores: `nanos`, `micros` or `millis`.
    clock_precision: str = "micros"
    #: Pipelined writes for load. Such runs do not send the Java command sequence byte for byte.
    batched: bool = False
    #: Java writer fields left out of each job hash, e.g. `("status",)`. Java profiles only.
    omit_fields: tuple[str, ...] = ()
    #: Fields added to each job hash after the writer's own (a same-named field is overwritten). Java profiles only.
    extra_fields: dict[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True, kw_only=True)
class JobOptions:
    """Behaviour of the sandbox's simulated job functions."""

    #: Seconds each job spends working.
    work_s: float = 0.0
    #: Probability from 0 to 1 that a job raises.
    failure_rate: float = 0.0
    #: Seed of the random generator that decides failures.
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class Phase:
    """One stretch of the run with its own message count and pacing."""

    #: Name shown in progress and reports, and the `{phase}` placeholder.
    name: str
    #: Jobs enqueued in this phase, derived from rate and duration for timed phases.
    messages: int
    #: Constant rate in messages per second. None with no ramp means burst (as fast as possible).
    rate_per_s: float | None = None
    #: Linear ramp `(from, to)` in messages per second over the phase.
    ramp: tuple[float, float] | None = None
    #: Seconds the phase lasts as written in the file, or None for phases given by message count.
    duration_s: float | None = None
    #: A str template, or a JSON-like mapping or list whose str leaves are templates.
    payload: Any = field(default=DEFAULT_PAYLOAD, hash=False)

    @property
    def is_burst(self) -> bool:
        return self.rate_per_s is None and self.ramp is None

    def render_payload(self, n: int, i: int) -> Any:
        """Fill the templates with `n` (1-based number across the run) and `i` (0-based index in the phase).

        Returns a str for a str payload, otherwise a new mapping or list.
        """
        values = {"n": n, "i": i, "phase": self.name}
        return _render(self.payload, values)


@dataclass(frozen=True, kw_only=True)
class LatencyRule:
    """A bound on one latency statistic, such as `p95_total_ms < 2000`."""

    #: `p50`, `p95`, `p99` or `max`.
    stat: str
    #: `queue_wait`, `processing` or `total`.
    timing: str
    #: One of the COMPARISONS keys.
    op: str
    #: Bound in milliseconds.
    value: float
    #: The rule as written in the scenario file.
    text: str

    @property
    def metric(self) -> str:
        return f"{self.stat}_{self.timing}_ms"

    def passes(self, actual_ms: float) -> bool:
        """Compare a measured latency in milliseconds with the bound."""
        return COMPARISONS[self.op](actual_ms, self.value)


@dataclass(frozen=True, kw_only=True)
class ErrorRule:
    """How often failed jobs' exception text must contain a string."""

    #: Text searched for in each failed job's exception info.
    contains: str
    #: Exact number of matching jobs, or None.
    count: int | None = None
    #: Minimum number of matching jobs, or None. The loader sets 1 when neither bound is given.
    at_least: int | None = None


@dataclass(frozen=True, kw_only=True)
class Expectations:
    """Conditions the run must meet to pass. A count left as None is not checked."""

    finished: int | None = None
    failed: int | None = None
    abandoned: int | None = None
    expired: int | None = None
    #: Jobs whose hash was written but whose id never reached a queue.
    orphaned: int | None = None
    #: Jobs the producer wrote that Redis no longer has, before their TTL ran out.
    lost: int | None = None
    pending: int | None = None
    #: Seconds the run waits for the jobs to settle before it stops waiting.
    deadline_s: float = DEFAULT_DEADLINE_S
    latency: tuple[LatencyRule, ...] = ()
    errors: tuple[ErrorRule, ...] = ()
    #: True when the run expects a worker to crash. Otherwise a crash is an infrastructure failure.
    worker_crash: bool | None = None


@dataclass(frozen=True, kw_only=True)
class Scenario:
    """A whole run: services, workers, producer and phases, and what must come out."""

    name: str
    description: str | None = None
    #: The file the scenario came from, or None when parsed from a string.
    path: Path | None = None
    services: tuple[str, ...] = ("redis",)
    #: Where services run: `local` processes or `docker` containers.
    backend: str = "local"
    redis: RedisOptions = field(default_factory=RedisOptions)
    workers: WorkerOptions = field(default_factory=WorkerOptions)
    producer: ProducerOptions
    job: JobOptions = field(default_factory=JobOptions)
    phases: tuple[Phase, ...]
    expect: Expectations = field(default_factory=Expectations)
    #: Faults injected during the run (``sandbox.scenario.faults.Fault``), in file order.
    faults: tuple = ()

    @property
    def total_messages(self) -> int:
        return sum(phase.messages for phase in self.phases)


def check_template(text: str) -> None:
    """Raise ValueError when a payload template uses a placeholder other than {n}, {phase} and {i}."""
    allowed = ", ".join("{" + name + "}" for name in PAYLOAD_PLACEHOLDERS)

    def unknown(name: str) -> str:
        return f"unknown placeholder {{{name}}}; allowed: {allowed} (write a literal brace as {{{{ or }}}})"

    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        raise ValueError(f"invalid template ({exc}); write a literal brace as {{{{ or }}}}") from None

    for name in fields:
        if name not in PAYLOAD_PLACEHOLDERS:
            raise ValueError(unknown(name))

    # Placeholders nested in a format spec ({n:{x}}) and bad specs ({n:q}) only show when formatting.
    try:
        text.format(n=1, i=0, phase="phase")
    except KeyError as exc:
        raise ValueError(unknown(exc.args[0])) from None
    except IndexError:
        raise ValueError(unknown("")) from None
    except (ValueError, TypeError, AttributeError) as exc:
        raise ValueError(f"invalid template ({exc})") from None


def _render(payload: Any, values: dict[str, Any]) -> Any:
    if isinstance(payload, str):
        return payload.format(**values)
    if isinstance(payload, dict):
        return {key: _render(item, values) for key, item in payload.items()}
    if isinstance(payload, list):
        return [_render(item, values) for item in payload]
    return payload
