"""`rq-sandbox tui`: its options, and the start and stop around the app.

The app itself is imported only when the command runs, so the rest of the
command line never loads Textual.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

import sandbox
from sandbox import redisconn
from sandbox.errors import ExitCode, UsageError
from sandbox.secrets import mask_url
from sandbox.services.base import SERVICE_NAMES

logger = logging.getLogger(__name__)

LOG_NAME = "tui.log"


def add_tui_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis-url", metavar="URL",
                        help="watch this Redis instead of starting one (default: $REDIS_URL, else the stack's own)")
    parser.add_argument("--backend", choices=("local", "docker"), default="local",
                        help="run the services as local processes or as containers (default: local)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="pool workers to start (default: 1)")
    parser.add_argument("--mode", choices=("process", "thread", "simple"), default="process",
                        help="how the pool runs its workers (default: process)")
    parser.add_argument("--state-dir", type=Path, metavar="DIR",
                        help="service data, worker logs, reports and the TUI log (default: the services' state folder)")
    parser.add_argument("--keep-services", action="store_true",
                        help="leave the services the dashboard started running when it quits")
    parser.add_argument("--services", default="mysql,clickhouse", metavar="LIST",
                        help="services to start besides Redis, comma-separated, or 'none' (default: mysql,clickhouse)")
    parser.add_argument("--work-ms", type=float, default=500.0, metavar="MS",
                        help="simulated work per job of the dashboard's workers (default: 500, as in the guide)")
    parser.add_argument("--scenarios", type=Path, metavar="DIR", help="folder of scenario files for the picker")
    parser.add_argument("--refresh", type=float, default=0.5, metavar="SECONDS",
                        help="seconds between two snapshots of Redis (default: 0.5)")


def scenario_files(folder: Path | None) -> list[Path]:
    """List the picker's scenarios: the given folder, else ./scenarios, else the ones next to the package."""
    candidates = [folder] if folder is not None else [
        Path.cwd() / "scenarios",
        Path(sandbox.__file__).resolve().parent.parent / "scenarios",
    ]
    for candidate in candidates:
        if candidate.is_dir():
            return sorted(candidate.glob("*.yaml"))
    return []


def _extra_services(text: str) -> tuple[str, ...]:
    if text.strip() in ("", "none"):
        return ()
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in SERVICE_NAMES or name == "redis"]
    if unknown:
        raise UsageError(f"unknown service {', '.join(unknown)} in --services: choose from mysql, clickhouse or none")
    return names


def _default_state_dir() -> Path:
    try:
        from sandbox.services.statefile import default_state_dir
    except ImportError:
        return Path(".rq-sandbox")
    return default_state_dir()


@contextlib.contextmanager
def log_to_file(path: Path):
    """Send every log record to `path` while the screen is up; a terminal handler would draw over it."""
    root = logging.getLogger()
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    streams = [h for h in root.handlers if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)]
    level = root.level
    for stream in streams:
        root.removeHandler(stream)
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        for stream in streams:
            root.addHandler(stream)


def build_stack(args: argparse.Namespace):
    from sandbox.tui.stack import Stack, StackOptions, make_backend

    redis_url = args.redis_url or redisconn.redis_url_from_env(os.environ)
    if args.keep_services and redis_url:
        logger.info("--keep-services keeps only the services the dashboard starts; Redis is external")
    if redis_url:
        redisconn.validate_url(redis_url)
    if not 1 <= args.workers <= 64:
        raise UsageError(f"invalid worker count {args.workers}: use 1 to 64")
    if args.refresh < 0.05:
        raise UsageError(f"invalid refresh {args.refresh:g} s: use 0.05 or more")

    state_dir = (args.state_dir or _default_state_dir()).expanduser()
    options = StackOptions(
        redis_url=redis_url,
        backend=args.backend,
        workers=args.workers,
        mode=args.mode,
        state_dir=state_dir / "tui",
        keep_services=args.keep_services,
        extra_services=_extra_services(args.services),
        work_ms=args.work_ms,
    )
    return Stack(options, backend=make_backend(args.backend, state_dir))


def run_tui(args: argparse.Namespace) -> int:
    """Start the stack, run the dashboard, then stop what was started; returns the exit code."""
    stack = build_stack(args)
    scenarios = scenario_files(args.scenarios)
    log_path = stack.options.state_dir / LOG_NAME

    with log_to_file(log_path):
        logger.info("Dashboard starting (state in %s)", stack.options.state_dir)
        try:
            stack.start()
            from sandbox.tui.app import SandboxApp

            app = SandboxApp(stack, scenarios, refresh_s=args.refresh, handle_signals=True)
            try:
                app.run()
            finally:
                app.shutdown()
        finally:
            stack.stop()
            logger.info("Dashboard stopped")

    if stack.options.keep_services and stack.started:
        print(f"rq-sandbox: left running: {', '.join(sorted(stack.started))}; Redis at {mask_url(stack.redis_url)}",
              file=sys.stderr)
    return int(app.return_code or ExitCode.OK)
