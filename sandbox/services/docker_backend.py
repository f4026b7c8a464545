"""The stack as Docker containers, driven through the `docker` SDK (Docker or Podman's API)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import docker
import docker.errors
import requests

from sandbox.services import health
from sandbox.services.base import PROJECT_LABEL, STACK_DATABASE, STACK_PASSWORD, STACK_USER, ServiceError
from sandbox.services.base import ServiceStatus, State
from sandbox.services.ports import LOCALHOST, port_in_use
from sandbox.services.spec import ServiceSpec, load_specs, parse_duration

logger = logging.getLogger(__name__)

#: Value of PROJECT_LABEL on every container and volume this backend creates.
PROJECT = "rq-sandbox"

#: Label naming the compose service a container runs.
SERVICE_LABEL = "io.rq-sandbox.service"

#: Prefix of named volumes, the one `docker compose` uses for the compose file's `name:`.
VOLUME_PREFIX = f"{PROJECT}_"

#: Seconds a container gets to stop before the engine kills it.
STOP_TIMEOUT = 10

#: Seconds between two health checks while waiting for services to come up.
POLL_INTERVAL = 0.25

#: Seconds after a start during which a failing check means "starting", not "unhealthy".
STARTUP_GRACE = 60.0

#: Log lines quoted when a container exits while it should be coming up.
LOG_TAIL_LINES = 10

STATE_FILE = "docker-services.json"

#: Called while an image is pulled: image, layers done, layers seen so far.
PullProgress = Callable[[str, int, int], None]


def container_name(service: str) -> str:
    return f"{PROJECT}-{service}"


def _first_line(text: object) -> str:
    lines = str(text).strip().splitlines()
    return lines[0].strip() if lines else ""


def _nanoseconds(value: object, where: str) -> int:
    return int(parse_duration(value, where) * 1_000_000_000)


def engine_healthcheck(spec: ServiceSpec) -> dict | None:
    """Convert the compose healthcheck to the Docker API's form (durations in nanoseconds)."""
    check = spec.healthcheck
    if check is None:
        return None
    test = check["test"]
    converted: dict = {"test": ["CMD-SHELL", test] if isinstance(test, str) else list(test)}
    for key in ("interval", "timeout", "start_period"):
        if key in check:
            converted[key] = _nanoseconds(check[key], f"{spec.name}.healthcheck.{key}")
    if "retries" in check:
        converted["retries"] = check["retries"]
    return converted


class PullTracker:
    """Counts an image pull's layers from the engine's progress events."""

    DONE = ("Pull complete", "Already exists")

    def __init__(self) -> None:
        self.layers: dict[str, str] = {}
        self._reported = (0, 0)

    @property
    def done(self) -> int:
        return sum(1 for state in self.layers.values() if state in self.DONE)

    @property
    def total(self) -> int:
        return len(self.layers)

    def feed(self, event: dict) -> bool:
        """Take one event; True when the layer counts changed since the last report."""
        # Layer events carry a progressDetail; the image-wide ones ("Pulling from",
        # "Digest", "Status") do not, and share no id with a layer.
        if event.get("id") and "progressDetail" in event and event.get("status"):
            self.layers[event["id"]] = event["status"]
        counts = (self.done, self.total)
        if counts == self._reported:
            return False
        self._reported = counts
        return True


class EngineUnavailable(ServiceError):
    """No Docker engine responds at the address the client uses."""


def _endpoint(client: docker.DockerClient | None) -> str:
    if client is None:
        return os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    # The SDK rewrites unix:// URLs to http+docker://localhost and keeps the socket path
    # on its adapter; the path is what a user recognises in an error.
    adapter = getattr(client.api, "_custom_adapter", None)
    socket_path = getattr(adapter, "socket_path", None)
    return f"unix://{socket_path}" if socket_path else str(client.api.base_url)


def unreachable(endpoint: str, exc: BaseException) -> EngineUnavailable:
    """Build a one-line error: why the engine at `endpoint` did not respond, and what to do."""
    text = str(exc)
    if "No such file or directory" in text or "FileNotFoundError" in text:
        reason = "the socket does not exist"
        advice = "start Docker, or Podman with scripts/podman-setup.sh, or point DOCKER_HOST at a running engine"
    elif "Permission denied" in text or "PermissionError" in text:
        reason = "permission denied on the socket"
        advice = "add your user to the docker group (then log in again) or point DOCKER_HOST at a socket you may use"
    elif "Connection refused" in text:
        reason = "connection refused"
        advice = "start the Docker engine, or point DOCKER_HOST at a running one"
    else:
        reason = _first_line(text) or type(exc).__name__
        advice = "check that the engine runs and that DOCKER_HOST (or the docker context) is right"
    return EngineUnavailable(f"Docker engine not reachable at {endpoint}: {reason}; {advice}")


class DockerBackend:
    """Runs the compose file's services as labelled containers named ``rq-sandbox-<service>``."""

    name = "docker"

    def __init__(
        self,
        state_dir: Path,
        compose_path: Path | None = None,
        client: docker.DockerClient | None = None,
        pull: bool = True,
        host_ports: dict[str, int] | None = None,
        on_pull: PullProgress | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.specs = load_specs(compose_path, host_ports=host_ports)
        self.pull = pull
        self.on_pull = on_pull
        self._client = client
        self._checked = False

    # --- engine -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _engine_errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except ServiceError:
            raise
        except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
            if isinstance(exc, docker.errors.APIError):
                detail = exc.explanation or exc
                raise ServiceError(f"{action}: {_first_line(detail)}") from None
            raise unreachable(_endpoint(self._client), exc) from None

    @property
    def client(self) -> docker.DockerClient:
        return self.connect()

    def connect(self) -> docker.DockerClient:
        """Return the SDK client once the engine responds to a ping; raise EngineUnavailable otherwise."""
        if self._client is None:
            try:
                self._client = docker.from_env()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                raise unreachable(_endpoint(None), exc) from None
        if not self._checked:
            try:
                self._client.ping()
            except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
                raise unreachable(_endpoint(self._client), exc) from None
            self._checked = True
        return self._client

    def _spec(self, name: str) -> ServiceSpec:
        try:
            return self.specs[name]
        except KeyError:
            known = ", ".join(self.specs)
            raise ServiceError(f"unknown service {name!r}: the compose file has {known}") from None

    # --- images -------------------------------------------------------------------------

    def ensure_image(self, spec: ServiceSpec) -> None:
        """Make the service's image present locally, pulling it when allowed."""
        with self._engine_errors(f"cannot look up image {spec.image}"):
            try:
                self.client.images.get(spec.image)
                return
            except docker.errors.ImageNotFound:
                pass

        if not self.pull:
            raise ServiceError(
                f"image {spec.image} not found locally and pulling is off: docker pull {spec.image}"
            )
        self._pull(spec.image)

    def _pull(self, image: str) -> None:
        name, _, tag = image.rpartition(":")
        if not name or "/" in tag:
            name, tag = image, "latest"
        tracker = PullTracker()
        logger.info("Pulling image %s", image)

        with self._engine_errors(f"cannot pull image {image}"):
            for event in self.client.api.pull(name, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ServiceError(f"cannot pull image {image}: {_first_line(event['error'])}")
                if tracker.feed(event):
                    logger.info("Pulling %s: %d/%d layers done", image, tracker.done, tracker.total)
                    if self.on_pull is not None:
                        self.on_pull(image, tracker.done, tracker.total)
        logger.info("Pulled image %s", image)

    # --- containers ---------------------------------------------------------------------

    def _lookup(self, name: str):
        with self._engine_errors(f"cannot look up container {container_name(name)}"):
            try:
                return self.client.containers.get(container_name(name))
            except docker.errors.NotFound:
                return None

    def _find(self, name: str):
        """Return the service's container or None; raise ServiceError when an unlabelled container has its name."""
        self._spec(name)
        container = self._lookup(name)
        if container is not None and not _owned(container):
            raise ServiceError(_foreign(container))
        return container

    def _matches(self, container, spec: ServiceSpec) -> bool:
        image = self.client.images.get(spec.image)
        expected = {f"{p.container_port}/tcp": (p.host_ip, str(p.host_port)) for p in spec.ports}
        bound = container.attrs.get("HostConfig", {}).get("PortBindings") or {}
        have = {key: (b[0].get("HostIp") or "", b[0].get("HostPort") or "") for key, b in bound.items() if b}
        return container.image.id == image.id and have == expected

    def _volumes(self, spec: ServiceSpec) -> dict[str, dict]:
        mounts = {}
        for entry in spec.volumes:
            source, _, target = entry.partition(":")
            target, _, mode = target.partition(":")
            if "/" not in source and not source.startswith((".", "~")):
                source = self._named_volume(source)
            else:
                source = str(Path(source).expanduser().resolve())
            mounts[source] = {"bind": target, "mode": mode or "rw"}
        return mounts

    def _named_volume(self, short: str) -> str:
        full = VOLUME_PREFIX + short
        try:
            self.client.volumes.get(full)
        except docker.errors.NotFound:
            self.client.volumes.create(full, labels={PROJECT_LABEL: PROJECT})
        return full

    def _create(self, spec: ServiceSpec):
        with self._engine_errors(f"cannot create container {container_name(spec.name)}"):
            container = self.client.containers.create(
                spec.image,
                command=spec.command,
                name=container_name(spec.name),
                environment=spec.environment,
                ports={f"{p.container_port}/tcp": (p.host_ip, p.host_port) for p in spec.ports},
                volumes=self._volumes(spec),
                healthcheck=engine_healthcheck(spec),
                labels={PROJECT_LABEL: PROJECT, SERVICE_LABEL: spec.name},
            )
        logger.info("Created container %s (%s)", container.name, container.short_id)
        return container

    def _start(self, spec: ServiceSpec):
        """Create or reuse the service's container and have it running."""
        self.ensure_image(spec)
        container = self._find(spec.name)
        with self._engine_errors(f"cannot inspect container {container_name(spec.name)}"):
            if container is not None and not self._matches(container, spec):
                logger.info("Container %s differs from the compose file; recreating it", container.name)
                self._remove(container)
                container = None
        if container is not None and container.status == "running":
            logger.info("Reusing running container %s", container.name)
            return container

        for binding in spec.ports:
            if port_in_use(binding.host_port, binding.host_ip):
                raise ServiceError(
                    f"{spec.name}: port {binding.host_ip}:{binding.host_port} is taken by another process; "
                    "stop it or give the service another host port"
                )
        if container is None:
            container = self._create(spec)
        with self._engine_errors(f"cannot start container {container.name}"):
            container.start()
            container.reload()
        logger.info("Started container %s", container.name)
        return container

    def _remove(self, container) -> None:
        # The single place that stops or removes anything: it checks the label itself.
        if not _owned(container):
            raise ServiceError(_foreign(container))
        with self._engine_errors(f"cannot remove container {container.name}"):
            if container.status == "running":
                container.stop(timeout=STOP_TIMEOUT)
            container.remove(force=True)
        logger.info("Removed container %s", container.name)

    # --- health -------------------------------------------------------------------------

    def credentials(self, name: str) -> tuple[str | None, str | None, str | None]:
        """User, password and database the compose file gives the service."""
        spec = self._spec(name)
        env = spec.environment
        if name == "redis":
            command = spec.command or []
            password = command[command.index("--requirepass") + 1] if "--requirepass" in command[:-1] else None
            return None, password, None
        if name == "mysql":
            return env.get("MYSQL_USER", STACK_USER), env.get("MYSQL_PASSWORD", STACK_PASSWORD), env.get(
                "MYSQL_DATABASE", STACK_DATABASE
            )
        if name == "clickhouse":
            return env.get("CLICKHOUSE_USER", STACK_USER), env.get("CLICKHOUSE_PASSWORD", STACK_PASSWORD), env.get(
                "CLICKHOUSE_DB", STACK_DATABASE
            )
        return None, None, None

    def check(self, name: str, port: int) -> tuple[bool, str]:
        """Speak the service's protocol to its published port."""
        user, password, database = self.credentials(name)
        if name == "redis":
            return health.check_redis(LOCALHOST, port, password=password)
        if name == "mysql":
            return health.check_mysql(LOCALHOST, port, user, password, database)
        if name == "clickhouse":
            return health.check_clickhouse(LOCALHOST, port, user, password)
        return True, ""

    def published_ports(self, name: str) -> dict[int, int]:
        """Container port to host port, as the engine publishes them now."""
        container = self._find(name)
        if container is None:
            return {}
        return self._ports_of(container)

    @staticmethod
    def _ports_of(container) -> dict[int, int]:
        published = container.attrs.get("NetworkSettings", {}).get("Ports") or {}
        return {
            int(key.split("/")[0]): int(bindings[0]["HostPort"])
            for key, bindings in published.items()
            if bindings and bindings[0].get("HostPort")
        }

    def _status_of(self, name: str, container) -> ServiceStatus:
        spec = self._spec(name)
        main = spec.port
        status = ServiceStatus(name=name, backend=self.name, state=State.STOPPED)
        if container is None:
            status.detail = "no container"
            status.port = main.host_port if main else None
            return status

        status.container_id = container.id
        state = container.attrs.get("State", {})
        ports = self._ports_of(container)
        status.port = ports.get(main.container_port) if main else None
        status.url = self.connection_url(name, port=status.port)
        started = state.get("StartedAt") or ""
        status.started_at = _epoch(started)

        if container.status != "running":
            code = state.get("ExitCode", 0)
            status.state = State.STOPPED if code == 0 else State.UNHEALTHY
            status.detail = f"container {container.status}, exit code {code}"
            return status

        ok, error = self.check(name, status.port) if status.port else (False, "no published port")
        if ok:
            status.state = State.HEALTHY
        else:
            young = status.started_at is not None and time.time() - status.started_at < STARTUP_GRACE
            status.state = State.STARTING if young else State.UNHEALTHY
            status.detail = error
        return status

    # --- the Backend interface ----------------------------------------------------------

    def up(self, names: list[str], timeout: float = 60.0) -> list[ServiceStatus]:
        """Start (or reuse) the services, then wait until every one passes its check."""
        started = {name: self._start(self._spec(name)) for name in names}
        deadline = time.monotonic() + timeout

        statuses = []
        for name, container in started.items():
            statuses.append(self._wait_healthy(name, container, deadline, timeout))
        self._save(statuses)
        return statuses

    def _wait_healthy(self, name: str, container, deadline: float, timeout: float) -> ServiceStatus:
        while True:
            with self._engine_errors(f"cannot inspect container {container.name}"):
                container.reload()
            status = self._status_of(name, container)
            if status.state == State.HEALTHY:
                logger.info("Service %s healthy on port %s", name, status.port)
                return status
            if container.status not in ("running", "created"):
                code = container.attrs.get("State", {}).get("ExitCode")
                tail = self._tail(container)
                raise ServiceError(f"{name}: container exited with code {code} before its check passed; last log: {tail}")
            if time.monotonic() >= deadline:
                raise ServiceError(f"{name}: not healthy after {timeout:.0f} s: {status.detail}")
            time.sleep(POLL_INTERVAL)

    def _tail(self, container) -> str:
        with contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException):
            lines = container.logs(tail=LOG_TAIL_LINES).decode("utf-8", errors="replace").splitlines()
            return " | ".join(line.strip() for line in lines if line.strip()) or "(empty)"
        return "(unavailable)"

    def down(self, names: list[str]) -> list[ServiceStatus]:
        """Stop and remove the services' labelled containers; volumes keep the data."""
        statuses = []
        for name in names:
            self._spec(name)
            container = self._lookup(name)
            status = self._status_of(name, None)
            if container is not None and not _owned(container):
                logger.warning("Leaving %s alone: it lacks label %s=%s", container.name, PROJECT_LABEL, PROJECT)
                status.detail = _foreign(container)
            elif container is not None:
                self._remove(container)
            statuses.append(status)
        self._save(statuses)
        return statuses

    def status(self, names: list[str]) -> list[ServiceStatus]:
        """Report each service from the engine and its health check; UNAVAILABLE when the engine is unreachable."""
        try:
            self.connect()
        except ServiceError as exc:
            return [ServiceStatus(name, self.name, State.UNAVAILABLE, detail=str(exc)) for name in names]

        statuses = []
        for name in names:
            try:
                statuses.append(self._status_of(name, self._find(name)))
            except ServiceError as exc:
                statuses.append(ServiceStatus(name, self.name, State.UNAVAILABLE, detail=str(exc)))
        self._save(statuses)
        return statuses

    def restart(self, name: str, timeout: float = 60.0) -> ServiceStatus:
        """Restart the service's container in place: same port, same volume."""
        container = self._find(name)
        if container is None:
            return self.up([name], timeout)[0]
        with self._engine_errors(f"cannot restart container {container.name}"):
            container.restart(timeout=STOP_TIMEOUT)
        logger.info("Restarted container %s", container.name)
        status = self._wait_healthy(name, container, time.monotonic() + timeout, timeout)
        self._save([status])
        return status

    def logs(self, name: str, tail: int = 100, follow: bool = False) -> Iterator[str]:
        """Yield the container's output line by line; with `follow`, until the caller closes the iterator."""
        container = self._find(name)
        if container is None:
            raise ServiceError(f"{name}: no container {container_name(name)} to read logs from")
        with self._engine_errors(f"cannot read logs of {container.name}"):
            stream = container.logs(stream=True, follow=follow, tail=tail)
        pending = b""
        try:
            with self._engine_errors(f"cannot read logs of {container.name}"):
                for chunk in stream:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        yield line.decode("utf-8", errors="replace").rstrip("\r")
            if pending:
                yield pending.decode("utf-8", errors="replace")
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    def connection_url(self, name: str, show_secrets: bool = False, port: int | None = None) -> str | None:
        """Return the URL a client connects to, with the password masked unless `show_secrets`."""
        spec = self._spec(name)
        if port is None:
            port = spec.port.host_port if spec.port else None
        if port is None:
            return None
        user, password, database = self.credentials(name)
        secret = quote(password or "", safe="") if show_secrets else "***"
        if name == "redis":
            auth = f":{secret}@" if password else ""
            return f"redis://{auth}{LOCALHOST}:{port}/0"
        if name == "mysql":
            return f"mysql://{quote(user or '', safe='')}:{secret}@{LOCALHOST}:{port}/{database or ''}"
        if name == "clickhouse":
            return f"http://{quote(user or '', safe='')}:{secret}@{LOCALHOST}:{port}/?database={database or ''}"
        return None

    # --- state file ---------------------------------------------------------------------

    def _save(self, statuses: list[ServiceStatus]) -> None:
        # Tools that read the state folder see the containers without querying the engine.
        # The engine remains the source of truth, so every status call rewrites this record.
        path = self.state_dir / STATE_FILE
        try:
            known = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except (OSError, ValueError):
            logger.warning("Replacing unreadable state file %s", path)
            known = {}
        for status in statuses:
            if status.container_id is None:
                known.pop(status.name, None)
            else:
                known[status.name] = {"container_id": status.container_id, "port": status.port}
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(known, indent=2, sort_keys=True), encoding="utf-8")
        except OSError as exc:
            logger.warning("Cannot write state file %s: %s", path, exc)


def _owned(container) -> bool:
    return container.labels.get(PROJECT_LABEL) == PROJECT


def _foreign(container) -> str:
    return (
        f"a container named {container.name} exists without label {PROJECT_LABEL}={PROJECT}; "
        "it is not the sandbox's, so it is left alone: rename or remove it yourself"
    )


def _epoch(timestamp: str) -> float | None:
    """Seconds since the epoch from the engine's RFC 3339 time (nanoseconds, maybe a zone)."""
    if not timestamp or timestamp.startswith("0001-"):
        return None
    text = timestamp.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(ch for ch in rest if ch.isdigit())
        zone = rest[len(digits):]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None
