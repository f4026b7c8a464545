"""The simulated job functions: deterministic failures, payload echo, work time."""

import json
import time
from hashlib import sha256

import pytest

from sandbox.worker import jobs
from sandbox.worker.jobs import JobBehaviour, SimulatedJobError, behaviour_from_env, will_fail


@pytest.fixture(autouse=True)
def restore_behaviour():
    before = jobs.current_behaviour()
    yield
    jobs.configure(before)


def test_will_fail_is_deterministic_per_payload_and_seed():
    behaviour = JobBehaviour(failure_rate=0.5, seed=7)
    payloads = [f"Test_{i}" for i in range(200)]

    first = [will_fail(p, behaviour) for p in payloads]
    second = [will_fail(p, behaviour) for p in payloads]
    other_seed = [will_fail(p, JobBehaviour(failure_rate=0.5, seed=8)) for p in payloads]

    assert first == second
    assert first != other_seed


def test_will_fail_follows_the_documented_hash():
    payload = {"b": 2, "a": [1, "x"]}
    behaviour = JobBehaviour(failure_rate=0.4, seed=3)
    text = f"3:{json.dumps(payload, sort_keys=True)}"
    draw = int.from_bytes(sha256(text.encode()).digest()[:8], "big") / 2**64

    assert will_fail(payload, behaviour) == (draw < 0.4)


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.75])
def test_failure_rate_is_roughly_honoured_over_1000_payloads(rate):
    behaviour = JobBehaviour(failure_rate=rate, seed=1)

    failed = sum(will_fail(f"Test_{i}", behaviour) for i in range(1000))

    assert abs(failed / 1000 - rate) < 0.05


def test_rates_zero_and_one_are_exact():
    payloads = [f"Test_{i}" for i in range(300)]

    assert not any(will_fail(p, JobBehaviour(failure_rate=0.0)) for p in payloads)
    assert all(will_fail(p, JobBehaviour(failure_rate=1.0)) for p in payloads)


def test_jobs_echo_their_payload():
    jobs.configure(JobBehaviour())

    result = jobs.process_optimizer_job("Test_1")
    hello = jobs.process_hello_world({"id": 5})

    assert result["status"] == "ok"
    assert result["message"] == "Optimizer job processed: Test_1"
    assert result["payload"] == "Test_1"
    assert result["processed_by"]
    assert hello["message"] == 'Hello world job processed: {"id": 5}'
    assert hello["payload"] == {"id": 5}


def test_several_arguments_make_one_payload():
    jobs.configure(JobBehaviour())

    result = jobs.process_hello_world("a", 2, flag=True)

    assert result["payload"] == {"args": ["a", 2], "kwargs": {"flag": True}}


def test_failing_payload_raises_naming_it():
    behaviour = JobBehaviour(failure_rate=0.5, seed=1)
    failing = next(f"Test_{i}" for i in range(100) if will_fail(f"Test_{i}", behaviour))
    jobs.configure(behaviour)

    with pytest.raises(SimulatedJobError, match=failing):
        jobs.process_optimizer_job(failing)


def test_work_time_is_honoured():
    jobs.configure(JobBehaviour(work_ms=120))

    start = time.perf_counter()
    jobs.process_hello_world("Test_1")
    elapsed = time.perf_counter() - start

    assert 0.12 <= elapsed < 1.0


def test_noop_returns_none():
    assert jobs.process_noop() is None
    assert jobs.process_noop("ignored", x=1) is None


def test_behaviour_round_trips_through_the_environment():
    behaviour = JobBehaviour(work_ms=12.5, failure_rate=0.25, seed=9)

    read = behaviour_from_env({jobs.BEHAVIOUR_ENV: behaviour.to_json()})

    assert read == behaviour
    assert behaviour_from_env({}) == JobBehaviour()


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"failure_rate": 1.5}', "failure_rate must be between"),
        ('{"work_ms": -1}', "work_ms must be >= 0"),
        ('{"speed": 3}', "unexpected keyword"),
        ("[1, 2]", "must be a JSON object"),
        ("{not json", "Expecting property name"),
    ],
)
def test_bad_behaviour_names_the_variable(text, message):
    with pytest.raises(ValueError, match=message) as raised:
        behaviour_from_env({jobs.BEHAVIOUR_ENV: text})

    assert jobs.BEHAVIOUR_ENV in str(raised.value)
