"""The monitor's snapshot: one read-only round trip whatever the number of jobs, with the right counts."""

from datetime import datetime, timezone

import pytest
import redis
from redis.client import Pipeline

from sandbox.contract.profiles import ProfileOptions
from sandbox.monitor.snapshot import JobRow, Monitor, TimingWindow, registry_key
from sandbox.producer.publisher import Publisher

QUEUE = "opik:optimizer-cloud"
OTHER = "opik:hello_world_queue"
FUNCTION = "sandbox.worker.jobs.process_optimizer_job"
JOBS = 100_000

#: Every command a snapshot may send; none of them writes.
READ_ONLY = {"llen", "zcard", "smembers", "hmget", "lrange", "zrevrange"}


@pytest.fixture
def connection(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def count_round_trips(monkeypatch):
    """Count every pipeline executed, by wrapping redis-py's own execute."""
    calls = []
    original = Pipeline.execute

    def execute(self, *args, **kwargs):
        calls.append(len(self.command_stack))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Pipeline, "execute", execute)
    return calls


def _fill(connection: redis.Redis) -> list[str]:
    publisher = Publisher(connection, ProfileOptions())
    ids = []
    for start in range(0, JOBS, 10_000):
        ids += publisher.enqueue_many(QUEUE, FUNCTION, [[f"Test_{n}"] for n in range(start, start + 10_000)])
    return ids


def _commandstats(connection: redis.Redis) -> dict[str, int]:
    return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in connection.info("commandstats").items()}


def test_snapshot_100k_jobs_one_round_trip(connection, count_round_trips):
    ids = _fill(connection)
    connection.zadd(registry_key("finished", QUEUE), {f"done-{n}": n for n in range(500)})
    connection.zadd(registry_key("failed", QUEUE), {f"bad-{n}": n for n in range(20)})
    connection.zadd(registry_key("started", QUEUE), {"run-1:exec-1": 1})
    connection.rpush(f"rq:queue:{QUEUE}:intermediate", "moving")
    connection.sadd("rq:workers", "rq:worker:w1")
    connection.hset("rq:worker:w1", mapping={"state": "busy", "current_job": ids[0], "pid": "4242", "queues": QUEUE})

    monitor = Monitor(connection, queues=[OTHER])
    assert monitor.discover_queues() == [OTHER, QUEUE]
    monitor.snapshot()
    count_round_trips.clear()
    connection.config_resetstat()

    snapshot = monitor.snapshot(ids[:300])

    assert len(count_round_trips) == 1
    assert monitor.round_trips == snapshot.round_trips == 1
    stats = _commandstats(connection)
    stats.pop("config", None)
    stats.pop("info", None)
    assert set(stats) <= READ_ONLY, f"a snapshot sent {set(stats) - READ_ONLY}"
    assert stats["llen"] == 2
    assert stats["zcard"] == 2 * 6
    # The 200-job window plus the one known worker.
    assert stats["hmget"] == 200 + 1

    by_name = {queue.name: queue for queue in snapshot.queues}
    assert by_name[QUEUE].depth == JOBS
    assert by_name[QUEUE].registries == {
        "started": 1, "finished": 500, "failed": 20, "deferred": 0, "scheduled": 0, "canceled": 0,
    }
    assert by_name[OTHER].depth == 0
    assert by_name[QUEUE].history[-2:] == (JOBS, JOBS)

    assert [(w.name, w.state, w.current_job, w.pid) for w in snapshot.workers] == [("w1", "busy", ids[0], 4242)]
    assert len(snapshot.jobs) == 200
    # Newest first: the window keeps the last 200 of the 300 ids watched.
    assert snapshot.jobs[0].job_id == ids[299]
    assert snapshot.jobs[-1].job_id == ids[100]
    row = snapshot.jobs[0]
    assert (row.status, row.origin, row.function) == ("queued", QUEUE, FUNCTION)
    assert row.enqueued_at is not None
    assert row.started_at is None
    assert row.queue_wait_ms is None


def test_snapshot_round_trips_constant(connection, count_round_trips):
    publisher = Publisher(connection, ProfileOptions())
    few = publisher.enqueue_many(QUEUE, FUNCTION, [["a"]] * 5)
    monitor = Monitor(connection, queues=[QUEUE])
    monitor.snapshot(few)
    many = publisher.enqueue_many(QUEUE, FUNCTION, [["b"]] * 5000)
    count_round_trips.clear()

    snapshot = monitor.snapshot(many)

    assert len(count_round_trips) == 1
    assert snapshot.queues[0].depth == 5005
    assert len(snapshot.jobs) == 200


def test_snapshot_adopts_queued_jobs(connection):
    publisher = Publisher(connection, ProfileOptions())
    waiting = publisher.enqueue(QUEUE, FUNCTION, ["x"])
    monitor = Monitor(connection, queues=[QUEUE])

    first = monitor.snapshot()
    second = monitor.snapshot()

    # Found by the first snapshot's LRANGE, read by the second's HMGET: one round trip each.
    assert first.jobs == ()
    assert [row.job_id for row in second.jobs] == [waiting]


def test_snapshot_worker_without_hash_dead(connection):
    connection.sadd("rq:workers", "rq:worker:ghost")
    monitor = Monitor(connection)
    monitor.snapshot()
    snapshot = monitor.snapshot()
    assert [(w.name, w.state) for w in snapshot.workers] == [("ghost", "dead")]


def test_discover_keeps_drained_queues(connection):
    # A Java-style writer never adds its queue to rq:queues; once drained, only the registries name it.
    connection.zadd(registry_key("finished", "sandbox:faults"), {"done-1": 1})
    connection.zadd(registry_key("started", "sandbox:busy"), {"run-1:exec-1": 1})
    connection.set("rq:finished:not-a-registry", "x")
    monitor = Monitor(connection, queues=[QUEUE])

    assert monitor.discover_queues() == [QUEUE, "sandbox:busy", "sandbox:faults"]

    connection.delete(registry_key("finished", "sandbox:faults"), registry_key("started", "sandbox:busy"))
    assert monitor.discover_queues() == [QUEUE, "sandbox:busy", "sandbox:faults"]
    snapshot = monitor.snapshot()
    assert {queue.name: queue.registries["finished"] for queue in snapshot.queues} == {
        QUEUE: 0, "sandbox:busy": 0, "sandbox:faults": 0,
    }


def test_added_queue_in_next_snapshot(connection):
    Publisher(connection, ProfileOptions()).enqueue("sandbox:later", FUNCTION, ["x"])
    monitor = Monitor(connection, queues=[QUEUE])
    monitor.discover_queues()
    monitor.add_queues(["sandbox:run"])

    snapshot = monitor.snapshot()

    assert [(queue.name, queue.depth) for queue in snapshot.queues] == [
        (QUEUE, 0), ("sandbox:later", 1), ("sandbox:run", 0),
    ]


def test_timing_window_counts_jobs_once():
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    clock = lambda: now.timestamp() + 30  # noqa: E731
    window = TimingWindow(horizon_s=60, clock=clock)
    row = JobRow("a", "finished", enqueued_at=now.replace(microsecond=0),
                 started_at=now.replace(microsecond=100_000), ended_at=now.replace(microsecond=600_000))
    open_row = JobRow("b", "started", enqueued_at=now, started_at=now)

    assert window.add([row, open_row]) == 1
    assert window.add([row]) == 0
    values = window.values(within_s=60)
    assert values == {"queue_wait": [100.0], "processing": [500.0], "total": [600.0]}
    assert window.values(within_s=60, job_ids={"other"})["total"] == []
