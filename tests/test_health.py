"""Health checks against real servers, wrong passwords, closed ports and silent listeners."""

from __future__ import annotations

import socket
import time

import pytest

from sandbox.services.base import STACK_PASSWORD, State
from sandbox.services.health import check_clickhouse, check_mysql, check_redis
from sandbox.services.local import LocalBackend
from sandbox.services.ports import free_port
from sandbox.services.redis_process import RedisProcess

HOST = "127.0.0.1"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    backend = LocalBackend(tmp_path_factory.mktemp("health"))
    statuses = backend.up(["mysql", "clickhouse"], timeout=60)
    assert [s.state for s in statuses] == [State.HEALTHY, State.HEALTHY]
    yield {s.name: s.port for s in statuses}
    backend.down(["mysql", "clickhouse"])


@pytest.fixture(scope="module")
def redis_server():
    with RedisProcess(password="s3cret pass") as server:
        yield server


@pytest.fixture
def silent_port():
    """A port that accepts connections and never replies."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_redis_ping_with_the_right_password(redis_server):
    assert check_redis(HOST, redis_server.port, "s3cret pass") == (True, "")


def test_redis_wrong_password_fails(redis_server):
    ok, error = check_redis(HOST, redis_server.port, "not-it")
    assert not ok
    assert error.startswith(f"Redis PING on {HOST}:{redis_server.port}: AuthenticationError")
    assert "not-it" not in error

    ok, error = check_redis(HOST, redis_server.port)
    assert not ok
    assert "Authentication" in error


def test_mysql_select_1_as_the_stack_user(stack):
    assert check_mysql(HOST, stack["mysql"], "opik", STACK_PASSWORD, database="opik") == (True, "")


def test_mysql_wrong_password_and_unknown_database(stack):
    ok, error = check_mysql(HOST, stack["mysql"], "opik", "wrong-password")
    assert not ok
    assert "Access denied for user 'opik'" in error
    assert "wrong-password" not in error

    ok, error = check_mysql(HOST, stack["mysql"], "opik", STACK_PASSWORD, database="missing")
    assert not ok
    assert "missing" in error


def test_clickhouse_ping_then_select_1(stack):
    assert check_clickhouse(HOST, stack["clickhouse"], "opik", STACK_PASSWORD) == (True, "")


def test_clickhouse_wrong_password_names_the_failed_step(stack):
    ok, error = check_clickhouse(HOST, stack["clickhouse"], "opik", "wrong-password")
    assert not ok
    assert error.startswith(f"ClickHouse SELECT 1 on {HOST}:{stack['clickhouse']} as opik: ServiceError: HTTP ")
    assert "Wrong password for user opik" in error
    assert "wrong-password" not in error


def test_clickhouse_check_against_redis_fails_at_ping(redis_server):
    ok, error = check_clickhouse(HOST, redis_server.port, "opik", STACK_PASSWORD)
    assert not ok
    assert error.startswith(f"ClickHouse /ping on {HOST}:{redis_server.port}:")


@pytest.mark.parametrize("check", [
    lambda port: check_redis(HOST, port, "x"),
    lambda port: check_mysql(HOST, port, "opik", "x"),
    lambda port: check_clickhouse(HOST, port, "opik", "x"),
], ids=["redis", "mysql", "clickhouse"])
def test_check_closed_port_fails_fast(check):
    started = time.monotonic()
    ok, error = check(free_port())
    assert not ok
    assert error
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("check", [
    lambda port: check_redis(HOST, port, "x", timeout=0.5),
    lambda port: check_mysql(HOST, port, "opik", "x", timeout=0.5),
    lambda port: check_clickhouse(HOST, port, "opik", "x", timeout=0.5),
], ids=["redis", "mysql", "clickhouse"])
def test_check_silent_listener_times_out(check, silent_port):
    started = time.monotonic()
    ok, error = check(silent_port)
    assert not ok
    assert "timed out" in error.lower() or "timeout" in error.lower()
    assert time.monotonic() - started < 3


def test_bad_input_never_raises():
    assert check_redis(HOST, -1)[0] is False
    assert check_mysql(HOST, 70000, "opik", "x")[0] is False
    assert check_clickhouse(HOST, 0)[0] is False
