"""The compose file, its specs and the Docker backend, run against a real Podman engine."""

from __future__ import annotations

import queue
import socket
import threading
import time
from pathlib import Path

import docker
import pymysql
import pytest
import redis
import yaml

import podman
from sandbox.services import health
from sandbox.services.base import PROJECT_LABEL, SERVICE_NAMES, ServiceError, State
from sandbox.services.docker_backend import (
    DockerBackend,
    PullTracker,
    container_name,
    engine_healthcheck,
    unreachable,
)
from sandbox.services.ports import LOCALHOST, free_port
from sandbox.services.spec import DEFAULT_COMPOSE_PATH, PortBinding, SpecError, load_specs

#: Seconds a whole stack may take to become healthy on a 2-core machine.
UP_TIMEOUT = 120.0

#: Seconds to wait for a log line or a state to show up.
WAIT = 20.0

#: The line each server logs once it accepts connections.
START_LINES = {
    "redis": "Ready to accept connections",
    "mysql": "ready for connections",
    "clickhouse": "Ready for connections",
}

FOREIGN_NAME = "someone-elses-redis"
VOLUMES = ["rq-sandbox_redis-data", "rq-sandbox_mysql-data", "rq-sandbox_clickhouse-data"]


def wait_for(predicate, timeout: float = WAIT, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# --- the compose file and its specs (no engine needed) -------------------------------


def test_compose_images_and_loopback_ports():
    specs = load_specs()

    assert list(specs) == list(SERVICE_NAMES)
    assert specs["redis"].image == "redis:7.2.4-alpine3.19"
    assert specs["redis"].command == ["redis-server", "--requirepass", "opik"]
    assert specs["mysql"].image == "mysql:8.4.2"
    assert specs["mysql"].environment == {
        "MYSQL_ROOT_PASSWORD": "opik",
        "MYSQL_DATABASE": "opik",
        "MYSQL_USER": "opik",
        "MYSQL_PASSWORD": "opik",
    }
    assert specs["clickhouse"].image.startswith("clickhouse/clickhouse-server:26.")
    assert specs["clickhouse"].image.endswith("-alpine")
    assert specs["clickhouse"].environment["CLICKHOUSE_USER"] == "opik"
    assert specs["redis"].ports == [PortBinding("127.0.0.1", 6379, 6379)]
    assert specs["mysql"].ports == [PortBinding("127.0.0.1", 3306, 3306)]
    assert specs["clickhouse"].ports == [PortBinding("127.0.0.1", 8123, 8123)]
    for spec in specs.values():
        assert spec.healthcheck is not None
        assert spec.healthcheck["test"][0] in ("CMD", "CMD-SHELL")
        assert len(spec.volumes) == 1
        assert not spec.volumes[0].startswith(("/", "."))


def test_compose_names_and_labels_match_backend():
    document = yaml.safe_load(DEFAULT_COMPOSE_PATH.read_text(encoding="utf-8"))

    assert document["name"] == "rq-sandbox"
    for name, service in document["services"].items():
        assert service["container_name"] == container_name(name)
        assert service["labels"] == {PROJECT_LABEL: "rq-sandbox"}
        volume = service["volumes"][0].split(":")[0]
        assert volume in document["volumes"]


def test_host_ports_override_moves_only_the_main_port():
    specs = load_specs(host_ports={"redis": 16380})

    assert specs["redis"].ports == [PortBinding("127.0.0.1", 16380, 6379)]
    assert specs["mysql"].ports == [PortBinding("127.0.0.1", 3306, 3306)]


def test_engine_healthcheck_is_in_nanoseconds():
    check = engine_healthcheck(load_specs()["mysql"])

    assert check == {
        "test": ["CMD", "mysqladmin", "ping", "-h", "127.0.0.1", "--silent"],
        "interval": 2_000_000_000,
        "timeout": 4_000_000_000,
        "retries": 60,
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("services: [redis", "line 1: not valid YAML"),
        ("version: '3'\n", "services: expected a mapping of service names"),
        ("services:\n  redis:\n    command: redis-server\n", "services.redis.image: missing image name"),
        ("services:\n  redis:\n    image: r\n    ports: ['127.0.0.1:abc:6379']\n", "services.redis.ports[0]: invalid port 'abc'"),
        ("services:\n  redis:\n    image: r\n    volumes: ['data:/data']\n", "named volume 'data' is not declared"),
        (
            "services:\n  redis:\n    image: r\n    healthcheck: {test: [CMD, x], interval: soon}\n",
            "services.redis.healthcheck.interval: 'soon' is not a duration",
        ),
        ("services:\n  redis:\n    image: r\n    environment: [NOEQUALS]\n", "services.redis.environment[0]"),
    ],
)
def test_malformed_compose_file_names_file_and_key(tmp_path, text, message):
    path = tmp_path / "compose.yaml"
    path.write_text(text, encoding="utf-8")

    with pytest.raises(SpecError) as caught:
        load_specs(path)

    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_compose_file_is_one_line(tmp_path):
    with pytest.raises(SpecError, match=r"absent\.yaml: cannot read the compose file: No such file"):
        load_specs(tmp_path / "absent.yaml")


def test_unknown_service_for_host_port_is_refused():
    with pytest.raises(SpecError, match="no service 'postgres'"):
        load_specs(host_ports={"postgres": 5432})


def test_pull_progress_counts_layers():
    events = [
        {"status": "Pulling from library/redis", "id": "7.2.4-alpine3.19"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "aaa"},
        {"status": "Pulling fs layer", "progressDetail": {}, "id": "bbb"},
        {"status": "Downloading", "progressDetail": {"current": 5, "total": 10}, "id": "aaa"},
        {"status": "Pull complete", "progressDetail": {}, "id": "aaa"},
        {"status": "Already exists", "progressDetail": {}, "id": "bbb"},
        {"status": "Digest: sha256:0123"},
    ]
    tracker = PullTracker()

    reports = [(tracker.done, tracker.total) for event in events if tracker.feed(event)]

    assert reports == [(0, 1), (0, 2), (1, 2), (2, 2)]


@pytest.mark.parametrize(
    ("error", "reason", "advice"),
    [
        (PermissionError(13, "Permission denied"), "permission denied on the socket", "docker group"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused", "start the Docker engine"),
        (FileNotFoundError(2, "No such file or directory"), "the socket does not exist", "podman-setup.sh"),
    ],
)
def test_unreachable_engine_message_says_what_to_do(error, reason, advice):
    message = str(unreachable("unix:///run/docker.sock", error))

    assert message.startswith(f"Docker engine not reachable at unix:///run/docker.sock: {reason}; ")
    assert advice in message


# --- an engine that is not there (no engine needed either) -----------------------------


def test_docker_host_missing_socket(tmp_path, monkeypatch):
    missing = tmp_path / "missing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")
    backend = DockerBackend(tmp_path / "state", pull=False)

    with pytest.raises(ServiceError) as caught:
        backend.up(["redis"], timeout=5)

    message = str(caught.value)
    assert message.startswith(f"Docker engine not reachable at unix://{missing}: the socket does not exist; ")
    assert "\n" not in message

    statuses = backend.status(list(SERVICE_NAMES))
    assert [status.state for status in statuses] == [State.UNAVAILABLE] * 3
    assert all(status.detail == message for status in statuses)


def test_client_on_socket_nobody_listens_on_is_refused(tmp_path):
    # A bound but never listening socket leaves the file in place and refuses connections.
    path = tmp_path / "dead.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    try:
        # An explicit API version keeps the SDK from asking the engine while constructing.
        client = docker.DockerClient(base_url=f"unix://{path}", version="1.41")
        backend = DockerBackend(tmp_path / "state", client=client, pull=False)

        statuses = backend.status(["redis"])
        with pytest.raises(ServiceError) as caught:
            list(backend.logs("redis"))
    finally:
        dead.close()

    assert statuses[0].state == State.UNAVAILABLE
    assert statuses[0].detail.startswith(f"Docker engine not reachable at unix://{path}: connection refused; ")
    assert str(caught.value) == statuses[0].detail


# --- a real engine ------------------------------------------------------------------


@pytest.fixture(scope="session")
def engine():
    running = podman.start_engine()
    yield running
    podman.stop_engine(running)


@pytest.fixture(scope="module")
def client(engine):
    sdk = engine.client()
    names = [container_name(name) for name in SERVICE_NAMES] + [FOREIGN_NAME]
    podman.remove_containers(sdk, names)
    yield sdk
    podman.remove_containers(sdk, names)
    podman.remove_volumes(sdk, VOLUMES)
    sdk.close()


@pytest.fixture(scope="module")
def ports():
    return {name: free_port() for name in SERVICE_NAMES}


@pytest.fixture(scope="module")
def backend(client, ports, tmp_path_factory):
    return DockerBackend(tmp_path_factory.mktemp("docker-state"), client=client, pull=False, host_ports=ports)


@pytest.fixture(scope="module")
def stack(backend):
    return {status.name: status for status in backend.up(list(SERVICE_NAMES), timeout=UP_TIMEOUT)}


def test_up_healthy_on_chosen_ports(stack, ports, client):
    for name in SERVICE_NAMES:
        status = stack[name]
        assert status.state == State.HEALTHY
        assert status.port == ports[name]
        assert status.backend == "docker"
        container = client.containers.get(container_name(name))
        assert container.id == status.container_id
        assert container.labels[PROJECT_LABEL] == "rq-sandbox"
        assert container.status == "running"

    assert stack["redis"].url == f"redis://:***@127.0.0.1:{ports['redis']}/0"
    assert stack["mysql"].url == f"mysql://opik:***@127.0.0.1:{ports['mysql']}/opik"
    assert stack["clickhouse"].url == f"http://opik:***@127.0.0.1:{ports['clickhouse']}/?database=opik"


def test_services_answer_with_the_stack_credentials(stack, backend, ports):
    url = backend.connection_url("redis", show_secrets=True)
    assert url == f"redis://:opik@127.0.0.1:{ports['redis']}/0"
    client = redis.Redis.from_url(url)
    client.set("rq-sandbox:test", "42")
    assert client.get("rq-sandbox:test") == b"42"
    client.close()

    connection = pymysql.connect(host=LOCALHOST, port=ports["mysql"], user="opik", password="opik", database="opik")
    with connection.cursor() as cursor:
        cursor.execute("SELECT DATABASE(), CURRENT_USER()")
        assert cursor.fetchone() == ("opik", "opik@%")
    connection.close()

    answer = health.clickhouse_request(LOCALHOST, ports["clickhouse"], "SHOW DATABASES", user="opik", password="opik")
    assert "opik" in answer.split()
    assert health.check_clickhouse(LOCALHOST, ports["clickhouse"], "opik", "wrong")[0] is False


def test_published_ports_map_container_to_host(stack, backend, ports):
    assert backend.published_ports("redis") == {6379: ports["redis"]}
    assert backend.published_ports("clickhouse") == {8123: ports["clickhouse"]}


@pytest.mark.parametrize("name", SERVICE_NAMES)
def test_logs_contain_the_server_start_line(stack, backend, name):
    lines = list(backend.logs(name, tail=200))

    assert any(START_LINES[name] in line for line in lines), lines[-10:]
    assert all("\n" not in line for line in lines)


def test_logs_tail_limits_the_lines(stack, backend):
    assert len(list(backend.logs("mysql", tail=3))) == 3


def test_logs_follow_yields_lines_written_later(stack, backend, ports):
    found: queue.Queue[str] = queue.Queue()

    def follow():
        lines = backend.logs("redis", tail=0, follow=True)
        for line in lines:
            if "Background saving started" in line:
                found.put(line)
                break
        lines.close()

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    client = redis.Redis(host=LOCALHOST, port=ports["redis"], password="opik")

    def saved():
        # The reader may attach after the first save; another save logs the line again.
        try:
            client.bgsave()
        except redis.ResponseError:
            pass
        try:
            return found.get(timeout=1.0)
        except queue.Empty:
            return None

    line = wait_for(saved, timeout=WAIT, interval=0)
    client.close()
    reader.join(timeout=WAIT)

    assert line is not None and "Background saving started" in line
    assert not reader.is_alive()


def test_up_again_reuses_the_running_containers(stack, backend):
    again = {status.name: status for status in backend.up(list(SERVICE_NAMES), timeout=UP_TIMEOUT)}

    for name in SERVICE_NAMES:
        assert again[name].container_id == stack[name].container_id
        assert again[name].state == State.HEALTHY


def test_restart_keeps_port_container_and_data(stack, backend, ports):
    client = redis.Redis(host=LOCALHOST, port=ports["redis"], password="opik")
    client.set("rq-sandbox:kept", "yes")
    client.close()

    status = backend.restart("redis", timeout=UP_TIMEOUT)

    assert status.state == State.HEALTHY
    assert status.port == ports["redis"]
    assert status.container_id == stack["redis"].container_id
    assert status.started_at > stack["redis"].started_at
    client = redis.Redis(host=LOCALHOST, port=ports["redis"], password="opik")
    assert client.get("rq-sandbox:kept") == b"yes"
    client.close()


def test_status_reports_a_container_stopped_behind_its_back(stack, backend, client):
    client.containers.get(container_name("clickhouse")).stop(timeout=5)

    status = backend.status(["clickhouse"])[0]

    assert status.state in (State.STOPPED, State.UNHEALTHY)
    assert "exit code" in status.detail
    assert backend.up(["clickhouse"], timeout=UP_TIMEOUT)[0].state == State.HEALTHY


def test_down_removes_only_labelled_containers(stack, backend, client):
    # The same image and a Redis inside, but published nowhere and without the label.
    foreign = client.containers.run("redis:7.2.4-alpine3.19", ["redis-server"], name=FOREIGN_NAME, detach=True)
    try:
        foreign.reload()
        assert foreign.status == "running"
        statuses = backend.down(list(SERVICE_NAMES))

        assert [status.state for status in statuses] == [State.STOPPED] * 3
        for name in SERVICE_NAMES:
            with pytest.raises(docker.errors.NotFound):
                client.containers.get(container_name(name))
        foreign.reload()
        assert foreign.status == "running"
        assert [status.state for status in backend.status(list(SERVICE_NAMES))] == [State.STOPPED] * 3
    finally:
        foreign.remove(force=True)


def test_unlabelled_namesake_left_alone(stack, backend, client):
    backend.down(["redis"])
    impostor = client.containers.create("redis:7.2.4-alpine3.19", name=container_name("redis"))
    try:
        with pytest.raises(ServiceError, match="exists without label io.rq-sandbox.project=rq-sandbox"):
            backend.up(["redis"], timeout=5)
        status = backend.down(["redis"])[0]

        assert "left alone" in status.detail
        impostor.reload()
        assert impostor.name == container_name("redis")
    finally:
        impostor.remove(force=True)


def test_up_port_in_use(stack, backend, client, ports, tmp_path):
    backend.down(["redis"])
    holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    holder.bind((LOCALHOST, 0))
    holder.listen()
    held_port = holder.getsockname()[1]
    try:
        blocked = DockerBackend(tmp_path, client=client, pull=False, host_ports={"redis": held_port})
        with pytest.raises(ServiceError, match=f"port 127.0.0.1:{held_port} is taken by another process"):
            blocked.up(["redis"], timeout=5)
    finally:
        holder.close()

    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container_name("redis"))


def test_up_exited_container_quotes_its_log(stack, backend, client, tmp_path):
    backend.down(["redis"])
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        "services:\n  redis:\n    image: redis:7.2.4-alpine3.19\n"
        f"    command: [redis-server, --no-such-directive, x]\n    ports: ['127.0.0.1:{free_port()}:6379']\n",
        encoding="utf-8",
    )
    broken = DockerBackend(tmp_path / "state", compose_path=compose, client=client, pull=False)
    try:
        with pytest.raises(ServiceError) as caught:
            broken.up(["redis"], timeout=UP_TIMEOUT)
    finally:
        broken.down(["redis"])

    message = str(caught.value)
    assert message.startswith("redis: container exited with code 1 before its check passed; last log: ")
    assert "no-such-directive" in message
    assert "\n" not in message


def test_up_missing_image_pull_off(client, tmp_path):
    compose = tmp_path / "compose.yaml"
    compose.write_text(
        "services:\n  redis:\n    image: rq-sandbox-absent/redis:0.0.1\n    ports: ['127.0.0.1:6379:6379']\n",
        encoding="utf-8",
    )
    backend = DockerBackend(tmp_path / "state", compose_path=compose, client=client, pull=False)

    with pytest.raises(ServiceError) as caught:
        backend.up(["redis"], timeout=5)

    assert str(caught.value) == (
        "image rq-sandbox-absent/redis:0.0.1 not found locally and pulling is off: "
        "docker pull rq-sandbox-absent/redis:0.0.1"
    )
    with pytest.raises(docker.errors.NotFound):
        client.containers.get(container_name("redis"))


def test_docker_host_reaches_engine(engine, stack, tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", engine.url)
    backend = DockerBackend(tmp_path / "state", pull=False)

    statuses = backend.status(list(SERVICE_NAMES))

    assert [status.name for status in statuses] == list(SERVICE_NAMES)
    assert all(status.state != State.UNAVAILABLE for status in statuses)


def test_unknown_service_is_refused(backend):
    with pytest.raises(ServiceError, match="unknown service 'postgres'"):
        backend.up(["postgres"])


def test_scripts_are_idempotent(engine):
    again = podman._run("podman-setup.sh", podman.SETUP_TIMEOUT)

    assert again.returncode == 0
    assert Path(again.stdout.strip()) == engine.socket
    assert "already running" in again.stderr
