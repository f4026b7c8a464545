"""The worker pool against a real redis-server, with real RQ workers in all three modes."""

from __future__ import annotations

import json
import signal
import socket
import time
import uuid

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from sandbox.errors import UsageError
from sandbox.worker.jobs import JobBehaviour
from sandbox.worker.pool import WorkerPool, WorkerSpec, WorkerStartError, last_exception_line

MODES = ["process", "simple", "thread"]
QUEUE = "opik:hello_world_queue"


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


def registered_workers(connection: redis.Redis) -> set[bytes]:
    return connection.smembers("rq:workers")


def enqueue_like_java(connection: redis.Redis, message: str, created_at: str = "2024-05-01T10:00:00.123456Z") -> str:
    """Write a job the way the Java producer does: no `timeout` field, plain JSON `data`."""
    job_id = str(uuid.uuid4())
    data = json.dumps(["sandbox.worker.jobs.process_hello_world", None, [message], {}])
    connection.hset(
        f"rq:job:{job_id}",
        mapping={"id": job_id, "created_at": created_at, "enqueued_at": created_at, "status": "queued",
                 "origin": QUEUE, "description": "hello", "data": data},
    )
    connection.rpush(f"rq:queue:{QUEUE}", job_id)
    return job_id


@pytest.fixture
def make_pool(redis_url, tmp_path):
    pools: list[WorkerPool] = []

    def make(**options) -> WorkerPool:
        spec = WorkerSpec(redis_url=redis_url, queues=(QUEUE,), state_dir=tmp_path / "workers", **options)
        pool = WorkerPool(spec)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.stop(timeout=5)


@pytest.mark.parametrize("mode", MODES)
def test_pool_runs_jobs_and_stops_cleanly(mode, redis_url, make_pool):
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
    jobs = [queue.enqueue("sandbox.worker.jobs.process_hello_world", f"Test_{i}") for i in range(5)]
    pool = make_pool(count=2, mode=mode)

    pool.start()
    pool.wait_ready()
    names = {worker.name for worker in pool.workers}
    wait_until(lambda: all(job.get_status() == "finished" for job in jobs))
    exits = pool.stop()

    for i, job in enumerate(jobs):
        result = job.latest_result().return_value
        assert result["payload"] == f"Test_{i}"
        assert result["message"] == f"Hello world job processed: Test_{i}"
        assert result["processed_by"] in names
    assert sorted(e.name for e in exits) == sorted(names)
    assert all(e.exit_code == 0 for e in exits)
    assert registered_workers(connection) == set()
    assert pool.poll() == []


@pytest.mark.parametrize("mode", MODES)
def test_poll_reports_a_killed_worker(mode, redis_url, make_pool):
    connection = redis.Redis.from_url(redis_url)
    pool = make_pool(count=2, mode=mode)
    pool.start()
    pool.wait_ready()
    victim = pool.workers[0]

    pool.kill(victim.index, signal.SIGKILL)
    exits = wait_until(pool.poll)

    assert exits[0].name == victim.name
    assert exits[0].exit_code == -signal.SIGKILL
    assert exits[0].pid == victim.pid
    assert not pool.workers[0].alive
    # In thread mode the signal takes the one process down with all its threads.
    expected_dead = {w.name for w in pool.workers} if mode == "thread" else {victim.name}
    assert {e.name for e in exits} == expected_dead
    assert f"rq:worker:{victim.name}".encode() not in registered_workers(connection)

    pool.stop()
    assert registered_workers(connection) == set()


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_crashed_worker_reports_last_error(mode, redis_url, make_pool):
    connection = redis.Redis.from_url(redis_url)
    pool = make_pool(count=1, mode=mode)
    pool.start()
    pool.wait_ready()

    # A Java Instant with nanoseconds: RQ 2.6 cannot parse it when it fetches the job.
    enqueue_like_java(connection, "Test_1", created_at="2024-05-01T10:00:00.123456789Z")
    exits = wait_until(pool.poll)

    assert exits[0].name == pool.workers[0].name
    assert exits[0].exit_code == 1
    assert exits[0].last_error.startswith("ValueError: time data '2024-05-01T10:00:00.123456789Z'")
    assert exits[0].log_path.exists()


def test_job_timeout_applies_to_jobs_without_one(redis_url, make_pool):
    connection = redis.Redis.from_url(redis_url)
    job_id = enqueue_like_java(connection, "Test_slow")
    pool = make_pool(mode="process", job_timeout_s=1, behaviour=JobBehaviour(work_ms=5000))

    pool.start()
    job = Job.fetch(job_id, connection=connection, serializer=JSONSerializer)
    wait_until(lambda: job.get_status() == "failed")

    assert "JobTimeoutException" in job.latest_result().exc_string
    assert pool.poll() == []


def test_add_and_remove_change_the_number_of_workers(redis_url, make_pool):
    connection = redis.Redis.from_url(redis_url)
    pool = make_pool(count=1, mode="simple")
    pool.start()

    added = pool.add(2)
    pool.wait_ready()
    assert [w.index for w in added] == [1, 2]
    assert len(registered_workers(connection)) == 3

    removed = pool.remove(1)
    assert [e.name for e in removed] == [added[-1].name]
    assert removed[0].exit_code == 0
    assert len(registered_workers(connection)) == 2
    assert [w.alive for w in pool.workers] == [True, True, False]


def test_thread_mode_has_a_fixed_worker_count(make_pool):
    pool = make_pool(count=2, mode="thread")

    with pytest.raises(UsageError, match="thread mode"):
        pool.add(1)


def test_wait_ready_reports_unreachable_redis(tmp_path):
    # A port on 127.0.0.1 that nothing listens on: the worker cannot connect.
    unused = f"redis://127.0.0.1:{_free_port()}/0"
    pool = WorkerPool(WorkerSpec(redis_url=unused, queues=(QUEUE,), state_dir=tmp_path / "w"))
    pool.start()
    try:
        with pytest.raises(WorkerStartError) as raised:
            pool.wait_ready(timeout=15)
    finally:
        pool.stop(timeout=5)

    message = str(raised.value)
    assert pool.workers[0].name in message
    assert "exited with status 1" in message
    assert "ConnectionError" in message


@pytest.mark.parametrize(
    "options, message",
    [
        ({"mode": "fork"}, "unknown worker mode"),
        ({"count": 0}, "at least 1"),
        ({"queues": ()}, "queue name"),
        ({"queues": "q1"}, "tuple of names"),
        ({"serializer": "no.such.module.Serializer"}, "unknown serializer"),
        ({"job_timeout_s": 0}, "job timeout"),
    ],
)
def test_spec_rejects_bad_input(options, message):
    arguments = {"redis_url": "redis://127.0.0.1:1/0", "queues": ("q1",), **options}

    with pytest.raises(UsageError, match=message):
        WorkerSpec(**arguments)


def test_spec_accepts_known_serializers():
    for serializer in ("json", "pickle", "rq.serializers.JSONSerializer"):
        assert WorkerSpec(redis_url="redis://127.0.0.1:1/0", queues=("q1",), serializer=serializer)


def test_last_exception_line_reads_the_final_traceback(tmp_path):
    log = tmp_path / "worker.log"
    log.write_text(
        "12:00 INFO started\n"
        "Traceback (most recent call last):\n"
        '  File "a.py", line 1, in f\n'
        "    g()\n"
        "KeyError: 'x'\n"
        "\n"
        "During handling of the above exception, another exception occurred:\n"
        "\n"
        "Traceback (most recent call last):\n"
        '  File "a.py", line 3, in h\n'
        "ValueError: time data '1' does not match format '%Y'\n"
        "12:01 ERROR worker quit\n"
    )

    assert last_exception_line(log) == "ValueError: time data '1' does not match format '%Y'"
    assert last_exception_line(tmp_path / "missing.log") is None


def test_job_results_read_back_with_the_json_serializer(redis_url, make_pool):
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
    job = queue.enqueue("sandbox.worker.jobs.process_optimizer_job", {"id": "Test_1"})
    pool = make_pool(count=1, mode="simple", serializer="json")
    pool.start()

    wait_until(lambda: job.get_status() == "finished")
    stored = Job.fetch(job.id, connection=connection, serializer=JSONSerializer)

    assert stored.latest_result().return_value["message"] == 'Optimizer job processed: {"id": "Test_1"}'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
