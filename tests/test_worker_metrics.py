"""The worker metrics: they must agree with what RQ recorded in Redis."""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import redis
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

from sandbox.worker.classes import error_type_from
from sandbox.worker.jobs import JobBehaviour, will_fail
from sandbox.worker.metrics import (
    CONCURRENT,
    FAILED,
    PROCESSED,
    PROCESSING_TIME,
    QUEUE_WAIT_TIME,
    SUCCEEDED,
    TOTAL_TIME,
    MetricsSink,
    load_metrics,
    metric_total,
)
from sandbox.worker.pool import WorkerPool, WorkerSpec

QUEUE = "opik:optimizer-cloud"
FUNCTION = "sandbox.worker.jobs.process_optimizer_job"
EXPECTED_KINDS = {
    PROCESSED: ("counter", "1"),
    SUCCEEDED: ("counter", "1"),
    FAILED: ("counter", "1"),
    CONCURRENT: ("updowncounter", "1"),
    PROCESSING_TIME: ("histogram", "ms"),
    QUEUE_WAIT_TIME: ("histogram", "ms"),
    TOTAL_TIME: ("histogram", "ms"),
}


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_metrics_agree_with_redis_when_jobs_fail(mode, redis_url, tmp_path):
    connection = redis.Redis.from_url(redis_url)
    queue = Queue(QUEUE, connection=connection, serializer=JSONSerializer)
    behaviour = JobBehaviour(work_ms=5, failure_rate=0.3, seed=1)
    payloads = [f"Test_{i}" for i in range(20)]
    predicted_failures = sum(will_fail(p, behaviour) for p in payloads)
    jobs = [queue.enqueue(FUNCTION, p) for p in payloads]
    spec = WorkerSpec(
        redis_url=redis_url, queues=(QUEUE,), count=3, mode=mode, behaviour=behaviour, state_dir=tmp_path / "w"
    )
    pool = WorkerPool(spec)

    pool.start()
    try:
        wait_until(lambda: all(job.get_status() in ("finished", "failed") for job in jobs))
    finally:
        pool.stop()
    metrics = pool.metrics()

    finished = FinishedJobRegistry(QUEUE, connection=connection).get_job_ids()
    failed = FailedJobRegistry(QUEUE, connection=connection).get_job_ids()
    attributes = {"queue": QUEUE, "function": FUNCTION}
    assert 0 < predicted_failures < 20
    assert len(failed) == predicted_failures
    assert metric_total(metrics, PROCESSED, **attributes) == 20
    assert metric_total(metrics, SUCCEEDED, **attributes) == len(finished) == 20 - predicted_failures
    assert metric_total(metrics, FAILED, error_type="SimulatedJobError", **attributes) == predicted_failures
    assert metric_total(metrics, FAILED) == predicted_failures
    assert metric_total(metrics, CONCURRENT, **attributes) == 0
    for name in (PROCESSING_TIME, QUEUE_WAIT_TIME, TOTAL_TIME):
        assert metric_total(metrics, name, **attributes) == 20
    assert {name: (m["kind"], m["unit"]) for name, m in metrics.items()} == EXPECTED_KINDS

    # The histograms hold RQ's own timestamps, so their sums match Redis to rounding.
    stored = Job.fetch_many([job.id for job in jobs], connection=connection, serializer=JSONSerializer)
    wait_sum = sum((job.started_at - job.created_at).total_seconds() * 1000 for job in stored)
    processing_sum = sum((job.ended_at - job.started_at).total_seconds() * 1000 for job in stored)
    assert metrics[QUEUE_WAIT_TIME]["points"][0]["sum"] == pytest.approx(wait_sum, abs=0.01)
    assert metrics[PROCESSING_TIME]["points"][0]["sum"] == pytest.approx(processing_sum, abs=0.01)
    assert metrics[PROCESSING_TIME]["points"][0]["min"] >= 5


def test_thread_mode_writes_one_metrics_file_per_process(redis_url, tmp_path):
    spec = WorkerSpec(redis_url=redis_url, queues=(QUEUE,), count=3, mode="thread", state_dir=tmp_path / "w")
    pool = WorkerPool(spec)
    pool.start()
    try:
        pool.wait_ready()
        wait_until(lambda: list(spec.state_dir.glob("metrics-*.json")))
    finally:
        pool.stop()

    files = list(spec.state_dir.glob("metrics-*.json"))
    assert [f.name for f in files] == [f"metrics-sandbox-{socket.gethostname()}-{pool.workers[0].pid}.json"]


def test_killed_work_horse_counts_as_failed(redis_url, tmp_path):
    # A job module outside the package, reached through the spec's pythonpath.
    (tmp_path / "dying_jobs.py").write_text(
        "import os, signal\n\ndef die(message):\n    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    connection = redis.Redis.from_url(redis_url)
    job = Queue(QUEUE, connection=connection, serializer=JSONSerializer).enqueue("dying_jobs.die", "Test_1")
    spec = WorkerSpec(
        redis_url=redis_url, queues=(QUEUE,), mode="process", pythonpath=(str(tmp_path),), state_dir=tmp_path / "w"
    )
    pool = WorkerPool(spec)

    pool.start()
    try:
        wait_until(lambda: job.get_status() == "failed")
        assert pool.poll() == []
    finally:
        pool.stop()
    metrics = pool.metrics()

    attributes = {"queue": QUEUE, "function": "dying_jobs.die"}
    assert metric_total(metrics, PROCESSED, **attributes) == 1
    assert metric_total(metrics, FAILED, error_type="WorkHorseTerminated", **attributes) == 1
    assert metric_total(metrics, PROCESSING_TIME, **attributes) == 1


def test_load_metrics_merges_snapshots_of_several_processes(tmp_path):
    attributes = {"queue": "q1", "function": "f"}
    sinks = [MetricsSink(tmp_path / f"metrics-{i}.json") for i in range(2)]
    for count, sink in zip((2, 3), sinks):
        for _ in range(count):
            sink.instruments.processed.add(1, attributes)
        sink.instruments.concurrent.add(1, attributes)
        sink.instruments.failed.add(1, {**attributes, "error_type": f"E{count}"})
    sinks[0].instruments.processing_time.record(4.0, attributes)
    sinks[1].instruments.processing_time.record(40.0, attributes)
    sinks[1].instruments.processing_time.record(400.0, attributes)
    for sink in sinks:
        sink.start()
        sink.close()

    merged = load_metrics([*(s.path for s in sinks), tmp_path / "not-written-yet.json"])

    assert metric_total(merged, PROCESSED, **attributes) == 5
    assert metric_total(merged, CONCURRENT) == 2
    assert metric_total(merged, FAILED) == 2
    assert metric_total(merged, FAILED, error_type="E3") == 1
    assert metric_total(merged, PROCESSED, queue="other") == 0
    assert metric_total(merged, "no.such.metric") == 0
    histogram = merged[PROCESSING_TIME]["points"][0]
    assert (histogram["count"], histogram["sum"], histogram["min"], histogram["max"]) == (3, 444.0, 4.0, 400.0)
    assert sum(histogram["bucket_counts"]) == 3
    assert len(histogram["bucket_counts"]) == len(histogram["explicit_bounds"]) + 1


def test_sink_writes_snapshot_at_start_and_close(tmp_path):
    sink = MetricsSink(tmp_path / "metrics.json", interval_s=60)
    sink.start()
    first = json.loads(sink.path.read_text())

    sink.instruments.succeeded.add(4, {"queue": "q", "function": "f"})
    sink.close()
    last = json.loads(sink.path.read_text())

    assert first["pid"] == os.getpid()
    assert first["metrics"] == {}
    assert last["metrics"][SUCCEEDED]["points"][0]["value"] == 4


@pytest.mark.parametrize(
    "exc_string, status, expected",
    [
        ("Traceback ...\n  File x\nsandbox.worker.jobs.SimulatedJobError: failed for Test_1\n", "failed", "SimulatedJobError"),
        ("Traceback ...\nValueError: bad\n", "failed", "ValueError"),
        ("Traceback ...\nrq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (1 seconds)", "failed",
         "JobTimeoutException"),
        ("Work-horse terminated unexpectedly; waitpid returned 9 (signal 9); ", "failed", "WorkHorseTerminated"),
        ("Job stopped by user, work-horse terminated.", "stopped", "JobStopped"),
        (None, "failed", "Unknown"),
    ],
)
def test_error_type_comes_from_the_stored_traceback(exc_string, status, expected):
    assert error_type_from(exc_string, status) == expected
