"""Redis URLs, masking and connection errors, against servers these tests start."""

from __future__ import annotations

import pytest

from sandbox.errors import InfrastructureError, UsageError
from sandbox.redisconn import connect, redis_url_from_env, require_version, server_version
from sandbox.secrets import mask_text, mask_url
from sandbox.services.ports import free_port
from sandbox.services.redis_process import RedisProcess


@pytest.fixture(scope="module")
def server():
    process = RedisProcess()
    process.start()
    yield process
    process.stop()


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:opik@127.0.0.1:6380/0", "redis://:***@127.0.0.1:6380/0"),
        ("redis://default:opik@127.0.0.1:6380/0", "redis://default:***@127.0.0.1:6380/0"),
        ("rediss://worker:p%40ss@cache.internal:6380/2", "rediss://worker:***@cache.internal:6380/2"),
        ("unix://:opik@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
        ("mysql://root:secret@127.0.0.1:3306/sandbox", "mysql://root:***@127.0.0.1:3306/sandbox"),
        ("http://admin:secret@127.0.0.1:8123/", "http://admin:***@127.0.0.1:8123/"),
        # A password with an unencoded '@' or '/' is still hidden whole.
        ("redis://:pa@ss@127.0.0.1:6380/0", "redis://:***@127.0.0.1:6380/0"),
        ("redis://:pa/ss@127.0.0.1:6380/0", "redis://:***@127.0.0.1:6380/0"),
        ("redis://127.0.0.1:6380/0?password=opik&db=1", "redis://127.0.0.1:6380/0?password=***&db=1"),
        # Nothing secret, so nothing changes.
        ("redis://127.0.0.1:6380/0", "redis://127.0.0.1:6380/0"),
        ("redis://worker@127.0.0.1:6380/0", "redis://worker@127.0.0.1:6380/0"),
        ("redis://worker:@127.0.0.1:6380/0", "redis://worker:@127.0.0.1:6380/0"),
        ("not a url", "not a url"),
        ("", ""),
        (None, "None"),
        (12345, "12345"),
        (b"redis://:opik@127.0.0.1/0", "redis://:***@127.0.0.1/0"),
    ],
)
def test_mask_url(url, masked):
    assert mask_url(url) == masked


def test_mask_text_hides_secrets_and_url_passwords():
    text = "worker failed: redis://:opik@127.0.0.1:6380/0 said WRONGPASS for 'hunter 2' (hunter%202)"

    assert mask_text(text, ["hunter 2", ""]) == (
        "worker failed: redis://:***@127.0.0.1:6380/0 said WRONGPASS for '***' (***)"
    )


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "ftp://user:pw@127.0.0.1/x",
            "invalid Redis URL 'ftp://user:***@127.0.0.1/x': use redis://[:password@]host:port/db",
        ),
        ("127.0.0.1:6380", "invalid Redis URL '127.0.0.1:6380': use redis://[:password@]host:port/db"),
        ("redis:///0", "invalid Redis URL 'redis:///0': missing host; use redis://[:password@]host:port/db"),
        (
            "unix://",
            "invalid Redis URL 'unix://': missing socket path (unix:///path/redis.sock)",
        ),
    ],
)
def test_invalid_url_is_a_usage_error(url, message):
    with pytest.raises(UsageError) as caught:
        connect(url)

    assert str(caught.value) == message


def test_non_numeric_port_is_usage_error():
    with pytest.raises(UsageError) as caught:
        connect("redis://:pw@127.0.0.1:sixty/0")

    assert str(caught.value).startswith("invalid Redis URL 'redis://:***@127.0.0.1:sixty/0'")


def test_refused_port_is_an_infrastructure_error():
    # A free port that nothing listens on.
    port = free_port()

    with pytest.raises(InfrastructureError) as caught:
        connect(f"redis://:opik@127.0.0.1:{port}/0", timeout=2)

    assert str(caught.value) == (
        f"cannot connect to Redis at redis://:***@127.0.0.1:{port}/0: Connection refused; "
        "start it or pass another --redis-url"
    )


def test_connect_returns_a_working_client(server):
    conn = connect(server.url)
    conn.set("queue", "default")

    assert conn.get("queue") == b"default"
    assert connect(server.url, decode_responses=True).get("queue") == "default"


def test_missing_database_is_a_usage_error(server):
    with pytest.raises(UsageError) as caught:
        connect(f"redis://127.0.0.1:{server.port}/99")

    assert str(caught.value) == (
        f"Redis at redis://127.0.0.1:{server.port}/99 rejected the connection: DB index is out of range"
    )


def test_server_version_matches_the_binary(server):
    conn = connect(server.url)

    assert server_version(conn) == server.version
    assert require_version(conn, server.url) == server.version


def test_require_version_names_the_version_and_the_reason(server):
    conn = connect(server.url)
    found = ".".join(map(str, server.version))

    with pytest.raises(InfrastructureError) as caught:
        require_version(conn, server.url, minimum=(99, 0, 0))

    assert str(caught.value) == (
        f"Redis at {server.url} is version {found}; rq 2.x needs 99.0.0 or newer "
        "because it moves jobs between lists with LMOVE/BLMOVE"
    )


@pytest.mark.parametrize(
    ("environ", "url"),
    [
        ({}, None),
        ({"REDIS_URL": "redis://127.0.0.1:6400/3", "REDIS_HOST": "ignored"}, "redis://127.0.0.1:6400/3"),
        ({"REDIS_HOST": "127.0.0.1"}, "redis://127.0.0.1:6379/0"),
        (
            {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": "6400", "REDIS_DB": "2", "REDIS_PASSWORD": "opik"},
            "redis://:opik@127.0.0.1:6400/2",
        ),
        ({"REDIS_HOST": "127.0.0.1", "REDIS_PASSWORD": "a b@c"}, "redis://:a%20b%40c@127.0.0.1:6379/0"),
        ({"REDIS_HOST": "::1", "REDIS_PORT": "6400"}, "redis://[::1]:6400/0"),
        ({"REDIS_PORT": "6400", "REDIS_PASSWORD": "opik"}, None),
        ({"REDIS_URL": "", "REDIS_HOST": ""}, None),
    ],
)
def test_redis_url_from_env(environ, url):
    assert redis_url_from_env(environ) == url


def test_url_from_env_with_password(tmp_path):
    with RedisProcess(state_dir=tmp_path, password="a b@c") as process:
        url = redis_url_from_env(
            {"REDIS_HOST": "127.0.0.1", "REDIS_PORT": str(process.port), "REDIS_PASSWORD": "a b@c"}
        )

        assert url == process.url
        assert connect(url).ping() is True
