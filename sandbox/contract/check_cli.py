"""Command-line faces of the contract check and the job inspector.

Both commands look at an existing Redis and never start one. Exit codes follow
`sandbox.errors.ExitCode`: `check` returns 1 when any error-level finding
exists, `inspect` returns 1 when the job hash is not found.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from sandbox import redisconn
from sandbox.contract.check import DEFAULT_SCAN_LIMIT, CheckResult, check_jobs
from sandbox.contract.inspect import inspect_job, render_inspect
from sandbox.contract.rules import escape_control
from sandbox.errors import ExitCode, UsageError
from sandbox.secrets import mask_url
from sandbox.worker.classes import serializer_by_name

PROG = "rq-sandbox"


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid limit {text!r}: use a whole number of at least 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid limit {value}: use a whole number of at least 1")
    return value


def _add_redis_url(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="the Redis to read (default: $REDIS_URL, else one built from $REDIS_HOST/PORT/DB/PASSWORD)",
    )


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `contract check` to `parser`."""
    selection = parser.add_mutually_exclusive_group()
    selection.add_argument("--queue", metavar="Q", help="check the ids in rq:queue:Q and its intermediate list")
    selection.add_argument("--job", metavar="ID", help="check one job id")
    selection.add_argument(
        "--scan", action="store_true", help="check every rq:job:* hash, found with SCAN (the default)"
    )
    parser.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_SCAN_LIMIT,
        metavar="N",
        help=f"check at most N job ids from the queue or the scan (default {DEFAULT_SCAN_LIMIT})",
    )
    parser.add_argument(
        "--serializer",
        default="json",
        metavar="NAME",
        help="the workers' serializer: json, pickle or a dotted path (default json)",
    )
    parser.add_argument(
        "--decode-responses",
        action="store_true",
        help="fetch jobs through a client created with decode_responses=True, as some consumers do",
    )
    parser.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="put DIR first on sys.path when importing job functions (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON document")
    _add_redis_url(parser)


def add_inspect_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of `inspect` to `parser`."""
    parser.add_argument("job_id", metavar="JOB_ID", help="the job id (the part after rq:job:)")
    parser.add_argument("--serializer", default="json", metavar="NAME", help="json, pickle or a dotted path")
    parser.add_argument(
        "--pythonpath",
        action="append",
        default=[],
        metavar="DIR",
        help="put DIR first on sys.path when importing the job's function (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="print the job as a JSON document")
    _add_redis_url(parser)


def _redis_url(args: argparse.Namespace) -> str:
    url = getattr(args, "redis_url", None) or redisconn.redis_url_from_env(os.environ)
    if not url:
        raise UsageError("no Redis to read: pass --redis-url URL or set REDIS_URL")
    return url


def _check_serializer(name: str) -> None:
    try:
        serializer_by_name(name)
    except Exception as exc:  # noqa: BLE001 - rq raises several kinds for a bad dotted path
        raise UsageError(f"invalid --serializer {name!r}: {exc}; use json, pickle or a dotted path") from None


def format_check(result: CheckResult) -> str:
    """Render one line per finding, then a count line."""
    lines = []
    for finding in result.findings:
        value = f" (value: {finding.value})" if finding.value else ""
        lines.append(f"{finding.severity:<7} {finding.job_id}  {finding.field}: {finding.message}{value}")

    counts = result.counts
    more = " (stopped at the limit; more ids exist)" if result.truncated else ""
    lines.append(
        f"{result.jobs_checked} jobs checked ({result.selection}){more}: "
        f"{counts['error']} errors, {counts['warning']} warnings, {counts['info']} infos"
    )
    return "\n".join(escape_control(line) for line in lines)


def run_check(args: argparse.Namespace) -> int:
    """Run `contract check` and return the exit code. Bad input raises UsageError."""
    url = _redis_url(args)
    _check_serializer(args.serializer)
    connection = redisconn.connect(url)
    try:
        result = check_jobs(
            connection,
            queue=args.queue,
            job_id=args.job,
            scan_limit=args.limit,
            serializer=args.serializer,
            decode_responses=args.decode_responses,
            pythonpath=args.pythonpath,
        )
    finally:
        connection.close()

    if args.json:
        print(json.dumps({"redis": mask_url(url), **result.to_dict()}, indent=2))
    else:
        print(format_check(result))
    return int(ExitCode.FAILED if result.has_errors else ExitCode.OK)


def run_inspect(args: argparse.Namespace) -> int:
    """Run `inspect JOB_ID` and return the exit code, 1 when the job hash is not found."""
    url = _redis_url(args)
    _check_serializer(args.serializer)
    if not args.job_id or ":" in args.job_id:
        raise UsageError(f"invalid job id {args.job_id!r}: pass the id without the rq:job: prefix")

    connection = redisconn.connect(url)
    try:
        data = inspect_job(connection, args.job_id, serializer=args.serializer, pythonpath=args.pythonpath)
    finally:
        connection.close()

    if args.json:
        print(json.dumps({"redis": mask_url(url), **data}, indent=2, default=str))
    else:
        print(render_inspect(data))
    if not data["found"]:
        print(f"{PROG}: job {escape_control(args.job_id)} not found in Redis at {mask_url(url)}", file=sys.stderr)
        return int(ExitCode.FAILED)
    return int(ExitCode.OK)
