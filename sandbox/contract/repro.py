"""Reproduce the utf-8 decode failure of the zlib-compressed Java writer, and show the fix holding.

The historical pairing is the ``java-legacy-zlib`` writer with workers that read
Redis through a ``decode_responses=True`` client. The fixed pairing is the plain
JSON ``java`` writer with ``decode_responses=False``. Both use ``JSONSerializer``
and both are cells of the full matrix, which runs once.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sandbox import redisconn
from sandbox.contract.matrix import CELLS, CRASHED, FAILED, FINISHED, Cell, CellResult, run_matrix, where_jobs
from sandbox.scenario.report import versions
from sandbox.secrets import mask_url
from sandbox.services.redis_process import RedisProcess

logger = logging.getLogger(__name__)

#: The error the workers logged in production, byte for byte.
EXPECTED_ERROR = "'utf-8' codec can't decode byte 0x9c in position 1: invalid start byte"

HISTORICAL = Cell("java-legacy-zlib", decode_responses=True, serializer="json")
FIXED = Cell("java", decode_responses=False, serializer="json")


@dataclass
class ReproResult:
    """The historical pairing, the fixed pairing and the full matrix, as RQ recorded them."""

    historical: CellResult
    fixed: CellResult
    matrix: list[CellResult]
    #: The historical pairing raised the exact production error.
    reproduced: bool
    #: Every job of the fixed pairing finished.
    fix_held: bool
    redis_url: str
    embedded_redis: bool
    versions: dict = field(default_factory=dict)
    elapsed_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return 0 if self.reproduced and self.fix_held else 1

    def as_dict(self) -> dict:
        return {
            "reproduced": self.reproduced,
            "fix_held": self.fix_held,
            "expected_error": EXPECTED_ERROR,
            "historical": self.historical.as_dict(),
            "fixed": self.fixed.as_dict(),
            "matrix": [cell.as_dict() for cell in self.matrix],
            "redis": {"url": self.redis_url, "embedded": self.embedded_redis},
            "versions": self.versions,
            "elapsed_s": self.elapsed_s,
            "exit_code": self.exit_code,
        }


def repro_utf8_decode(redis_url: str | None = None) -> ReproResult:
    """Run the matrix on ``redis_url``, or on a private Redis started and stopped here when None.

    The cells write only under queue names of their own and delete those keys
    afterwards, so a Redis given by URL is never flushed.
    """
    if redis_url is not None:
        return _repro_on(redis_url, embedded=False)
    with RedisProcess() as server:
        return _repro_on(server.url, embedded=True)


def _repro_on(redis_url: str, embedded: bool) -> ReproResult:
    started = time.perf_counter()
    connection = redisconn.connect(redis_url)
    try:
        # rq 2.x moves jobs with LMOVE, and locating them uses LPOS.
        server = redisconn.require_version(connection, redis_url)
    finally:
        connection.close()

    logger.info("Repro: running %d cells on %s", len(CELLS), mask_url(redis_url))
    matrix = run_matrix(redis_url, CELLS)
    by_cell = {result.cell: result for result in matrix}
    historical, fixed = by_cell[HISTORICAL], by_cell[FIXED]

    reproduced = historical.outcome in (CRASHED, FAILED) and EXPECTED_ERROR in (historical.detail or "")
    fix_held = fixed.outcome == FINISHED and all(job.status == FINISHED for job in fixed.jobs)
    return ReproResult(
        historical=historical,
        fixed=fixed,
        matrix=matrix,
        reproduced=reproduced,
        fix_held=fix_held,
        redis_url=mask_url(redis_url),
        embedded_redis=embedded,
        versions=versions(".".join(map(str, server))),
        elapsed_s=round(time.perf_counter() - started, 3),
    )


def render_text(result: ReproResult) -> str:
    """Render a repro result for a terminal."""
    v = result.versions
    where = "private" if result.embedded_redis else "given"
    lines = [
        f"utf-8 decode repro: rq {v.get('rq')}, redis-py {v.get('redis_py')}, "
        f"Redis {v.get('redis_server')} ({where}, {result.redis_url})",
        "",
        "(a) historical: java-legacy-zlib writer, workers with decode_responses=True, JSONSerializer",
        *_cell_lines(result.historical),
        "",
        "(b) fixed: java writer (plain JSON data), workers with decode_responses=False, JSONSerializer",
        *_cell_lines(result.fixed),
        "",
        "(c) matrix: producer profile x worker decode_responses x worker serializer, 3 jobs per cell",
        *_matrix_lines(result.matrix),
        "",
        f"reproduced: {_yes(result.reproduced)} (expected error: {EXPECTED_ERROR})",
        f"fix held:   {_yes(result.fix_held)}",
        f"took {result.elapsed_s:.1f}s",
    ]
    return "\n".join(lines) + "\n"


def _cell_lines(cell: CellResult) -> list[str]:
    lines = [f"    outcome: {cell.outcome}"]
    if cell.outcome == CRASHED:
        lines.append(f"    rq raised: {cell.detail}")
        if cell.crash_frames:
            lines.append(f"    raised in: {' -> '.join(cell.crash_frames)}")
        lines.append(f"    job the worker held: {cell.crashed_job_id or 'unknown'}")
    elif cell.outcome == FAILED:
        lines.append(f"    rq recorded: {cell.detail}")
    elif cell.detail:
        lines.append(f"    where: {cell.detail}")
    lines.append(f"    queue: {cell.queue}")
    for job in cell.jobs:
        lines.append(f"      job {job.job_id}  status {job.status or '(hash gone)'}  in {job.location}")
    return lines


def _matrix_lines(matrix: list[CellResult]) -> list[str]:
    rows = [("profile", "decode_responses", "serializer", "outcome", "jobs ended in", "detail")]
    for cell in matrix:
        rows.append((
            cell.cell.profile, str(cell.cell.decode_responses), cell.cell.serializer,
            cell.outcome, where_jobs(cell.jobs), cell.detail or "",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["    " + "  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in rows]


def _yes(flag: bool) -> str:
    return "yes" if flag else "NO"
