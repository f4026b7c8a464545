"""The `rq-sandbox` command line."""

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from sandbox import __version__
from sandbox.contract.profiles import PROFILES
from sandbox.contract.timestamps import PRECISIONS
from sandbox.errors import ExitCode, InfrastructureError, SandboxError, UsageError

PROG = "rq-sandbox"

logger = logging.getLogger(__name__)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid count {text!r}: use a whole number from 0 to 64") from None
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"invalid count {value}: use a whole number from 0 to 64")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local sandbox for a Java producer writing RQ jobs into Redis and the rq workers running them.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (repeat for debug)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="replay a YAML load scenario headless and report")
    run.add_argument("scenario", type=Path, help="scenario file, e.g. scenarios/ten-messages.yaml")
    run.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report to PATH")
    run.add_argument("--junit", type=Path, metavar="PATH", help="write a JUnit XML report to PATH")
    run.add_argument(
        "--redis-url",
        metavar="URL",
        help="use this Redis instead of starting one (default: $REDIS_URL, else a private redis-server)",
    )
    run.add_argument("--workers", type=_positive_int, metavar="N", help="number of workers, overriding the scenario")
    run.add_argument(
        "--profile",
        choices=PROFILES,
        help="producer profile, overriding the scenario: java, java-legacy-zlib or rq-native",
    )
    run.add_argument(
        "--clock-precision",
        choices=tuple(PRECISIONS),
        help="timestamp precision of the Java-style producer, overriding the scenario",
    )
    run.add_argument("--keep-services", action="store_true", help="leave the Redis this run started running")
    run.add_argument(
        "--cleanup",
        action="store_true",
        help="delete the keys this run wrote from the Redis it used (never any other key)",
    )
    run.add_argument(
        "--allow-destructive",
        action="store_true",
        help="allow --cleanup to delete keys in a Redis the sandbox did not start (only keys this run wrote)",
    )
    run.add_argument("--state-dir", type=Path, metavar="DIR", help="keep worker logs, metrics and Redis data here")
    run.add_argument("--json", action="store_true", help="print the report as JSON on stdout instead of the summary")
    run.set_defaults(handler=cmd_run)

    from sandbox.services import commands as services_commands

    services_commands.register(commands)
    _add_contract_commands(commands)

    from sandbox.tui import commands as tui_commands

    tui = commands.add_parser("tui", help="open the live dashboard: services, queues, jobs, workers and scenarios")
    tui_commands.add_tui_arguments(tui)
    tui.set_defaults(handler=tui_commands.run_tui)
    return parser


def _add_contract_commands(commands) -> None:
    from sandbox.contract import check_cli, lab_cli

    repro = commands.add_parser("repro", help="reproduce a known contract break between the Java writer and rq")
    repro_cases = repro.add_subparsers(dest="repro_case", metavar="CASE", required=True)
    utf8 = repro_cases.add_parser(
        "utf8-decode",
        help="the historical zlib writer against decode_responses=True workers, the fix, and the full matrix",
    )
    lab_cli.add_repro_arguments(utf8)

    contract = commands.add_parser("contract", help="check job hashes against the installed rq, or compare writers")
    checks = contract.add_subparsers(dest="contract_action", metavar="ACTION", required=True)
    check = checks.add_parser("check", help="lint job hashes in a Redis against the installed rq")
    check_cli.add_check_arguments(check)
    check.set_defaults(handler=check_cli.run_check)
    diff = checks.add_parser("diff", help="enqueue one job as the Java writer and as rq, and compare the hashes")
    lab_cli.add_diff_arguments(diff)

    inspect = commands.add_parser("inspect", help="show one job's hash, place in queues and registries, and findings")
    check_cli.add_inspect_arguments(inspect)
    inspect.set_defaults(handler=check_cli.run_inspect)


def cmd_run(args: argparse.Namespace) -> int:
    from sandbox import redisconn
    from sandbox.scenario.loader import load_scenario
    from sandbox.scenario.progress import HeadlessProgress, summary
    from sandbox.scenario.report import write_json, write_junit
    from sandbox.scenario import preflight
    from sandbox.scenario.runner import Runner, RunOptions

    scenario = load_scenario(args.scenario)
    if args.workers is not None:
        scenario = replace(scenario, workers=replace(scenario.workers, count=args.workers))
    preflight.check_output_paths(args.report, args.junit, args.state_dir)
    if args.allow_destructive and not args.cleanup:
        raise UsageError("--allow-destructive only applies to --cleanup; add --cleanup or drop it")
    preflight.check_function_importable(scenario)

    redis_url = args.redis_url or redisconn.redis_url_from_env(os.environ)
    if args.keep_services and redis_url:
        raise UsageError("--keep-services only applies to the Redis the sandbox starts; drop it or --redis-url")
    if redis_url:
        redisconn.validate_url(redis_url)
        if args.cleanup and not args.allow_destructive:
            raise UsageError(
                "refusing to delete keys in a Redis the sandbox did not start: "
                "add --allow-destructive to --cleanup (only the keys this run wrote are deleted)"
            )
        # Check the server before starting anything, so a wrong URL or password writes nothing.
        try:
            connection = redisconn.connect(redis_url)
        except InfrastructureError as error:
            raise UsageError(str(error)) from None
        with connection:
            preflight.check_queues_empty(connection, scenario)

    options = RunOptions(
        redis_url=redis_url,
        profile=args.profile,
        clock_precision=args.clock_precision,
        keep_services=args.keep_services,
        cleanup=args.cleanup,
        state_dir=args.state_dir,
    )
    runner = Runner(scenario, options, subscribers=[HeadlessProgress()])
    with _interrupt_on_termination():
        report, exit_code = runner.run()

    if args.report:
        write_json(report, args.report)
    if args.junit:
        write_junit(report, args.junit)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print(summary(report))
        if args.report:
            print(f"  report: {args.report}")
        if args.junit:
            print(f"  junit: {args.junit}")
    return exit_code


@contextlib.contextmanager
def _interrupt_on_termination():
    """Treat SIGTERM and SIGHUP like Ctrl-C while a run is on.

    A CI timeout or a closed terminal then stops the workers and the Redis the run
    started, and still writes the partial report, instead of leaving them running.
    """
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING
    if verbosity == 1:
        level = logging.INFO
    elif verbosity > 1:
        level = logging.DEBUG
    logging.basicConfig(level=level, format=f"{PROG}: %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return ExitCode.USAGE

    _configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except SandboxError as error:
        print(f"{PROG}: {error}", file=sys.stderr)
        return int(error.exit_code)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
