"""End to end: `rq-sandbox run scenarios/ten-messages.yaml` timed from outside, start-up included.

The timed runs start their own Redis, as a user's run does. One extra run per
worker count uses the benchmark's Redis (`--redis-url`) so that RQ's timestamps
can be read afterwards, which splits the wall time into start-up, jobs and
shut-down.
"""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import redis

from bench.results import Section, Table, Target
from bench.stats import median, spread
from sandbox.errors import ExitCode
from sandbox.monitor.harvest import read_jobs

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "scenarios/ten-messages.yaml"
#: Worker counts and the wall-time target of each, in seconds.
TARGETS_S = {1: 6.0, 5: 1.6}
RUN_TIMEOUT_S = 120.0
#: Seconds a run may take to stop its workers and Redis after SIGINT.
STOP_TIMEOUT_S = 20.0
#: Variables from which `rq-sandbox run` would take an existing Redis instead of starting one.
REDIS_ENV = ("REDIS_URL", "REDIS_HOST", "REDIS_PORT", "REDIS_DB", "REDIS_PASSWORD")


def cli() -> list[str]:
    beside = Path(sys.executable).with_name("rq-sandbox")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rq-sandbox")
    return [found] if found else [sys.executable, "-m", "sandbox"]


def command(workers: int) -> list[str]:
    extra = [] if workers == 1 else ["--workers", str(workers)]
    return ["rq-sandbox", "run", SCENARIO, *extra]


def _env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if name not in REDIS_ENV}


def _interrupt(process: subprocess.Popen) -> None:
    # One SIGINT lets the run stop its workers and Redis, while SIGKILL would orphan them. The run has
    # a session of its own, so a Ctrl-C in the terminal does not also reach it a second time.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logger.warning("rq-sandbox pid %s still running %g s after SIGINT, killing it", process.pid, STOP_TIMEOUT_S)
        process.kill()
        process.wait()


def timed_run(workers: int, extra: list[str] | None = None) -> tuple[float, int, str]:
    """Run the scenario and return its wall time in seconds, its exit status and its stdout.

    Status 1 (an expectation failed) still yields a wall time worth keeping; any
    other failure raises.
    """
    argv = cli() + command(workers)[1:] + (extra or [])
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=ROOT, env=_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    except BaseException:
        _interrupt(process)
        raise
    wall = time.perf_counter() - start
    if process.returncode not in (ExitCode.OK, ExitCode.FAILED):
        raise RuntimeError(f"{' '.join(argv)} exited with {process.returncode}: {stderr.strip()[-500:]}")
    return wall, process.returncode, stdout


def failed_checks(stdout: str) -> str:
    """Return the FAIL lines of a run summary, or its first line when there are none."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip().startswith("[FAIL]")]
    return "; ".join(lines) or (stdout.strip().splitlines() or ["no output"])[0]


def phases(workers: int, redis_url: str, connection: redis.Redis) -> dict[str, float]:
    """Split one run against the benchmark's Redis into start-up, jobs and shut-down seconds."""
    connection.flushall()
    spawned = datetime.now(timezone.utc)
    wall, status, stdout = timed_run(workers, ["--redis-url", redis_url, "--json"])
    exited = datetime.now(timezone.utc)

    report = json.loads(stdout)
    if status != 0:
        logger.warning("Scenario split run with %d worker(s) did not pass (status %d)", workers, status)
    records = read_jobs(connection, report["jobs"]["ids"]["finished"])
    connection.flushall()
    first_created = min(r.created_at for r in records)
    last_ended = max(r.ended_at for r in records)
    return {
        "wall": wall,
        "start-up": (first_created - spawned).total_seconds(),
        "jobs": (last_ended - first_created).total_seconds(),
        "shut-down": (exited - last_ended).total_seconds(),
    }


def measure(redis_url: str, connection: redis.Redis, repeats: int) -> Section:
    section = Section(f"End to end: `rq-sandbox run {SCENARIO}` (10 jobs x 500 ms)")
    walls: dict[int, list[float]] = {workers: [] for workers in TARGETS_S}
    splits: dict[int, list[dict[str, float]]] = {workers: [] for workers in TARGETS_S}
    failures = []
    for repeat in range(repeats):
        for workers in TARGETS_S:
            wall, status, stdout = timed_run(workers)
            walls[workers].append(wall)
            logger.info("Scenario with %d worker(s), repeat %d: %.2f s, exit status %d",
                        workers, repeat + 1, wall, status)
            if status != 0:
                failures.append(f"{workers} worker(s), repeat {repeat + 1}: {failed_checks(stdout)}")

            split = phases(workers, redis_url, connection)
            splits[workers].append(split)
            logger.info("Scenario with %d worker(s) against the benchmark's Redis: %s", workers,
                        ", ".join(f"{name} {seconds:.2f} s" for name, seconds in split.items()))

    def phase(workers: int, name: str) -> str:
        return f"{median([split[name] for split in splits[workers]]):.2f}"

    section.tables.append(Table(
        ["command", "wall s (median)", "range", "target", "split: wall s", "start-up s", "jobs s", "shut-down s"],
        [
            [
                f"`{' '.join(command(workers))}`",
                f"{median(walls[workers]):.2f}",
                spread(walls[workers], fmt=lambda v: f"{v:.2f}"),
                f"< {target:g} s",
                *(phase(workers, name) for name in ("wall", "start-up", "jobs", "shut-down")),
            ]
            for workers, target in TARGETS_S.items()
        ],
    ))
    for workers, target in TARGETS_S.items():
        wall = median(walls[workers])
        section.targets.append(Target(
            f"ten-messages, {workers} worker(s), wall time", f"< {target:g} s", f"{wall:.2f} s", wall < target,
        ))
    if failures:
        section.notes.append(
            "Runs that failed an expectation of the scenario (their wall time is still counted): "
            + " | ".join(failures)
        )
    section.notes.append(
        f"Wall time of the whole command via subprocess, median of {repeats} runs, each starting its own "
        "Redis. The split columns come from as many runs against the benchmark's Redis (`--redis-url`, "
        "so no Redis start-up), each column its own median. Start-up lasts from the process start to the "
        "first job's `created_at`, jobs until the last `ended_at`, and shut-down until the process exit "
        "(last monitor tick, stopping the workers, report)."
    )
    return section
