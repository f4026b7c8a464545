"""Run producer profiles against worker settings and record what RQ did with the jobs.

A cell pairs one producer profile with one worker setting (``decode_responses``
and serializer). It gets a queue of its own, enqueues a few jobs, runs one real
rq worker on that queue and classifies the outcome from what RQ recorded in
Redis: every job finished, a job failed, the worker crashed, or the jobs are
stuck somewhere. Cells never share a queue, a worker or a job, so they can run
side by side on one Redis, and each cell deletes only the keys of its own queue.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from sandbox.contract import keys
from sandbox.contract.profiles import PROFILES, ProfileOptions
from sandbox.monitor import harvest
from sandbox.producer.publisher import Publisher
from sandbox.worker.pool import WorkerExit, WorkerPool, WorkerSpec

logger = logging.getLogger(__name__)

HELLO_WORLD = "sandbox.worker.jobs.process_hello_world"
SERIALIZERS = ("json", "pickle")
DECODE_RESPONSES = (True, False)

FINISHED = "finished"
FAILED = "failed"
CRASHED = "worker crashed"
STUCK = "stuck"
OUTCOMES = (FINISHED, FAILED, CRASHED, STUCK)

#: Jobs enqueued per cell.
JOBS_PER_CELL = 3
#: Seconds a cell waits for its jobs to settle before it calls them stuck.
CELL_WAIT_S = 6.0
#: Seconds between two reads of the cell's job statuses.
POLL_S = 0.05
#: Cells run at the same time; each one starts one worker process.
PARALLEL_CELLS = 6

#: Registries searched for a job id, in this order, after the queue and its intermediate list.
REGISTRY_PLACES = ("started", "finished", "failed", "canceled", "deferred", "scheduled")


@dataclass(frozen=True)
class Cell:
    """One producer profile against one worker setting."""

    profile: str
    decode_responses: bool
    serializer: str

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"unknown producer profile {self.profile!r}; allowed: {', '.join(PROFILES)}")
        if self.serializer not in SERIALIZERS:
            raise ValueError(f"unknown serializer {self.serializer!r}; allowed: {', '.join(SERIALIZERS)}")

    @property
    def label(self) -> str:
        return f"{self.profile} / decode_responses={self.decode_responses} / {self.serializer}"


#: Every pairing, producer profile first.
CELLS = tuple(Cell(p, d, s) for p, d, s in itertools.product(PROFILES, DECODE_RESPONSES, SERIALIZERS))


@dataclass
class JobPlace:
    """The place one job ended in: the status in its hash and the list or registry that contains its id."""

    job_id: str
    #: The ``status`` field of the job hash, or None when the hash is gone.
    status: str | None
    #: ``queue``, ``intermediate``, a registry name (``started``, ``failed``, ...) or ``nowhere``.
    location: str


@dataclass
class CellResult:
    """The outcome of one cell, as RQ recorded it."""

    cell: Cell
    queue: str
    outcome: str
    #: The error's last line for failed and crashed cells, where the jobs sit for stuck ones.
    detail: str | None
    jobs: list[JobPlace] = field(default_factory=list)
    #: The job the crashed worker held, from its worker hash or the intermediate list.
    crashed_job_id: str | None = None
    #: rq frames of the crash traceback, innermost last, e.g. ``rq/job.py:1011 in refresh``.
    crash_frames: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def job_ids(self) -> list[str]:
        return [job.job_id for job in self.jobs]

    def as_dict(self) -> dict:
        document = asdict(self)
        document["cell"]["label"] = self.cell.label
        return document


def run_matrix(
    redis_url: str,
    cells: tuple[Cell, ...] = CELLS,
    parallel: int = PARALLEL_CELLS,
    wait_s: float = CELL_WAIT_S,
) -> list[CellResult]:
    """Run every cell against the Redis at ``redis_url`` and return the results in cell order."""
    with tempfile.TemporaryDirectory(prefix="rq-sandbox-matrix-") as tmp:
        def one(indexed: tuple[int, Cell]) -> CellResult:
            index, cell = indexed
            return run_cell(
                redis_url, cell, queue=cell_queue_name(),
                state_dir=Path(tmp) / f"cell-{index}", wait_s=wait_s,
            )

        with ThreadPoolExecutor(max_workers=max(1, parallel), thread_name_prefix="matrix-cell") as executor:
            return list(executor.map(one, enumerate(cells)))


def cell_queue_name() -> str:
    """Return a queue name no other cell or user shares, so its key pattern matches its own keys alone."""
    return f"rq-sandbox:matrix:{uuid.uuid4().hex}"


def run_cell(
    redis_url: str,
    cell: Cell,
    queue: str,
    state_dir: Path,
    jobs: int = JOBS_PER_CELL,
    wait_s: float = CELL_WAIT_S,
    func: str = HELLO_WORLD,
) -> CellResult:
    """Start one worker on ``queue``, enqueue ``jobs`` jobs with the cell's profile and record what happened."""
    started = time.perf_counter()
    connection = redis.Redis.from_url(redis_url)
    spec = WorkerSpec(
        redis_url=redis_url,
        queues=(queue,),
        mode="simple",
        serializer=cell.serializer,
        decode_responses=cell.decode_responses,
        name_prefix="matrix",
        state_dir=state_dir,
    )
    pool = WorkerPool(spec)
    job_ids: list[str] = []
    crashes: list[WorkerExit] = []
    try:
        # The worker registers before any job exists, so a crash on the first
        # dequeue shows as a crash rather than as a worker that never started.
        pool.start()
        pool.wait_ready()

        publisher = Publisher(connection, ProfileOptions(name=cell.profile))
        job_ids = [publisher.enqueue(queue, func, [f"Test_{n}"]) for n in range(1, jobs + 1)]
        logger.info("Cell %s: enqueued %s on %s", cell.label, ", ".join(job_ids), queue)

        crashes = _wait_settled(connection, pool, job_ids, wait_s)
    finally:
        pool.stop()

    try:
        places = locate_jobs(connection, queue, job_ids)
        failed_ids = [place.job_id for place in places if place.status == FAILED]
        errors = harvest.read_errors(connection, failed_ids)
        crash = crashes[0] if crashes else None
        held_job_id = None
        if crash is not None:
            held_job_id = crash.current_job_id or next((p.job_id for p in places if p.location == "intermediate"), None)
        outcome, detail = classify(places, crash.last_error if crash else None, errors)
        return CellResult(
            cell=cell,
            queue=queue,
            outcome=outcome,
            detail=detail,
            jobs=places,
            crashed_job_id=held_job_id,
            crash_frames=rq_frames(crash.log_path) if crash else [],
            elapsed_s=round(time.perf_counter() - started, 3),
        )
    finally:
        workers = [worker.name for worker in pool.workers]
        cleanup_queue(connection, queue, job_ids, workers)
        connection.close()


def _wait_settled(connection: redis.Redis, pool: WorkerPool, job_ids: list[str], wait_s: float) -> list[WorkerExit]:
    """Poll until every job is finished or failed, the worker ended, or ``wait_s`` passed."""
    deadline = time.monotonic() + wait_s
    while True:
        crashes = pool.poll()
        if crashes:
            return crashes
        statuses = connection.pipeline(transaction=False)
        for job_id in job_ids:
            statuses.hget(keys.job_key(job_id), "status")
        if all(_text(status) in (FINISHED, FAILED) for status in statuses.execute()):
            return []
        if time.monotonic() >= deadline:
            return []
        time.sleep(POLL_S)


def locate_jobs(connection: redis.Redis, queue: str, job_ids: list[str]) -> list[JobPlace]:
    """Read, without writing, the status of each job and which list or registry contains its id."""
    pipe = connection.pipeline(transaction=False)
    for job_id in job_ids:
        pipe.hget(keys.job_key(job_id), "status")
        pipe.lpos(keys.queue_key(queue), job_id)
        pipe.lpos(keys.intermediate_queue_key(queue), job_id)
        for kind in REGISTRY_PLACES:
            pipe.zscore(keys.registry_key(kind, queue), job_id)
    replies = pipe.execute()

    width = 3 + len(REGISTRY_PLACES)
    places = []
    for index, job_id in enumerate(job_ids):
        status, in_queue, in_intermediate, *scores = replies[index * width : (index + 1) * width]
        if in_queue is not None:
            location = "queue"
        elif in_intermediate is not None:
            location = "intermediate"
        else:
            location = next((kind for kind, score in zip(REGISTRY_PLACES, scores) if score is not None), "nowhere")
        places.append(JobPlace(job_id, _text(status), location))
    return places


def classify(places: list[JobPlace], crash_error: str | None, errors: dict[str, str]) -> tuple[str, str | None]:
    """Name a cell's outcome: a crash outranks a failed job, which outranks a stuck one."""
    if crash_error is not None:
        return CRASHED, crash_error
    failed = [place for place in places if place.status == FAILED]
    if failed:
        texts = [harvest.last_error_line(errors[p.job_id]) for p in failed if p.job_id in errors]
        return FAILED, texts[0] if texts else "no result stored"
    if places and all(place.status == FINISHED for place in places):
        return FINISHED, None
    return STUCK, where_stuck(places)


def where_stuck(places: list[JobPlace]) -> str:
    """Summarise where unsettled jobs sit, e.g. ``queue x2, intermediate x1``."""
    return where_jobs([place for place in places if place.status not in (FINISHED, FAILED)])


def where_jobs(places: list[JobPlace]) -> str:
    """Count jobs per place, in the order first seen, e.g. ``intermediate x1, queue x2``."""
    counts: dict[str, int] = {}
    for place in places:
        counts[place.location] = counts.get(place.location, 0) + 1
    return ", ".join(f"{location} x{count}" for location, count in counts.items()) or "nowhere"


def rq_frames(log_path: Path) -> list[str]:
    """Return the rq frames of the last traceback in a worker log, innermost last."""
    try:
        text = log_path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    start = text.rfind("Traceback (most recent call last):")
    if start < 0:
        return []

    frames = []
    for line in text[start:].splitlines()[1:]:
        stripped = line.strip()
        if not stripped.startswith('File "'):
            if line and not line.startswith((" ", "\t")):
                break
            continue
        path, _, rest = stripped[len('File "') :].partition('", line ')
        marker = path.rfind("/rq/")
        if marker >= 0:
            number, _, where = rest.partition(", ")
            frames.append(f"{path[marker + 1 :]}:{number} {where}")
    return frames


def cleanup_queue(connection: redis.Redis, queue: str, job_ids: list[str], workers: list[str] = ()) -> int:
    """Delete the cell's job hashes, their results, its workers' hashes and every key named after its queue.

    The queue name carries a random token, so the pattern matches this cell's
    keys alone: its list, intermediate list, registries and worker sets. RQ
    leaves a stopped worker's hash to expire within a minute; the cell deletes it now.
    """
    names = [keys.job_key(job_id) for job_id in job_ids] + [keys.result_key(job_id) for job_id in job_ids]
    names += [f"rq:worker:{name}" for name in workers]
    names += [key for key in connection.scan_iter(match=f"*{queue}*", count=500)]
    removed = int(connection.delete(*names)) if names else 0
    connection.srem(keys.QUEUES_SET, keys.queue_key(queue))
    return removed


def _text(value) -> str | None:
    return value.decode() if isinstance(value, bytes) else value
