"""Service specs read from the project's compose file, the one source of images and settings."""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from sandbox.services.base import ServiceError
from sandbox.services.ports import LOCALHOST

#: The compose file in a source checkout; RQ_SANDBOX_COMPOSE points elsewhere.
CHECKOUT_COMPOSE_PATH = Path(__file__).resolve().parents[2] / "compose" / "docker-compose.yaml"
#: The same file as an installed wheel carries it (a symbolic link in a checkout).
INSTALLED_COMPOSE_PATH = Path(__file__).with_name("docker-compose.yaml")
DEFAULT_COMPOSE_PATH = CHECKOUT_COMPOSE_PATH if CHECKOUT_COMPOSE_PATH.exists() else INSTALLED_COMPOSE_PATH

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
_DURATION_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ServiceError):
    """The compose file is missing, is not valid YAML, or contains a setting the sandbox cannot run."""


@dataclass(frozen=True)
class PortBinding:
    """One published port: `host_ip:host_port` on the host forwards to `container_port`."""

    host_ip: str
    host_port: int
    container_port: int


@dataclass(frozen=True)
class ServiceSpec:
    """One compose service's settings, in the terms the Docker API takes."""

    name: str
    image: str
    command: list[str] | None
    environment: dict[str, str]
    ports: list[PortBinding]
    #: The compose `healthcheck` mapping as written (`test`, `interval`, ...).
    healthcheck: dict | None
    #: `source:target` strings; a source without a slash is a named volume.
    volumes: list[str] = field(default_factory=list)

    @property
    def port(self) -> PortBinding | None:
        """Return the service's main port: the first one the compose file publishes."""
        return self.ports[0] if self.ports else None


def compose_path(path: str | os.PathLike | None = None) -> Path:
    """Return the compose file to read: `path`, else RQ_SANDBOX_COMPOSE, else the checkout's own."""
    if path is not None:
        return Path(path)
    override = os.environ.get("RQ_SANDBOX_COMPOSE")
    return Path(override) if override else DEFAULT_COMPOSE_PATH


def parse_duration(text: str | int | float, where: str) -> float:
    """Convert a compose duration such as ``2s``, ``1m30s`` or ``500ms`` to seconds."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    value = str(text).strip()
    parts = _DURATION_RE.findall(value)
    if not parts or "".join(number + unit for number, unit in parts) != value:
        raise SpecError(f"{where}: {text!r} is not a duration like 2s, 500ms or 1m30s")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def _fail(where: str, problem: str) -> SpecError:
    return SpecError(f"{where}: {problem}")


def _port_number(value: Any, where: str) -> int:
    text = str(value).split("/", 1)[0]
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise _fail(where, f"invalid port {value!r}: expected a number from 1 to 65535")
    return int(text)


def _parse_port(entry: Any, where: str) -> PortBinding:
    # A port without a host address would listen on every interface; the sandbox's
    # services share well-known passwords, so they publish on the loopback only.
    if isinstance(entry, dict):
        if "target" not in entry:
            raise _fail(where, "a long-form port needs 'target'")
        container = _port_number(entry["target"], f"{where}.target")
        published = entry.get("published", container)
        return PortBinding(
            str(entry.get("host_ip", LOCALHOST)), _port_number(published, f"{where}.published"), container
        )

    if not isinstance(entry, (str, int)):
        raise _fail(where, f"expected 'host_ip:host_port:container_port', got {entry!r}")
    if str(entry).endswith("/udp"):
        raise _fail(where, "UDP ports are not supported")
    pieces = str(entry).rsplit(":", 2)
    if len(pieces) == 1:
        port = _port_number(pieces[0], where)
        return PortBinding(LOCALHOST, port, port)
    if len(pieces) == 2:
        return PortBinding(LOCALHOST, _port_number(pieces[0], where), _port_number(pieces[1], where))
    host_ip = pieces[0].strip("[]") or LOCALHOST
    return PortBinding(host_ip, _port_number(pieces[1], where), _port_number(pieces[2], where))


def _parse_environment(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return {str(key): "" if item is None else str(item) for key, item in value.items()}
    if isinstance(value, list):
        environment = {}
        for index, item in enumerate(value):
            key, sep, text = str(item).partition("=")
            if not key or not sep:
                raise _fail(f"{where}[{index}]", f"expected KEY=VALUE, got {item!r}")
            environment[key] = text
        return environment
    raise _fail(where, "expected a mapping or a list of KEY=VALUE")


def _parse_command(value: Any, where: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    if isinstance(value, list) and all(isinstance(item, (str, int, float)) for item in value):
        return [str(item) for item in value]
    raise _fail(where, "expected a string or a list of strings")


def _parse_healthcheck(value: Any, where: str) -> dict | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _fail(where, "expected a mapping with 'test'")
    if value.get("disable"):
        return None
    test = value.get("test")
    if not (isinstance(test, list) and test and test[0] in ("CMD", "CMD-SHELL", "NONE")) and not isinstance(test, str):
        raise _fail(f"{where}.test", "expected [CMD, ...], [CMD-SHELL, '...'] or a shell string")
    for key in ("interval", "timeout", "start_period"):
        if key in value:
            parse_duration(value[key], f"{where}.{key}")
    if "retries" in value and not isinstance(value["retries"], int):
        raise _fail(f"{where}.retries", "expected a whole number")
    return dict(value)


def _parse_volumes(value: Any, where: str, declared: set[str]) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise _fail(where, "expected a list of 'source:target'")
    volumes = []
    for index, item in enumerate(value):
        source, sep, target = str(item).partition(":")
        if not sep or not target.startswith("/"):
            raise _fail(f"{where}[{index}]", f"expected 'source:/container/path', got {item!r}")
        is_named = "/" not in source and not source.startswith((".", "~"))
        if is_named and source not in declared:
            raise _fail(f"{where}[{index}]", f"named volume {source!r} is not declared under top-level 'volumes'")
        volumes.append(str(item))
    return volumes


def _parse_service(name: str, body: Any, where: str, declared: set[str]) -> ServiceSpec:
    if not isinstance(body, dict):
        raise _fail(where, "expected a mapping")
    image = body.get("image")
    if not isinstance(image, str) or not image.strip():
        raise _fail(f"{where}.image", "missing image name")

    ports = body.get("ports") or []
    if not isinstance(ports, list):
        raise _fail(f"{where}.ports", "expected a list")

    return ServiceSpec(
        name=name,
        image=image.strip(),
        command=_parse_command(body.get("command"), f"{where}.command"),
        environment=_parse_environment(body.get("environment"), f"{where}.environment"),
        ports=[_parse_port(entry, f"{where}.ports[{index}]") for index, entry in enumerate(ports)],
        healthcheck=_parse_healthcheck(body.get("healthcheck"), f"{where}.healthcheck"),
        volumes=_parse_volumes(body.get("volumes"), f"{where}.volumes", declared),
    )


def with_host_port(spec: ServiceSpec, host_port: int) -> ServiceSpec:
    """Return the same service with its main port published on `host_port` instead."""
    if not spec.ports:
        raise SpecError(f"service {spec.name} publishes no port to move to {host_port}")
    moved = replace(spec.ports[0], host_port=host_port)
    return replace(spec, ports=[moved, *spec.ports[1:]])


def load_specs(
    path: str | os.PathLike | None = None, host_ports: dict[str, int] | None = None
) -> dict[str, ServiceSpec]:
    """Read every service of the compose file, moving the main port of those named in `host_ports`."""
    source = compose_path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{source}: cannot read the compose file: {exc.strerror or exc}") from None

    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError(f"{source}: {line}not valid YAML: {problem}") from None

    if not isinstance(document, dict) or not isinstance(document.get("services"), dict):
        raise SpecError(f"{source}: services: expected a mapping of service names")
    declared_volumes = document.get("volumes") or {}
    if not isinstance(declared_volumes, dict):
        raise SpecError(f"{source}: volumes: expected a mapping of volume names")

    specs = {
        str(name): _parse_service(str(name), body, f"{source}: services.{name}", set(declared_volumes))
        for name, body in document["services"].items()
    }

    for name, port in (host_ports or {}).items():
        if name not in specs:
            raise SpecError(f"{source}: services: no service {name!r} to give host port {port}")
        specs[name] = with_host_port(specs[name], port)
    return specs
