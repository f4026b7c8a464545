"""Shared fixtures: private redis-servers the test session starts through the sandbox's own RedisProcess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from rq.serializers import JSONSerializer

from sandbox.services.redis_process import RedisProcess
from sandbox.worker.classes import MetricsSimpleWorker
from sandbox.worker.metrics import MetricsSink

#: The repository root, where the CLI tests run `python -m sandbox`.
ROOT = Path(__file__).resolve().parent.parent

#: Password of the session's password-protected server; tests grep output for it.
TEST_PASSWORD = "s3cret-pw"


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory):
    """One private redis-server on a free 127.0.0.1 port for the whole session."""
    server = RedisProcess(state_dir=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisProcess) -> str:
    """The URL of the session's private server, emptied before the test."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def _password_server(tmp_path_factory: pytest.TempPathFactory):
    server = RedisProcess(state_dir=tmp_path_factory.mktemp("redis-auth"), password=TEST_PASSWORD)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_server_with_password(_password_server: RedisProcess) -> str:
    """The URL of a second private server that requires TEST_PASSWORD, emptied before the test."""
    redis.Redis.from_url(_password_server.url).flushall()
    return _password_server.url


@pytest.fixture
def connection(redis_url):
    """A bytes client of the session's private server, emptied before the test."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def drain(connection: redis.Redis, queue: str) -> None:
    """Run every queued job of `queue` with the sandbox's simple worker (real rq), then return."""
    worker = MetricsSimpleWorker([queue], connection=connection, serializer=JSONSerializer, sink=MetricsSink(None))
    worker.work(burst=True)


def run_cli(*args: str, env: dict | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run `python -m sandbox ARGS` from the repository root, without the caller's REDIS_* variables."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("REDIS_")}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=environment,
    )
