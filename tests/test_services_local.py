"""The local-process backend against real redis-server, mariadbd and clickhouse-server."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pymysql
import pytest
import redis

from sandbox.errors import SandboxError
from sandbox.services import commands
from sandbox.services.base import STACK_PASSWORD, ServiceError, State
from sandbox.services.health import UnhealthyError, clickhouse_request
from sandbox.services.local import LocalBackend
from sandbox.services.local_mysql import SYSTEM_SBIN
from sandbox.services.ports import free_port, port_in_use
from sandbox.services.statefile import ServiceRecord, StateFile, default_state_dir, pid_alive

ALL = ["redis", "mysql", "clickhouse"]


@pytest.fixture(scope="session", autouse=True)
def servers_installed():
    search = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_SBIN])
    missing = [name for name in ("mariadbd", "clickhouse-server") if shutil.which(name, path=search) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not installed: run scripts/install-services.sh", pytrace=False)


@pytest.fixture
def backend(tmp_path):
    backend = LocalBackend(tmp_path / "state", stop_timeout=10)
    yield backend
    # Whatever a test left running is stopped by pid, never by name.
    backend.down(ALL)


def _gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def _wait_until_dead(pid: int, timeout: float = 5.0) -> None:
    """Wait for a killed child to become a zombie, without reaping it: that is left to the backend."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rpartition(")")[2].split()[0] == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} still running {timeout} s after SIGKILL")


def _mysql(backend: LocalBackend) -> pymysql.connections.Connection:
    port = backend.status(["mysql"])[0].port
    return pymysql.connect(host="127.0.0.1", port=port, user="opik", password=STACK_PASSWORD, database="opik")


def _clickhouse(backend: LocalBackend, query: str) -> str:
    port = backend.status(["clickhouse"])[0].port
    return clickhouse_request("127.0.0.1", port, query, user="opik", password=STACK_PASSWORD, database="opik")


def test_up_all_three_healthy_and_queryable(backend):
    statuses = backend.up(ALL, timeout=60)

    assert [(s.name, s.state, s.backend) for s in statuses] == [(n, State.HEALTHY, "local") for n in ALL]
    assert len({s.port for s in statuses}) == 3
    assert all(pid_alive(s.pid) for s in statuses)
    assert statuses[0].url == f"redis://:***@127.0.0.1:{statuses[0].port}/0"

    client = redis.Redis.from_url(backend.connection_url("redis", show_secrets=True))
    client.set("greeting", "hello")
    assert client.get("greeting") == b"hello"
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=statuses[0].port, password="wrong").ping()

    with _mysql(backend) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE jobs (id INT PRIMARY KEY, origin VARCHAR(32))")
        cursor.execute("INSERT INTO jobs VALUES (1, 'default'), (2, 'high')")
        connection.commit()
        cursor.execute("SELECT origin FROM jobs ORDER BY id")
        assert cursor.fetchall() == (("default",), ("high",))

    assert _clickhouse(backend, "SELECT 1").strip() == "1"
    _clickhouse(backend, "CREATE TABLE spans (id UInt32, name String) ENGINE = Memory")
    _clickhouse(backend, "INSERT INTO spans VALUES (1, 'enqueue'), (2, 'perform')")
    assert _clickhouse(backend, "SELECT count() FROM opik.spans").strip() == "2"


def test_connection_urls_are_masked_unless_asked(backend):
    backend.up(["mysql", "clickhouse"], timeout=60)
    mysql_port = backend.status(["mysql"])[0].port
    http_port = backend.status(["clickhouse"])[0].port

    assert backend.connection_url("mysql") == f"mysql://opik:***@127.0.0.1:{mysql_port}/opik"
    assert backend.connection_url("mysql", show_secrets=True) == f"mysql://opik:opik@127.0.0.1:{mysql_port}/opik"
    assert backend.connection_url("clickhouse", show_secrets=True) == f"http://opik:opik@127.0.0.1:{http_port}/?database=opik"
    assert backend.connection_url("redis") is None


def test_status_second_backend_agrees(backend):
    first = backend.up(ALL, timeout=60)

    other = LocalBackend(backend.state_dir)
    seen = other.status(ALL)
    again = other.up(ALL, timeout=60)

    assert [(s.state, s.port, s.pid) for s in seen] == [(s.state, s.port, s.pid) for s in first]
    assert [s.pid for s in again] == [s.pid for s in first]


def test_restart_keeps_port_and_data_and_changes_pid(backend):
    before = {s.name: s for s in backend.up(ALL, timeout=60)}
    redis.Redis.from_url(backend.connection_url("redis", show_secrets=True)).set("kept", "yes")
    with _mysql(backend) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE kept (id INT)")

    for name in ALL:
        after = backend.restart(name, timeout=60)
        assert after.state is State.HEALTHY
        assert after.port == before[name].port
        assert after.pid != before[name].pid
        assert _gone(before[name].pid)

    assert redis.Redis.from_url(backend.connection_url("redis", show_secrets=True)).get("kept") == b"yes"
    with _mysql(backend) as connection, connection.cursor() as cursor:
        cursor.execute("SHOW TABLES")
        assert cursor.fetchall() == (("kept",),)


def test_down_leaves_no_process_behind(backend):
    statuses = backend.up(ALL, timeout=60)
    pids = [s.pid for s in statuses]
    ports = [s.port for s in statuses]

    stopped = backend.down(ALL)

    assert [s.state for s in stopped] == [State.STOPPED] * 3
    assert [pid for pid in pids if not _gone(pid)] == []
    assert [port for port in ports if port_in_use(port)] == []
    records = StateFile(backend.state_dir).read()
    assert [records[name].pid for name in ALL] == [None, None, None]


def test_up_configured_port_taken(tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        backend = LocalBackend(tmp_path / "state", ports={"redis": port, "clickhouse": port})

        for name in ("redis", "clickhouse"):
            with pytest.raises(ServiceError, match=rf"{name}: port {port} on 127\.0\.0\.1 is already in use"):
                backend.up([name], timeout=10)

    assert StateFile(tmp_path / "state").read() == {}


def test_missing_binary_is_unavailable(tmp_path):
    nowhere = tmp_path / "bin"
    backend = LocalBackend(
        tmp_path / "state",
        binaries={"mysql": str(nowhere / "mariadbd"), "clickhouse": str(nowhere / "clickhouse-server"),
                  "redis": str(nowhere / "redis-server")},
    )

    for statuses in (backend.status(ALL), backend.up(ALL, timeout=10)):
        assert [s.state for s in statuses] == [State.UNAVAILABLE] * 3
        details = [s.detail for s in statuses]
        assert details == [
            f"redis-server not found at {nowhere}/redis-server: apt-get install redis-server",
            f"mariadbd not found at {nowhere}/mariadbd: apt-get install mariadb-server",
            f"clickhouse-server not found at {nowhere}/clickhouse-server: apt-get install clickhouse-server",
        ]


def test_missing_install_db_is_unavailable(tmp_path, monkeypatch):
    # mariadbd is named explicitly; mariadb-install-db is searched on PATH and in the sbin folders.
    monkeypatch.setattr("sandbox.services.local_mysql.SYSTEM_SBIN", ())
    monkeypatch.setenv("PATH", str(tmp_path))
    backend = LocalBackend(tmp_path / "state", binaries={"mysql": "/usr/sbin/mariadbd"})

    (status,) = backend.status(["mysql"])

    assert status.state is State.UNAVAILABLE
    assert status.detail == "mariadb-install-db not found: apt-get install mariadb-server"


def test_status_repairs_killed_service(backend):
    (started,) = backend.up(["redis"], timeout=30)
    os.kill(started.pid, signal.SIGKILL)
    _wait_until_dead(started.pid)

    (seen,) = LocalBackend(backend.state_dir).status(["redis"])

    assert seen.state is State.STOPPED
    assert seen.detail == f"pid {started.pid} is gone"
    record = StateFile(backend.state_dir).read()["redis"]
    assert (record.pid, record.phase, record.ports) == (None, "stopped", {"port": started.port})

    (again,) = backend.up(["redis"], timeout=30)
    assert again.state is State.HEALTHY
    assert again.port == started.port


def test_status_ignores_reused_pid(tmp_path):
    stranger = subprocess.Popen(["sleep", "60"])
    try:
        state = StateFile(tmp_path / "state")
        state.put("redis", ServiceRecord(backend="local", pid=stranger.pid, ports={"port": free_port()},
                                         folder=str(tmp_path / "state" / "redis"), binary="redis-server"))
        backend = LocalBackend(tmp_path / "state")

        (seen,) = backend.status(["redis"])
        backend.down(["redis"])

        assert seen.state is State.STOPPED
        assert stranger.poll() is None
        assert state.read()["redis"].pid is None
    finally:
        stranger.kill()
        stranger.wait()


def _fake_server(folder: Path, body: str) -> str:
    """An executable named clickhouse-server that runs `body` as Python and never serves."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "clickhouse-server"
    script.write_text(f"#!{sys.executable}\nimport sys, time\n{body}\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def _processes_running(path: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and pid_alive(int(entry.name)):
            try:
                if path in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_up_silent_server_times_out(tmp_path):
    fake = _fake_server(tmp_path / "bin", "print('cannot open the data folder', file=sys.stderr, flush=True)\ntime.sleep(60)")
    backend = LocalBackend(tmp_path / "state", binaries={"clickhouse": fake})

    started = time.monotonic()
    with pytest.raises(UnhealthyError) as failure:
        backend.up(["clickhouse"], timeout=1.5)

    message = str(failure.value)
    assert time.monotonic() - started < 10
    assert "\n" not in message
    assert "not healthy after 1.5 s: ClickHouse /ping on 127.0.0.1:" in message
    assert "cannot open the data folder" in message
    assert StateFile(tmp_path / "state").read()["clickhouse"].pid is None
    assert _processes_running(fake) == []


def test_up_exiting_server_reports_log(tmp_path):
    fake = _fake_server(tmp_path / "bin", "print('Exception: bad config', file=sys.stderr)\nsys.exit(70)")
    backend = LocalBackend(tmp_path / "state", binaries={"clickhouse": fake})

    with pytest.raises(ServiceError, match="clickhouse exited while starting .*Exception: bad config"):
        backend.up(["clickhouse"], timeout=10)


def test_logs_tail_and_follow(backend):
    backend.up(["redis"], timeout=30)

    lines = list(backend.logs("redis", tail=3))
    assert len(lines) == 3
    assert any("Ready to accept connections" in line for line in backend.logs("redis", tail=50))

    follower = backend.logs("redis", tail=0, follow=True)
    log_path = backend.state_dir / "redis" / "redis.log"

    def append() -> None:
        with log_path.open("a") as log:
            log.write("appended by the test\n")

    appended = threading.Timer(0.3, append)
    appended.start()
    assert next(follower) == "appended by the test"
    follower.close()


def test_logs_before_first_start_fails(tmp_path):
    with pytest.raises(ServiceError, match="mysql has no log yet"):
        list(LocalBackend(tmp_path).logs("mysql"))


def test_state_file_writes_from_many_threads_all_land(tmp_path):
    def writer(index: int) -> None:
        state = StateFile(tmp_path)
        for round_ in range(20):
            with state.editing() as records:
                records[f"service-{index}"] = ServiceRecord(backend="local", pid=round_)

    threads = [threading.Thread(target=writer, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    records = StateFile(tmp_path).read()
    assert {name: record.pid for name, record in records.items()} == {f"service-{i}": 19 for i in range(6)}
    assert [path.name for path in tmp_path.iterdir() if path.name.startswith(".state-")] == []


def test_status_damaged_state_file(tmp_path):
    (tmp_path / "state.json").write_text("{not json", encoding="utf-8")

    with pytest.raises(ServiceError, match=r"state file .*state\.json is damaged"):
        LocalBackend(tmp_path).status(ALL)


def test_default_state_dir_follows_the_environment(tmp_path):
    assert default_state_dir({"RQ_SANDBOX_STATE_DIR": str(tmp_path), "XDG_STATE_HOME": "/x"}) == tmp_path
    assert default_state_dir({"XDG_STATE_HOME": str(tmp_path)}) == tmp_path / "rq-sandbox"
    assert default_state_dir({}) == Path.home() / ".local" / "state" / "rq-sandbox"


# -- the command line ------------------------------------------------------------------


def _cli(argv: list[str]) -> int:
    """Parse and run like `rq-sandbox`'s main: one-line errors, exit codes from the error."""
    parser = argparse.ArgumentParser(prog="rq-sandbox")
    commands.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except SandboxError as error:
        print(f"rq-sandbox: {error}", file=sys.stderr)
        return int(error.exit_code)


def test_cli_up_status_and_down(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RQ_SANDBOX_STATE_DIR", str(tmp_path / "state"))
    try:
        assert _cli(["services", "up", "redis"]) == 0
        out = capsys.readouterr().out
        port = LocalBackend(tmp_path / "state").status(["redis"])[0].port
        assert f"REDIS_URL=redis://:***@127.0.0.1:{port}/0" in out
        assert "REDIS_PASSWORD=***" in out
        assert f":{STACK_PASSWORD}@" not in out

        assert _cli(["services", "status", "--show-secrets"]) == 0
        out = capsys.readouterr().out
        header, redis_row = out.splitlines()[:2]
        assert header.split() == ["NAME", "BACKEND", "STATE", "PORT", "PID", "UPTIME", "DETAIL"]
        assert redis_row.split()[:4] == ["redis", "local", "healthy", str(port)]
        assert f"REDIS_URL=redis://:opik@127.0.0.1:{port}/0" in out
        assert f"REDIS_PORT={port}" in out

        assert _cli(["services", "status", "--json"]) == 0
        payload = json.loads(capsys.readouterr().out)
        assert [(s["name"], s["state"]) for s in payload["services"]] == [
            ("redis", "healthy"), ("mysql", "stopped"), ("clickhouse", "stopped"),
        ]
        assert payload["settings"]["REDIS_PASSWORD"] == "***"
    finally:
        assert _cli(["services", "down"]) == 0
    assert "stopped" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_exit_codes(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RQ_SANDBOX_STATE_DIR", str(tmp_path))

    assert _cli(["services", "up", "postgres"]) == 2
    assert capsys.readouterr().err == "rq-sandbox: unknown service postgres: choose from redis, mysql, clickhouse\n"

    (tmp_path / "state.json").write_text("[", encoding="utf-8")
    assert _cli(["services", "status"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("rq-sandbox: state file ")
    assert err.count("\n") == 1

    with pytest.raises(SystemExit) as usage:
        _cli(["services", "up", "--timeout", "soon"])
    assert usage.value.code == 2


def _listening_addresses(pid: int) -> set[tuple[str, int]]:
    """Return (address, port) of every TCP socket the process listens on, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])

    found = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            if width == 8:
                text = ".".join(str(int(address[i : i + 2], 16)) for i in (6, 4, 2, 0))
            else:
                text = "v6:" + address
            found.add((text, int(port, 16)))
    return found


def test_services_listen_on_loopback_only(backend):
    statuses = backend.up(ALL, timeout=60)
    for status in statuses:
        addresses = _listening_addresses(status.pid)
        assert addresses, status.name
        for address, port in addresses:
            assert address == "127.0.0.1", f"{status.name} listens on {address}:{port}"
