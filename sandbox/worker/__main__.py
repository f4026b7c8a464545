"""Entry point of one worker process the pool starts: `python -m sandbox.worker`.

The Redis URL comes from `RQ_SANDBOX_REDIS_URL` rather than the command line,
so a password in it never shows in the process list. The job behaviour comes
from `RQ_SANDBOX_JOB_BEHAVIOUR` (see `sandbox.worker.jobs`).

Exit status: 0 after a requested stop, 1 when a worker crashed or `work()`
returned without a stop request, 2 for bad arguments. In thread mode the
status is 0 after a requested stop even when some threads crashed before it. When a worker ends
without a stop request, the process writes `exit-<worker name>.json` to the
state folder with the last exception line it logged, which the pool reads.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import redis
from rq import Queue

# Loaded here so that a forked work horse finds the job functions imported.
from sandbox.worker import jobs  # noqa: F401
from sandbox.worker.classes import (
    MetricsSimpleWorker,
    MetricsWorker,
    ThreadWorker,
    process_name,
    serializer_by_name,
    worker_name,
)
from sandbox.worker.metrics import MetricsSink
from sandbox.worker.pool import MODES, REDIS_URL_ENV

logger = logging.getLogger("sandbox.worker")

LOG_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s: %(message)s"


class LastErrorTracker(logging.Handler):
    """Remember, per thread, the last exception line any logger reported."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.last_error: dict[int, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[0] is not None:
            lines = traceback.format_exception_only(record.exc_info[0], record.exc_info[1])
            self.last_error[record.thread] = lines[-1].strip()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sandbox.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--queues", required=True, help="comma-separated queue names, in priority order")
    parser.add_argument("--mode", choices=MODES, default="process")
    parser.add_argument("--index", type=int, default=0, help="index of the (first) worker in the pool")
    parser.add_argument("--count", type=int, default=1, help="number of worker threads (thread mode only)")
    parser.add_argument("--name-prefix", default="sandbox")
    parser.add_argument("--serializer", default="json", help="json, pickle or a dotted path")
    parser.add_argument("--decode-responses", action="store_true")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--job-timeout", type=int, default=None, help="seconds, for jobs that carry no timeout")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    # `kill -USR1 <pid>` writes every thread's stack to the log, for a worker that hangs.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    tracker = LastErrorTracker()
    logging.getLogger().addHandler(tracker)

    redis_url = os.environ.get(REDIS_URL_ENV)
    if not redis_url:
        logger.error("%s is not set", REDIS_URL_ENV)
        return 2
    queues = [name.strip() for name in args.queues.split(",") if name.strip()]
    if not queues:
        logger.error("--queues contains no queue name: %r", args.queues)
        return 2

    options = {
        "redis_url": redis_url,
        "queues": queues,
        "decode_responses": args.decode_responses,
        "serializer": args.serializer,
        "job_timeout": args.job_timeout,
    }
    if args.mode == "thread":
        return run_threads(args, options, tracker)
    return run_process(args, options, tracker)


def run_process(args: argparse.Namespace, options: dict[str, Any], tracker: LastErrorTracker) -> int:
    """Run one worker on the main thread, forking a work horse per job unless in simple mode."""
    name = worker_name(args.name_prefix, os.getpid(), args.index)
    sink = MetricsSink(args.state_dir / f"metrics-{name}.json")
    worker_class = MetricsWorker if args.mode == "process" else MetricsSimpleWorker

    try:
        sink.start()
        worker = build_worker(worker_class, name, sink, options)
        worker.work(logging_level="INFO")
    except Exception:
        logger.exception("Worker %s: crashed", name)
        write_exit_file(args.state_dir, name, 1, tracker.last_error.get(threading.get_ident()))
        return 1
    finally:
        sink.close()

    if worker.warm_shutdown_requested:
        return 0
    logger.error("Worker %s: work() returned without a stop request", name)
    write_exit_file(args.state_dir, name, 1, tracker.last_error.get(threading.get_ident()))
    return 1


def run_threads(args: argparse.Namespace, options: dict[str, Any], tracker: LastErrorTracker) -> int:
    """Run `--count` workers on threads of this process, sharing one metrics sink."""
    if options["job_timeout"] is not None:
        logger.warning("Thread mode enforces no job timeout; ignoring --job-timeout %s", options["job_timeout"])
    sink = MetricsSink(args.state_dir / f"metrics-{process_name(args.name_prefix, os.getpid())}.json")
    sink.start()

    names = [worker_name(args.name_prefix, os.getpid(), args.index + i) for i in range(args.count)]
    workers: list[ThreadWorker] = []
    try:
        workers = [build_worker(ThreadWorker, name, sink, options) for name in names]
    except Exception:
        logger.exception("Thread workers: cannot be created")
        sink.close()
        return 1

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: Any) -> None:
        logger.info("Thread workers: got signal %s, stopping after the current jobs", signum)
        stop_requested.set()
        for worker in workers:
            worker.request_thread_stop()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def run(worker: ThreadWorker) -> None:
        try:
            worker.work(logging_level="INFO")
        except Exception:
            logger.exception("Worker %s: crashed", worker.name)
        else:
            if worker.warm_shutdown_requested:
                return
            logger.error("Worker %s: work() returned without a stop request", worker.name)
        write_exit_file(args.state_dir, worker.name, 1, tracker.last_error.get(threading.get_ident()))

    threads = [threading.Thread(target=run, args=(worker,), name=worker.name) for worker in workers]
    for thread in threads:
        thread.start()

    # join() with a timeout keeps the main thread free to run the signal handler.
    for thread in threads:
        while thread.is_alive():
            thread.join(timeout=0.2)
    sink.close()
    # Threads that crashed earlier are reported through their exit files. The
    # status only shows whether the process ended on request or because all crashed.
    return 0 if stop_requested.is_set() else 1


def build_worker(worker_class: type, name: str, sink: MetricsSink, options: dict[str, Any]) -> Any:
    connection = redis.Redis.from_url(options["redis_url"], decode_responses=options["decode_responses"])
    extra: dict[str, Any] = {}
    if options["job_timeout"] is not None and worker_class is not ThreadWorker:
        # Queue.DEFAULT_TIMEOUT is what RQ applies to a job stored without a timeout.
        extra["queue_class"] = type("SandboxQueue", (Queue,), {"DEFAULT_TIMEOUT": options["job_timeout"]})
    return worker_class(
        options["queues"],
        name=name,
        connection=connection,
        serializer=serializer_by_name(options["serializer"]),
        sink=sink,
        **extra,
    )


def write_exit_file(state_dir: Path, name: str, exit_code: int, last_error: str | None) -> None:
    document = {"name": name, "exit_code": exit_code, "last_error": last_error}
    try:
        (state_dir / f"exit-{name}.json").write_text(json.dumps(document), encoding="utf-8")
    except OSError:
        logger.exception("Worker %s: cannot write its exit file", name)


if __name__ == "__main__":
    sys.exit(main())
