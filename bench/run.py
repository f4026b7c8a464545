"""Run the sandbox's benchmarks against a private redis-server and print a markdown report.

    python bench/run.py [--repeats 3] [--write-docs]

Everything is measured in one run and compared with a baseline from the same
run, because the machines are shared and noisy. Progress goes to stderr, the
report to stdout; `--write-docs` also rewrites the results of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import signal
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make `bench` and `sandbox` importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402

from bench import machine, monitor, pacer, producer, report, scenario, workers  # noqa: E402
from bench.results import Section  # noqa: E402
from sandbox.services.binaries import find_redis_benchmark  # noqa: E402
from sandbox.services.redis_process import RedisProcess  # noqa: E402

logger = logging.getLogger("bench")

SECTIONS = ("producer", "workers", "pacer", "monitor", "scenario")
DOCS = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (default 3)")
    parser.add_argument(
        "--sections", default=",".join(SECTIONS),
        help=f"comma-separated subset of {', '.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--write-docs", action="store_true", help=f"rewrite the results in {DOCS.name}")
    args = parser.parse_args(argv)

    args.sections = [name.strip() for name in args.sections.split(",") if name.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s) {', '.join(unknown)}; use {', '.join(SECTIONS)}")
    if not args.sections:
        parser.error("--sections names no section")
    if args.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {args.repeats}")
    if args.write_docs and (set(args.sections) != set(SECTIONS) or args.repeats < 3):
        # A partial or single-shot run would replace the recorded results with weaker ones.
        parser.error("--write-docs needs every section and at least 3 repeats")
    return args


def shown_command(argv: list[str]) -> str:
    invocation = "python bench/run.py" if __package__ in (None, "") else "python -m bench.run"
    return " ".join([invocation, *map(shlex.quote, argv)])


def run_sections(
    args: argparse.Namespace, server: RedisProcess, connection: redis.Redis, benchmark_path: str | None
) -> list[Section]:
    sections = []
    for name in args.sections:
        started = time.perf_counter()
        logger.info("Section %s: starting", name)
        if name == "producer":
            sections.append(producer.measure(connection, server.port, benchmark_path, args.repeats))
        elif name == "workers":
            sections.append(workers.measure(server.url, connection, args.repeats))
        elif name == "pacer":
            sections.append(pacer.measure(connection, args.repeats))
        elif name == "monitor":
            sections.append(monitor.measure(connection, args.repeats))
        else:
            sections.append(scenario.measure(server.url, connection, args.repeats))
        logger.info("Section %s: done in %.1f s", name, time.perf_counter() - started)
    return sections


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    if args.write_docs:
        report.check_docs(DOCS)
    # SIGTERM takes the Ctrl-C path, so the workers and the Redis this run started are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)

    started = time.perf_counter()
    with RedisProcess() as server:
        connection = redis.Redis.from_url(server.url)
        benchmark = find_redis_benchmark()
        benchmark_path = str(benchmark) if benchmark is not None else None
        facts = machine.describe(connection, benchmark_path)
        sections = run_sections(args, server, connection, benchmark_path)
        connection.close()

    text = report.render(sections, facts, shown_command(argv), time.perf_counter() - started)
    print(text)
    if args.write_docs:
        report.write_docs(DOCS, text)
        logger.info("Results written to %s", DOCS)
    missed = [t.name for s in sections for t in s.targets if t.met is False]
    logger.info("Targets missed: %d (%s)", len(missed), "; ".join(missed) or "none")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        print("bench/run.py: interrupted; every process it started was stopped", file=sys.stderr)
        sys.exit(130)
