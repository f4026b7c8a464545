"""Command-line faces of the contract lab: `repro utf8-decode` and `contract diff`.

Data goes to stdout (text or ``--json``); diagnostics are raised as
`SandboxError`, which the main command line prints as one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging

from sandbox import redisconn
from sandbox.contract.diff import contract_diff, default_queue, render_table
from sandbox.contract.matrix import HELLO_WORLD
from sandbox.contract.profiles import ProfileOptions
from sandbox.contract.repro import render_text, repro_utf8_decode
from sandbox.contract.timestamps import PRECISIONS
from sandbox.errors import ExitCode, UsageError
from sandbox.services.redis_process import RedisProcess

logger = logging.getLogger(__name__)


def add_repro_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rq-sandbox repro utf8-decode`."""
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="run on this Redis, writing only under fresh queue names and deleting them after "
        "(default: a private redis-server started and stopped by the command)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    parser.set_defaults(handler=run_repro)


def run_repro(args: argparse.Namespace) -> int:
    """Reproduce the failure and check the fix; exit 0 when both hold, 1 otherwise."""
    if args.redis_url:
        redisconn.validate_url(args.redis_url)
    result = repro_utf8_decode(args.redis_url or None)

    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    else:
        print(render_text(result), end="")
    return result.exit_code


def add_diff_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `rq-sandbox contract diff`."""
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        help="write the two jobs to this Redis and delete them after "
        "(default: a private redis-server started and stopped by the command)",
    )
    parser.add_argument(
        "--queue",
        metavar="Q",
        help="queue to enqueue on (default: a fresh queue no worker listens on; "
        "a worker on Q may take the jobs before they are read)",
    )
    parser.add_argument("--function", metavar="F", default=HELLO_WORLD, help=f"job function (default: {HELLO_WORLD})")
    parser.add_argument(
        "--clock-precision",
        choices=tuple(PRECISIONS),
        default="micros",
        help="clock resolution of the Java writer's timestamps (default: micros)",
    )
    parser.add_argument("--json", action="store_true", help="print the rows as JSON on stdout")
    parser.set_defaults(handler=run_diff)


def run_diff(args: argparse.Namespace) -> int:
    """Print how the Java writer's job differs from RQ's own; exit 0 once compared."""
    queue = args.queue or default_queue()
    if not queue.strip() or any(ch.isspace() for ch in queue):
        raise UsageError(f"invalid queue name {queue!r}: use a non-empty name without spaces")
    if "." not in args.function.strip(".") or any(ch.isspace() for ch in args.function):
        raise UsageError(f"invalid function {args.function!r}: use a dotted path module.attr")
    options = ProfileOptions(name="java", clock_precision=args.clock_precision)

    if args.redis_url:
        rows = _diff_on(args.redis_url, queue, args.function, options)
    else:
        with RedisProcess() as server:
            rows = _diff_on(server.url, queue, args.function, options)

    if args.json:
        print(json.dumps([row.as_dict() for row in rows], indent=2))
    else:
        print(f"java writer vs rq-native (Queue.enqueue) on queue {queue}, function {args.function}\n")
        print(render_table(rows), end="")
    return int(ExitCode.OK)


def _diff_on(redis_url: str, queue: str, function: str, options: ProfileOptions):
    connection = redisconn.connect(redis_url)
    try:
        return contract_diff(connection, queue, function, ["Test_1"], java_options=options)
    finally:
        connection.close()
