"""`rq-sandbox services`: bring the stack up, down, and show where it listens."""

from __future__ import annotations

import argparse
import functools
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from sandbox.errors import ExitCode, InfrastructureError, UsageError
from sandbox.secrets import MASK, mask_url
from sandbox.services.base import SERVICE_NAMES, Backend, ServiceError, ServiceStatus, State
from sandbox.services.health import UnhealthyError
from sandbox.services.statefile import StateFile, default_state_dir

logger = logging.getLogger(__name__)

BACKENDS = ("local", "docker")

#: Seconds `up` and `restart` wait for a service to become healthy.
DEFAULT_TIMEOUT = 60.0

COLUMNS = ("NAME", "BACKEND", "STATE", "PORT", "PID", "UPTIME", "DETAIL")

#: Environment variable prefix for each service's settings.
SETTING_PREFIX = {"redis": "REDIS", "mysql": "MYSQL", "clickhouse": "CLICKHOUSE"}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `services` command group to the top-level parser's subcommands."""
    services = subparsers.add_parser("services", help="start, stop and inspect the stack (Redis, MySQL, ClickHouse)")
    actions = services.add_subparsers(dest="services_action", metavar="ACTION", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--state-dir", type=Path, metavar="DIR",
        help="where services keep data, logs and state.json (default: $RQ_SANDBOX_STATE_DIR, else ~/.local/state/rq-sandbox)",
    )
    common.add_argument(
        "--backend", choices=BACKENDS,
        help="run services as local processes or Docker containers (default: what runs them now, else local)",
    )
    names_help = f"services to act on: {', '.join(SERVICE_NAMES)} (default: all)"

    up = actions.add_parser("up", parents=[common], help="start the services (or reuse running ones) and wait until healthy")
    up.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    up.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S", help="seconds to wait for health (default 60)")
    up.set_defaults(handler=cmd_up)

    down = actions.add_parser("down", parents=[common], help="stop the services this sandbox started; data is kept")
    down.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    down.set_defaults(handler=cmd_down)

    status = actions.add_parser("status", parents=[common], help="show each service's state and the settings to connect")
    status.add_argument("names", nargs="*", metavar="NAME", help=names_help)
    status.add_argument("--json", action="store_true", help="print JSON on stdout")
    status.add_argument("--show-secrets", action="store_true", help="print passwords instead of ***")
    status.set_defaults(handler=cmd_status)

    logs = actions.add_parser("logs", parents=[common], help="print a service's log")
    logs.add_argument("name", metavar="NAME", help=f"one of {', '.join(SERVICE_NAMES)}")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    logs.add_argument("--tail", type=_count, default=100, metavar="N", help="lines from the end (default 100)")
    logs.set_defaults(handler=cmd_logs)

    restart = actions.add_parser("restart", parents=[common], help="stop and start one service on the same port")
    restart.add_argument("name", metavar="NAME", help=f"one of {', '.join(SERVICE_NAMES)}")
    restart.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="S", help="seconds to wait for health (default 60)")
    restart.set_defaults(handler=cmd_restart)
    return services


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid timeout {text!r}: use seconds, e.g. 60") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"invalid timeout {value:g}: use 0 < S <= 3600")
    return value


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"invalid line count {text!r}: use a whole number, 0 or more")
    return int(text)


# -- plumbing --------------------------------------------------------------------------


def _service_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn backend failures into the command line's one-line errors and exit codes."""

    @functools.wraps(handler)
    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except UnhealthyError as exc:
            print(f"rq-sandbox: {exc}", file=sys.stderr)
            return int(ExitCode.FAILED)
        except ServiceError as exc:
            raise InfrastructureError(str(exc)) from None
        except OSError as exc:
            raise InfrastructureError(f"{exc.filename or 'services'}: {exc.strerror or exc}") from None

    return run


def _state_dir(args: argparse.Namespace) -> Path:
    return args.state_dir if args.state_dir is not None else default_state_dir()


def _names(given: list[str]) -> list[str]:
    unknown = sorted(set(given) - set(SERVICE_NAMES))
    if unknown:
        raise UsageError(f"unknown service {', '.join(unknown)}: choose from {', '.join(SERVICE_NAMES)}")
    return [name for name in SERVICE_NAMES if not given or name in given]


def make_backend(kind: str, state_dir: Path) -> Backend:
    """Create the backend called `kind`, working in `state_dir`."""
    if kind == "docker":
        # Imported on demand: the Docker SDK and its engine are optional for the local stack.
        try:
            from sandbox.services.docker_backend import DockerBackend
        except ImportError as exc:
            raise InfrastructureError(f"the docker backend cannot be loaded ({exc}); use --backend local") from None
        return DockerBackend(state_dir=state_dir)

    from sandbox.services.local import LocalBackend

    return LocalBackend(state_dir)


def _backends(args: argparse.Namespace, names: list[str]) -> list[tuple[Backend, list[str]]]:
    """Group the services by the backend that runs them: --backend, else the state file, else local."""
    state_dir = _state_dir(args)
    if args.backend is not None:
        return [(make_backend(args.backend, state_dir), names)]

    records = StateFile(state_dir).read()
    groups: dict[str, list[str]] = {}
    for name in names:
        record = records.get(name)
        kind = record.backend if record is not None and record.backend in BACKENDS else "local"
        groups.setdefault(kind, []).append(name)
    return [(make_backend(kind, state_dir), group) for kind, group in groups.items()]


def _ordered(statuses: list[ServiceStatus]) -> list[ServiceStatus]:
    return sorted(statuses, key=lambda status: SERVICE_NAMES.index(status.name))


# -- output ----------------------------------------------------------------------------


def format_uptime(seconds: float) -> str:
    seconds = max(0, int(seconds))
    for unit, size, sub_unit, sub_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if seconds >= size:
            return f"{seconds // size}{unit}{(seconds % size) // sub_size:02d}{sub_unit}"
    return f"{seconds}s"


def format_table(statuses: list[ServiceStatus], now: float | None = None) -> str:
    now = time.time() if now is None else now
    rows = [COLUMNS]
    for status in statuses:
        rows.append((
            status.name,
            status.backend,
            status.state.value,
            str(status.port) if status.port is not None else "-",
            str(status.pid) if status.pid is not None else (status.container_id or "-")[:12],
            format_uptime(now - status.started_at) if status.started_at else "-",
            status.detail,
        ))
    widths = [max(len(row[column]) for row in rows) for column in range(len(COLUMNS) - 1)]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows)
    return "".join(line.rstrip() + "\n" for line in lines)


def settings_for(name: str, url: str, show_secrets: bool) -> dict[str, str]:
    """Return the variables a developer sets to reach `name` at `url` (an unmasked URL)."""
    prefix = SETTING_PREFIX[name]
    parts = urlsplit(url)
    password = unquote(parts.password or "")
    settings = {
        f"{prefix}_URL": url if show_secrets else mask_url(url),
        f"{prefix}_HOST": parts.hostname or "",
        f"{prefix}_PORT": str(parts.port or ""),
    }
    if parts.username:
        settings[f"{prefix}_USER"] = unquote(parts.username)
    settings[f"{prefix}_PASSWORD"] = password if show_secrets or not password else MASK
    # MySQL names the database in the path, ClickHouse in the query; Redis's path is a db number.
    database = parts.path.strip("/") if name == "mysql" else parse_qs(parts.query).get("database", [""])[0]
    if database:
        settings[f"{prefix}_DATABASE"] = database
    return settings


def _collect(args: argparse.Namespace, names: list[str]) -> tuple[list[ServiceStatus], dict[str, str]]:
    statuses: list[ServiceStatus] = []
    settings: dict[str, str] = {}
    for backend, group in _backends(args, names):
        group_statuses = backend.status(group)
        statuses.extend(group_statuses)
        # Settings only for services that run: a URL to a stopped or unavailable one points at nothing.
        running = {status.name for status in group_statuses if status.state in (State.HEALTHY, State.STARTING, State.UNHEALTHY)}
        for name in group:
            if name not in running:
                continue
            url = backend.connection_url(name, show_secrets=True)
            if url:
                settings.update(settings_for(name, url, getattr(args, "show_secrets", False)))
    return _ordered(statuses), settings


def _print_report(statuses: list[ServiceStatus], settings: dict[str, str]) -> None:
    sys.stdout.write(format_table(statuses))
    if settings:
        sys.stdout.write("\n" + "".join(f"{key}={value}\n" for key, value in settings.items()))


# -- commands --------------------------------------------------------------------------


@_service_errors
def cmd_up(args: argparse.Namespace) -> int:
    names = _names(args.names)
    results: list[ServiceStatus] = []
    for backend, group in _backends(args, names):
        results.extend(backend.up(group, timeout=args.timeout))

    statuses, settings = _collect(args, names)
    _print_report(statuses, settings)
    unhealthy = [status.name for status in results if status.state is not State.HEALTHY]
    if unhealthy:
        print(f"rq-sandbox: not healthy: {', '.join(unhealthy)}", file=sys.stderr)
        return int(ExitCode.FAILED)
    return int(ExitCode.OK)


@_service_errors
def cmd_down(args: argparse.Namespace) -> int:
    names = _names(args.names)
    statuses: list[ServiceStatus] = []
    for backend, group in _backends(args, names):
        statuses.extend(backend.down(group))
    sys.stdout.write(format_table(_ordered(statuses)))
    return int(ExitCode.OK)


@_service_errors
def cmd_status(args: argparse.Namespace) -> int:
    statuses, settings = _collect(args, _names(args.names))
    if args.json:
        payload = {"services": [status.as_dict() for status in statuses], "settings": settings}
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        _print_report(statuses, settings)
    if statuses and all(status.state is State.UNAVAILABLE for status in statuses):
        return int(ExitCode.INFRASTRUCTURE)
    return int(ExitCode.OK)


@_service_errors
def cmd_logs(args: argparse.Namespace) -> int:
    (name,) = _names([args.name])
    ((backend, _),) = _backends(args, [name])
    for line in backend.logs(name, tail=args.tail, follow=args.follow):
        sys.stdout.write(line + "\n")
        if args.follow:
            sys.stdout.flush()
    return int(ExitCode.OK)


@_service_errors
def cmd_restart(args: argparse.Namespace) -> int:
    (name,) = _names([args.name])
    ((backend, _),) = _backends(args, [name])
    result = backend.restart(name, timeout=args.timeout)

    statuses, settings = _collect(args, [name])
    _print_report(statuses, settings)
    return int(ExitCode.OK if result.state is State.HEALTHY else ExitCode.FAILED)
