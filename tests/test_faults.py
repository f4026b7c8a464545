"""Faults: producer retries against a paused Redis, and losses after a restart without persistence."""

import threading

import pytest
import redis

from sandbox.contract.profiles import ProfileOptions
from sandbox.producer.publisher import Publisher, RetryPolicy
from sandbox.scenario.loader import parse_scenario
from sandbox.scenario.runner import Runner, RunOptions
from sandbox.services.redis_process import RedisProcess

QUEUE = "sandbox:faults"
FUNC = "sandbox.worker.jobs.process_hello_world"


@pytest.fixture
def own_redis(tmp_path):
    server = RedisProcess(state_dir=tmp_path / "redis")
    server.start()
    yield server
    server.resume()
    server.stop()


def test_publisher_retries_paused_redis_once_per_job(own_redis):
    connection = redis.Redis.from_url(own_redis.url, socket_timeout=0.3)
    publisher = Publisher(connection, ProfileOptions(), retry=RetryPolicy(attempts=20, base_delay_s=0.05, max_delay_s=0.2))

    own_redis.pause()
    threading.Timer(1.0, own_redis.resume).start()
    job_id = publisher.enqueue(QUEUE, FUNC, ["Test_1"])

    assert publisher.retries >= 1
    checker = redis.Redis.from_url(own_redis.url)
    assert checker.lrange(f"rq:queue:{QUEUE}", 0, -1) == [job_id.encode()]
    assert checker.hget(f"rq:job:{job_id}", "status") == b"queued"


def test_publisher_gives_up_after_attempts(own_redis):
    connection = redis.Redis.from_url(own_redis.url, socket_timeout=0.1)
    publisher = Publisher(connection, ProfileOptions(), retry=RetryPolicy(attempts=3, base_delay_s=0.01))
    own_redis.pause()
    with pytest.raises(redis.TimeoutError):
        publisher.enqueue(QUEUE, FUNC, ["Test_1"])
    assert publisher.retries == 2


def test_retry_after_lost_reply_pushes_once(own_redis):
    # The first RPUSH reaches Redis but its reply is lost: the retry must find the id and not push it again.
    connection = redis.Redis.from_url(own_redis.url)
    publisher = Publisher(connection, ProfileOptions(), retry=RetryPolicy(), sleep=lambda seconds: None)
    original = connection.rpush
    calls = []

    def rpush_then_drop_reply(*args):
        calls.append(args)
        original(*args)
        if len(calls) == 1:
            raise redis.ConnectionError("reply lost")

    connection.rpush = rpush_then_drop_reply
    job_id = publisher.enqueue(QUEUE, FUNC, ["Test_1"])

    assert len(calls) == 1
    assert publisher.pushes_found_on_retry == 1
    assert redis.Redis.from_url(own_redis.url).lrange(f"rq:queue:{QUEUE}", 0, -1) == [job_id.encode()]


RESTART_WITHOUT_PERSISTENCE = """
name: restart-no-persistence
redis: {persistence: none}
workers: {count: 1, mode: simple}
producer: {queue: "sandbox:faults", function: sandbox.worker.jobs.process_hello_world}
job: {work: 300ms}
phases: [{messages: 10, rate: burst}]
faults: [{type: restart-redis, after_finished: 2}]
expect: {deadline: 30s}
"""


def test_restart_without_persistence_loses_jobs(tmp_path):
    text = RESTART_WITHOUT_PERSISTENCE.replace("count: 1, mode: simple", "count: 1, mode: simple, restart_dead: true")
    scenario = parse_scenario(text)
    report, _ = Runner(scenario, RunOptions(state_dir=tmp_path / "state")).run()

    jobs = report["jobs"]
    # Jobs already finished before the restart lose their hashes too, so they count as lost.
    assert jobs["lost"] >= 5
    assert jobs["unaccounted"] == 0
    assert jobs["enqueued"] == 10
    assert report["faults"][0]["fired_at_s"] is not None
    assert "persistence none" in report["faults"][0]["detail"]


def test_redis_faults_rejected_for_external_redis(redis_url):
    from sandbox.errors import UsageError

    scenario = parse_scenario(RESTART_WITHOUT_PERSISTENCE)
    with pytest.raises(UsageError, match="restart-redis"):
        Runner(scenario, RunOptions(redis_url=redis_url)).run()
    assert redis.Redis.from_url(redis_url).dbsize() == 0


@pytest.mark.parametrize(
    "fault, message",
    [
        ("{type: kill-worker}", "exactly one trigger"),
        ("{type: kill-worker, at: 1s, after_finished: 2}", "exactly one trigger"),
        ("{type: nuke, at: 1s}", "is not one of"),
        ("{type: kill-worker, at: 1s, ttl: 1s}", "does not apply to kill-worker"),
        ("{type: pause-redis, at: 1s, duration: 1h}", "longer than 300s"),
    ],
)
def test_bad_fault_rejected(fault, message):
    from sandbox.scenario.loader import ScenarioError

    text = RESTART_WITHOUT_PERSISTENCE.replace(
        "faults: [{type: restart-redis, after_finished: 2}]", f"faults: [{fault}]"
    )
    with pytest.raises(ScenarioError, match=message) as error:
        parse_scenario(text, path="f.yaml")
    assert str(error.value).startswith("f.yaml:")
    assert "faults[0]" in str(error.value)
