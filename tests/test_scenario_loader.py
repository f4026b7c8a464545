"""Scenario durations, model and loader: defaults, every key, and one-line errors with file and line."""

import textwrap
from pathlib import Path

import pytest
import redis

from sandbox.errors import ExitCode, UsageError
from sandbox.scenario.durations import FormatError, parse_duration, parse_rate
from sandbox.scenario.loader import ScenarioError, load_scenario, parse_scenario
from sandbox.scenario.model import Phase

MINIMAL = """\
name: ten-messages
producer:
  queue: opik:optimizer-cloud
  function: sandbox.worker.jobs.process_optimizer_job
phases:
  - messages: 10
"""

FULL = """\
name: full.example_1
description: "every key given"
services: [redis, mysql, clickhouse]
backend: docker
redis:
  persistence: aof-always
workers:
  count: 4
  mode: simple
  queues: [high, low]
  serializer: rq.serializers.JSONSerializer
  decode_responses: true
  pythonpath: [jobs]
  job_timeout: 2m
producer:
  profile: java-legacy-zlib
  queue: opik:optimizer-cloud
  function: sandbox.worker.jobs.process_optimizer_job
  ttl: 2h
  description: optimizer run
  clock_precision: nanos
  batched: true
job:
  work: 500ms
  failure_rate: 0.25
  seed: 42
phases:
  - name: warm-up
    messages: 5
    rate: 20/s
    payload: "Test_{n}_{phase}_{i}"
  - duration: 10s
    ramp: {from: 10/s, to: 30/s}
    payload:
      user: "u{n}"
      tags: ["{phase}", 3, true, null, 1.5]
  - messages: 100
    rate: burst
  - duration: 1.5m
    rate: 600/min
expect:
  finished: 1000
  failed: 5
  abandoned: 0
  expired: 0
  pending: 0
  deadline: 30s
  latency:
    - "p95_total_ms < 2000"
    - "max_queue_wait_ms<=150.5"
  errors:
    - contains: "'utf-8' codec can't decode byte 0x9c"
    - contains: "boom"
      count: 3
    - contains: "late"
      at_least: 2
  worker_crash: true
"""


def error_of(text: str, path: str = "x.yaml") -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, path=path)
    return caught.value


# Durations and rates


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), ("2min", 120.0), ("1h", 3600.0), ("1d", 86400.0),
     (" 3 s ", 3.0), ("10", 10.0), (".5s", 0.5), (7, 7.0), (0.25, 0.25), ("0", 0.0)],
)
def test_parse_duration_valid(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "5 seconds", "1.5.2s", "5x", "-1s", "1e3s", True, None, [1]])
def test_parse_duration_rejects_form(text):
    with pytest.raises(FormatError) as caught:
        parse_duration(text)
    assert "use <number>ms, <number>s" in str(caught.value)


@pytest.mark.parametrize("value", [-1, float("inf"), float("nan")])
def test_parse_duration_rejects_value(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("text", "per_s"),
    [("20/s", 20.0), ("600/min", 10.0), ("0.5/s", 0.5), (" 3 / s ", 3.0), ("1000000/s", 1_000_000.0)],
)
def test_parse_rate_valid(text, per_s):
    assert parse_rate(text) == per_s


@pytest.mark.parametrize("text", ["20", "20/h", "20 per second", "burst", "/s", "-5/s", 20])
def test_parse_rate_rejects_form(text):
    with pytest.raises(FormatError) as caught:
        parse_rate(text)
    assert "<number>/s or <number>/min" in str(caught.value)


@pytest.mark.parametrize(("text", "word"), [("0/s", "greater than 0"), ("1000001/s", "maximum")])
def test_parse_rate_rejects_range(text, word):
    with pytest.raises(ValueError) as caught:
        parse_rate(text)
    assert not isinstance(caught.value, FormatError)
    assert word in str(caught.value)


# Valid scenarios


def test_minimal_scenario_defaults():
    scenario = parse_scenario(MINIMAL)

    assert scenario.name == "ten-messages"
    assert scenario.description is None
    assert scenario.path is None
    assert scenario.services == ("redis",)
    assert scenario.backend == "local"
    assert scenario.redis.persistence == "none"

    assert scenario.workers.count == 1
    assert scenario.workers.mode == "process"
    assert scenario.workers.queues == ("opik:optimizer-cloud",)
    assert scenario.workers.serializer == "json"
    assert scenario.workers.decode_responses is False
    assert scenario.workers.pythonpath == ()
    assert scenario.workers.job_timeout_s is None

    assert scenario.producer.profile == "java"
    assert scenario.producer.queue == "opik:optimizer-cloud"
    assert scenario.producer.function == "sandbox.worker.jobs.process_optimizer_job"
    assert scenario.producer.ttl_s == 86400
    assert scenario.producer.description is None
    assert scenario.producer.clock_precision == "micros"
    assert scenario.producer.batched is False

    assert scenario.job.work_s == 0.0
    assert scenario.job.failure_rate == 0.0
    assert scenario.job.seed == 0

    assert scenario.phases == (Phase(name="phase-1", messages=10),)
    assert scenario.phases[0].is_burst
    assert scenario.phases[0].payload == "Test_{n}"
    assert scenario.total_messages == 10

    expect = scenario.expect
    assert (expect.finished, expect.failed, expect.abandoned, expect.expired, expect.pending) == (None,) * 5
    assert expect.deadline_s == 60.0
    assert expect.latency == ()
    assert expect.errors == ()
    # None: no crash is expected unless the workers restart dead ones.
    assert expect.worker_crash is None


def test_minimal_scenario_renders_payload():
    phase = parse_scenario(MINIMAL).phases[0]

    assert phase.render_payload(7, 6) == "Test_7"


def test_full_scenario_every_key(tmp_path):
    (tmp_path / "jobs").mkdir()
    scenario_file = tmp_path / "full.yaml"
    scenario_file.write_text(FULL, encoding="utf-8")

    scenario = load_scenario(scenario_file)

    assert scenario.name == "full.example_1"
    assert scenario.description == "every key given"
    assert scenario.path == scenario_file
    assert scenario.services == ("redis", "mysql", "clickhouse")
    assert scenario.backend == "docker"
    assert scenario.redis.persistence == "aof-always"

    workers = scenario.workers
    assert workers.count == 4
    assert workers.mode == "simple"
    assert workers.queues == ("high", "low")
    assert workers.serializer == "rq.serializers.JSONSerializer"
    assert workers.decode_responses is True
    assert workers.pythonpath == ((tmp_path / "jobs").resolve(),)
    assert workers.job_timeout_s == 120.0

    producer = scenario.producer
    assert producer.profile == "java-legacy-zlib"
    assert producer.queue == "opik:optimizer-cloud"
    assert producer.function == "sandbox.worker.jobs.process_optimizer_job"
    assert producer.ttl_s == 7200
    assert isinstance(producer.ttl_s, int)
    assert producer.description == "optimizer run"
    assert producer.clock_precision == "nanos"
    assert producer.batched is True

    assert scenario.job.work_s == 0.5
    assert scenario.job.failure_rate == 0.25
    assert scenario.job.seed == 42

    warm_up, ramp, burst, timed = scenario.phases
    assert (warm_up.name, warm_up.messages, warm_up.rate_per_s, warm_up.ramp, warm_up.duration_s) == (
        "warm-up", 5, 20.0, None, None)
    assert warm_up.render_payload(3, 2) == "Test_3_warm-up_2"
    assert (ramp.name, ramp.messages, ramp.rate_per_s, ramp.ramp, ramp.duration_s) == (
        "phase-2", 200, None, (10.0, 30.0), 10.0)
    assert ramp.render_payload(8, 0) == {"user": "u8", "tags": ["phase-2", 3, True, None, 1.5]}
    assert ramp.payload == {"user": "u{n}", "tags": ["{phase}", 3, True, None, 1.5]}
    assert (burst.name, burst.messages, burst.is_burst) == ("phase-3", 100, True)
    assert (timed.messages, timed.rate_per_s, timed.duration_s) == (900, 10.0, 90.0)
    assert scenario.total_messages == 5 + 200 + 100 + 900

    expect = scenario.expect
    assert (expect.finished, expect.failed, expect.abandoned, expect.expired, expect.pending) == (1000, 5, 0, 0, 0)
    assert expect.deadline_s == 30.0
    first, second = expect.latency
    assert (first.stat, first.timing, first.op, first.value, first.text) == ("p95", "total", "<", 2000.0, "p95_total_ms < 2000")
    assert (second.stat, second.timing, second.op, second.value) == ("max", "queue_wait", "<=", 150.5)
    assert first.metric == "p95_total_ms"
    assert first.passes(1999.9) is True
    assert first.passes(2000.0) is False
    decode, exact, minimum = expect.errors
    assert (decode.contains, decode.count, decode.at_least) == ("'utf-8' codec can't decode byte 0x9c", None, 1)
    assert (exact.contains, exact.count, exact.at_least) == ("boom", 3, None)
    assert (minimum.contains, minimum.count, minimum.at_least) == ("late", None, 2)
    assert expect.worker_crash is True


def test_null_sections_use_defaults():
    scenario = parse_scenario(MINIMAL + "redis:\nworkers:\njob:\nexpect:\n")

    assert scenario.workers.queues == ("opik:optimizer-cloud",)
    assert scenario.expect.deadline_s == 60.0


def test_producer_omit_and_extra_fields():
    scenario = parse_scenario(MINIMAL.replace(
        "  function: sandbox.worker.jobs.process_optimizer_job\n",
        "  function: sandbox.worker.jobs.process_optimizer_job\n"
        "  omit_fields: [status, timeout_in_sec]\n"
        "  extra_fields: {timeout: 30, worker_name: ''}\n",
    ))

    assert scenario.producer.omit_fields == ("status", "timeout_in_sec")
    # Integers are stored as their digits, as Redis keeps text.
    assert scenario.producer.extra_fields == {"timeout": "30", "worker_name": ""}


def test_producer_fields_defaults():
    scenario = parse_scenario(MINIMAL)

    assert scenario.producer.omit_fields == ()
    assert scenario.producer.extra_fields == {}


def test_producer_fields_reach_the_job_hash(redis_url, tmp_path):
    from sandbox.scenario.runner import Runner, RunOptions

    scenario = parse_scenario(
        "name: fields\n"
        "workers:\n  count: 0\n"
        "producer:\n  queue: q\n  function: sandbox.worker.jobs.process_hello_world\n"
        "  omit_fields: [status]\n  extra_fields: {timeout: 30}\n"
        "phases:\n  - messages: 1\n"
    )

    runner = Runner(scenario, RunOptions(redis_url=redis_url, state_dir=tmp_path))
    runner.run()

    (sent,) = runner.state.sent
    stored = redis.Redis.from_url(redis_url).hgetall(f"rq:job:{sent.job_id}")
    assert b"status" not in stored
    assert stored[b"timeout"] == b"30"
    assert stored[b"timeout_in_sec"] == b"86400"


def test_job_timeout_null_is_none():
    scenario = parse_scenario(MINIMAL + "workers:\n  job_timeout: null\n")

    assert scenario.workers.job_timeout_s is None


def test_phase_escaped_braces():
    scenario = parse_scenario(MINIMAL.replace("  - messages: 10\n", "  - messages: 1\n    payload: '{{\"n\": {n:03d}}}'\n"))

    assert scenario.phases[0].render_payload(5, 0) == '{"n": 005}'


def test_scenario_error_is_usage_error():
    error = error_of("name: [")

    assert isinstance(error, UsageError)
    assert error.exit_code == ExitCode.USAGE


# Bad input: (case id, YAML text, expected "file:line: field" prefix, a key word of the problem)

PRODUCER = "producer:\n  queue: q\n  function: a.b\n"
PHASES = "phases:\n  - messages: 10\n"
HEAD = "name: t\n" + PRODUCER + PHASES  # lines 1-6; anything appended starts on line 7


def with_phase(body: str) -> str:
    """A scenario whose only phase is `body`, indented under `phases:` starting on line 6."""
    return "name: t\n" + PRODUCER + "phases:\n" + textwrap.indent(body, "    ").replace("    ", "  - ", 1)


BAD = [
    # YAML itself and the top level
    ("not-yaml", "name: t\nphases: [\n", "x.yaml:3:", "invalid YAML"),
    ("bad-indent", "name: t\n  producer: x\n", "x.yaml:2:", "invalid YAML"),
    ("tab", "name: t\n\tproducer: x\n", "x.yaml:2:", "invalid YAML"),
    ("two-documents", "name: t\n---\nname: u\n", "x.yaml:2:", "invalid YAML"),
    ("empty", "", "x.yaml:", "empty"),
    ("only-comments", "# nothing\n\n", "x.yaml:", "empty"),
    ("top-list", "- name: t\n", "x.yaml:1:", "must be a mapping"),
    ("top-scalar", "just text\n", "x.yaml:1:", "must be a mapping"),
    ("unknown-top", HEAD + "colour: red\n", "x.yaml:7: colour:", "unknown key"),
    ("typo-suggests", HEAD + "worker: {}\n", "x.yaml:7: worker:", "did you mean 'workers'"),
    ("duplicate-top", HEAD + "name: u\n", "x.yaml:7: name:", "duplicate key (first given on line 1)"),
    ("merge-key-top", "<<: {name: t}\n" + PRODUCER + PHASES, "x.yaml:1:", "merge keys"),
    ("merge-key-in-workers", HEAD + "workers:\n  <<: {count: 1}\n", "x.yaml:8: workers:", "merge keys"),
    ("non-string-key", HEAD + "1: x\n", "x.yaml:7:", "keys must be strings"),
    ("tag-int-text", HEAD + "workers:\n  count: !!int abc\n", "x.yaml:8: workers.count:", "invalid value for tag"),
    ("tag-bad-date", HEAD + "description: !!timestamp 2024-13-45\n", "x.yaml:7: description:", "invalid value for tag"),
    ("tag-binary", HEAD + "description: !!binary aGk=\n", "x.yaml:7: description:", "expected a string, got a bytes"),
    ("python-tag", HEAD + "description: !!python/object:os.system x\n", "x.yaml:7: description:", "constructor"),
    # name, description, services, backend, redis
    ("missing-name", PRODUCER + PHASES, "x.yaml:1: name:", "required key is missing"),
    ("bad-name", "name: ten messages\n" + PRODUCER + PHASES, "x.yaml:1: name:", "not a valid name"),
    ("name-int", "name: 10\n" + PRODUCER + PHASES, "x.yaml:1: name:", "expected a string, got an integer 10"),
    ("description-list", HEAD + "description: [a]\n", "x.yaml:7: description:", "expected a string, got a list"),
    ("services-string", HEAD + "services: redis\n", "x.yaml:7: services:", "expected a list"),
    ("services-unknown", HEAD + "services: [redis, postgres]\n", "x.yaml:7: services[1]:", "not one of redis, mysql, clickhouse"),
    ("services-no-redis", HEAD + "services: [mysql]\n", "x.yaml:7: services:", "must contain redis"),
    ("services-twice", HEAD + "services: [redis, redis]\n", "x.yaml:7: services[1]:", "listed twice"),
    ("backend", HEAD + "backend: k8s\n", "x.yaml:7: backend:", "'k8s' is not one of local, docker"),
    ("redis-persistence", HEAD + "redis:\n  persistence: rdb\n", "x.yaml:8: redis.persistence:", "not one of none, aof-everysec"),
    ("redis-unknown", HEAD + "redis:\n  port: 6380\n", "x.yaml:8: redis.port:", "unknown key; allowed: persistence"),
    ("redis-list", HEAD + "redis: [a]\n", "x.yaml:7: redis:", "expected a mapping, got a list"),
    # workers
    ("workers-mode", HEAD + "workers:\n  mode: forked\n", "x.yaml:8: workers.mode:", "'forked' is not one of process, simple, thread"),
    ("workers-count-string", HEAD + "workers:\n  count: '10'\n", "x.yaml:8: workers.count:", "expected an integer, got a string '10'"),
    ("workers-count-bool", HEAD + "workers:\n  count: true\n", "x.yaml:8: workers.count:", "expected an integer, got a boolean"),
    ("workers-count-float", HEAD + "workers:\n  count: 2.0\n", "x.yaml:8: workers.count:", "expected an integer, got a number"),
    ("workers-count-negative", HEAD + "workers:\n  count: -1\n", "x.yaml:8: workers.count:", "out of range; use 0..64"),
    ("workers-count-absurd", HEAD + "workers:\n  count: 1000\n", "x.yaml:8: workers.count:", "out of range"),
    ("workers-count-null", HEAD + "workers:\n  count:\n", "x.yaml:8: workers.count:", "expected an integer, got null"),
    ("workers-queues-empty", HEAD + "workers:\n  queues: []\n", "x.yaml:8: workers.queues:", "at least one queue"),
    ("workers-queue-space", HEAD + "workers:\n  queues: ['a b']\n", "x.yaml:8: workers.queues[0]:", "not a queue name"),
    ("workers-queue-spaces-kept", HEAD + "workers:\n  queues: ['a  b']\n", "x.yaml:8: workers.queues[0]:", "'a  b' is not a queue name"),
    ("workers-queue-twice", HEAD + "workers:\n  queues: [a, a]\n", "x.yaml:8: workers.queues[1]:", "listed twice"),
    ("workers-serializer", HEAD + "workers:\n  serializer: msgpack\n", "x.yaml:8: workers.serializer:", "not a serializer"),
    ("workers-decode-string", HEAD + "workers:\n  decode_responses: 'false'\n", "x.yaml:8: workers.decode_responses:", "expected true or false"),
    ("workers-pythonpath-missing", HEAD + "workers:\n  pythonpath: [no-such-folder-here]\n", "x.yaml:8: workers.pythonpath[0]:", "folder not found"),
    ("workers-pythonpath-string", HEAD + "workers:\n  pythonpath: src\n", "x.yaml:8: workers.pythonpath:", "expected a list"),
    ("workers-timeout-bad", HEAD + "workers:\n  job_timeout: soon\n", "x.yaml:8: workers.job_timeout:", "not a duration"),
    ("workers-timeout-short", HEAD + "workers:\n  job_timeout: 500ms\n", "x.yaml:8: workers.job_timeout:", "at least 1s"),
    ("workers-unknown", HEAD + "workers:\n  count: 1\n  burst: true\n", "x.yaml:9: workers.burst:", "unknown key"),
    # producer
    ("producer-missing", "name: t\n" + PHASES, "x.yaml:1: producer:", "required key is missing"),
    ("producer-null", "name: t\nproducer:\n" + PHASES, "x.yaml:2: producer.queue:", "required key is missing"),
    ("producer-queue-missing", "name: t\nproducer:\n  function: a.b\n" + PHASES, "x.yaml:3: producer.queue:", "required key is missing"),
    ("producer-function-missing", "name: t\nproducer:\n  queue: q\n" + PHASES, "x.yaml:3: producer.function:", "required key is missing"),
    ("producer-colour", "name: t\nproducer:\n  colour: red\n  queue: q\n  function: a.b\n" + PHASES,
     "x.yaml:3: producer.colour:",
     "unknown key; allowed: profile, queue, function, ttl, description, clock_precision, batched, omit_fields, extra_fields"),
    ("producer-queue-empty", "name: t\nproducer:\n  queue: ''\n  function: a.b\n" + PHASES, "x.yaml:3: producer.queue:", "not a queue name"),
    ("producer-function-bare", "name: t\nproducer:\n  queue: q\n  function: process\n" + PHASES, "x.yaml:4: producer.function:", "not a dotted path"),
    ("producer-profile", "name: t\nproducer:\n  queue: q\n  function: a.b\n  profile: go\n" + PHASES, "x.yaml:5: producer.profile:", "not one of java, java-legacy-zlib, rq-native"),
    ("producer-ttl-short", "name: t\nproducer:\n  queue: q\n  function: a.b\n  ttl: 0s\n" + PHASES, "x.yaml:5: producer.ttl:", "at least 1s"),
    ("producer-ttl-long", "name: t\nproducer:\n  queue: q\n  function: a.b\n  ttl: 400d\n" + PHASES, "x.yaml:5: producer.ttl:", "maximum is 365d"),
    ("producer-ttl-fraction", "name: t\nproducer:\n  queue: q\n  function: a.b\n  ttl: 1.5s\n" + PHASES, "x.yaml:5: producer.ttl:", "whole number of seconds"),
    ("producer-ttl-negative", "name: t\nproducer:\n  queue: q\n  function: a.b\n  ttl: -5\n" + PHASES, "x.yaml:5: producer.ttl:", "negative"),
    ("producer-precision", "name: t\nproducer:\n  queue: q\n  function: a.b\n  clock_precision: seconds\n" + PHASES, "x.yaml:5: producer.clock_precision:", "not one of nanos, micros, millis"),
    ("producer-batched-int", "name: t\nproducer:\n  queue: q\n  function: a.b\n  batched: 1\n" + PHASES, "x.yaml:5: producer.batched:", "expected true or false"),
    ("producer-duplicate", "name: t\nproducer:\n  queue: q\n  queue: r\n  function: a.b\n" + PHASES, "x.yaml:4: producer.queue:", "duplicate key"),
    ("producer-omit-unknown", "name: t\n" + PRODUCER + "  omit_fields: [colour]\n" + PHASES,
     "x.yaml:5: producer.omit_fields[0]:", "'colour' is not one of id, created_at"),
    ("producer-omit-string", "name: t\n" + PRODUCER + "  omit_fields: status\n" + PHASES,
     "x.yaml:5: producer.omit_fields:", "expected a list"),
    ("producer-omit-twice", "name: t\n" + PRODUCER + "  omit_fields: [status, status]\n" + PHASES,
     "x.yaml:5: producer.omit_fields[1]:", "listed twice"),
    ("producer-extra-list", "name: t\n" + PRODUCER + "  extra_fields: [timeout]\n" + PHASES,
     "x.yaml:5: producer.extra_fields:", "expected a mapping"),
    ("producer-extra-float", "name: t\n" + PRODUCER + "  extra_fields: {timeout: 1.5}\n" + PHASES,
     "x.yaml:5: producer.extra_fields.timeout:", "expected a string or an integer"),
    ("producer-extra-bool", "name: t\n" + PRODUCER + "  extra_fields: {timeout: true}\n" + PHASES,
     "x.yaml:5: producer.extra_fields.timeout:", "expected a string or an integer"),
    ("producer-extra-empty-name", "name: t\n" + PRODUCER + "  extra_fields: {'': x}\n" + PHASES,
     "x.yaml:5: producer.extra_fields.:", "field name is empty"),
    ("producer-extra-and-omit", "name: t\n" + PRODUCER + "  omit_fields: [status]\n  extra_fields: {status: started}\n" + PHASES,
     "x.yaml:6: producer.extra_fields.status:", "also in omit_fields"),
    ("producer-omit-rq-native", "name: t\n" + PRODUCER + "  profile: rq-native\n  omit_fields: [status]\n" + PHASES,
     "x.yaml:6: producer.omit_fields:", "not rq-native"),
    ("producer-extra-rq-native", "name: t\n" + PRODUCER + "  profile: rq-native\n  extra_fields: {a: b}\n" + PHASES,
     "x.yaml:6: producer.extra_fields:", "not rq-native"),
    # job
    ("job-work-negative", HEAD + "job:\n  work: -1\n", "x.yaml:8: job.work:", "negative"),
    ("job-work-text", HEAD + "job:\n  work: a while\n", "x.yaml:8: job.work:", "not a duration"),
    ("job-failure-rate-high", HEAD + "job:\n  failure_rate: 1.5\n", "x.yaml:8: job.failure_rate:", "1.5 is out of range; use 0..1"),
    ("job-failure-rate-string", HEAD + "job:\n  failure_rate: '0.5'\n", "x.yaml:8: job.failure_rate:", "expected a number"),
    ("job-seed-float", HEAD + "job:\n  seed: 1.5\n", "x.yaml:8: job.seed:", "expected an integer"),
    # phases
    ("phases-missing", "name: t\n" + PRODUCER, "x.yaml:1: phases:", "required key is missing"),
    ("phases-empty", "name: t\n" + PRODUCER + "phases: []\n", "x.yaml:5: phases:", "at least one phase"),
    ("phases-mapping", "name: t\n" + PRODUCER + "phases: {messages: 1}\n", "x.yaml:5: phases:", "expected a list"),
    ("phase-null", "name: t\n" + PRODUCER + "phases:\n  -\n", "x.yaml:6: phases[0]:", "expected a mapping"),
    ("phase-both", with_phase("messages: 10\nduration: 10s\nrate: 1/s\n"), "x.yaml:6: phases[0]:", "both given"),
    ("phase-neither", with_phase("rate: 1/s\n"), "x.yaml:6: phases[0]:", "either messages or duration"),
    ("phase-rate-and-ramp", with_phase("messages: 5\nrate: 1/s\nramp: {from: 1/s, to: 2/s}\n"), "x.yaml:6: phases[0]:", "rate and ramp"),
    ("phase-messages-zero", with_phase("messages: 0\n"), "x.yaml:6: phases[0].messages:", "out of range"),
    ("phase-messages-absurd", with_phase("messages: 20_000_000\n"), "x.yaml:6: phases[0].messages:", "out of range"),
    ("phase-messages-string", with_phase("messages: '10'\n"), "x.yaml:6: phases[0].messages:", "expected an integer"),
    ("phase-rate-words", with_phase("messages: 10\nrate: 20 per second\n"), "x.yaml:7: phases[0].rate:",
     "'20 per second' is not a rate; use <number>/s, <number>/min or burst"),
    ("phase-rate-number", with_phase("messages: 10\nrate: 20\n"), "x.yaml:7: phases[0].rate:", "not a rate"),
    ("phase-rate-zero", with_phase("messages: 10\nrate: 0/s\n"), "x.yaml:7: phases[0].rate:", "greater than 0"),
    ("phase-rate-absurd", with_phase("messages: 10\nrate: 5000000/s\n"), "x.yaml:7: phases[0].rate:", "maximum rate"),
    ("phase-duration-burst", with_phase("duration: 10s\n"), "x.yaml:6: phases[0].duration:", "needs a rate or a ramp"),
    ("phase-duration-zero", with_phase("duration: 0s\nrate: 1/s\n"), "x.yaml:6: phases[0].duration:", "greater than 0"),
    ("phase-duration-too-few", with_phase("duration: 1s\nrate: 0.2/s\n"), "x.yaml:6: phases[0].duration:", "gives 0 messages"),
    ("phase-ramp-burst", with_phase("messages: 5\nramp: {from: burst, to: 2/s}\n"), "x.yaml:7: phases[0].ramp.from:", "not a rate"),
    ("phase-ramp-missing-to", with_phase("messages: 5\nramp: {from: 1/s}\n"), "x.yaml:7: phases[0].ramp.to:", "required key is missing"),
    ("phase-ramp-unknown", with_phase("messages: 5\nramp: {from: 1/s, to: 2/s, over: 3s}\n"), "x.yaml:7: phases[0].ramp.over:", "unknown key; allowed: from, to"),
    ("phase-unknown-key", with_phase("messages: 5\nbatch: 3\n"), "x.yaml:7: phases[0].batch:", "unknown key"),
    ("phase-name-twice", "name: t\n" + PRODUCER + "phases:\n  - {messages: 1}\n  - {messages: 1, name: phase-1}\n",
     "x.yaml:7: phases[1].name:", "unique"),
    ("payload-placeholder", with_phase("messages: 5\npayload: 'x {m}'\n"), "x.yaml:7: phases[0].payload:", "unknown placeholder {m}"),
    ("payload-brace", with_phase("messages: 5\npayload: 'x {'\n"), "x.yaml:7: phases[0].payload:", "invalid template"),
    ("payload-nested", with_phase("messages: 5\npayload:\n  a:\n    - '{q}'\n"), "x.yaml:9: phases[0].payload.a[0]:", "unknown placeholder {q}"),
    ("payload-number", with_phase("messages: 5\npayload: 42\n"), "x.yaml:7: phases[0].payload:", "expected a string template"),
    ("payload-date", with_phase("messages: 5\npayload: {when: 2024-01-01}\n"), "x.yaml:7: phases[0].payload.when:", "not a JSON value"),
    ("payload-nan", with_phase("messages: 5\npayload: [.nan]\n"), "x.yaml:7: phases[0].payload[0]:", "not a JSON value"),
    ("payload-alias-loop", with_phase("messages: 5\npayload: &loop [*loop]\n"), "x.yaml:7: phases[0].payload:", "too large"),
    ("payload-duplicate", with_phase("messages: 5\npayload: {a: 1, a: 2}\n"), "x.yaml:7: phases[0].payload.a:", "duplicate key"),
    # expect
    ("expect-finished-too-many", HEAD + "expect:\n  finished: 11\n", "x.yaml:8: expect.finished:", "more jobs than the scenario enqueues (10)"),
    ("expect-sum-too-many", HEAD + "expect:\n  finished: 6\n  failed: 6\n", "x.yaml:8: expect:", "add up to 12"),
    ("expect-failed-negative", HEAD + "expect:\n  failed: -1\n", "x.yaml:8: expect.failed:", "-1 is out of range; use 0 or more"),
    ("expect-pending-string", HEAD + "expect:\n  pending: 'none'\n", "x.yaml:8: expect.pending:", "expected an integer"),
    ("expect-deadline-zero", HEAD + "expect:\n  deadline: 0\n", "x.yaml:8: expect.deadline:", "greater than 0"),
    ("expect-latency-stat", HEAD + "expect:\n  latency: ['p90_total_ms < 5']\n", "x.yaml:8: expect.latency[0]:", "not a latency rule"),
    ("expect-latency-op", HEAD + "expect:\n  latency:\n    - 'p95_total_ms != 5'\n", "x.yaml:9: expect.latency[0]:", "not a latency rule"),
    ("expect-latency-string", HEAD + "expect:\n  latency: 'p95_total_ms < 5'\n", "x.yaml:8: expect.latency:", "expected a list"),
    ("expect-errors-no-contains", HEAD + "expect:\n  errors:\n    - count: 1\n", "x.yaml:9: expect.errors[0].contains:", "required key is missing"),
    ("expect-errors-both", HEAD + "expect:\n  errors:\n    - {contains: x, count: 1, at_least: 1}\n", "x.yaml:9: expect.errors[0]:", "both given"),
    ("expect-errors-unknown", HEAD + "expect:\n  errors:\n    - {contains: x, regex: y}\n", "x.yaml:9: expect.errors[0].regex:", "unknown key; allowed: contains, count, at_least"),
    ("expect-errors-empty-text", HEAD + "expect:\n  errors:\n    - {contains: ''}\n", "x.yaml:9: expect.errors[0].contains:", "is empty"),
    ("expect-crash-string", HEAD + "expect:\n  worker_crash: 'no'\n", "x.yaml:8: expect.worker_crash:", "expected true or false"),
    ("expect-unknown", HEAD + "expect:\n  succeeded: 1\n", "x.yaml:8: expect.succeeded:", "unknown key"),
]


@pytest.mark.parametrize(("text", "prefix", "word"), [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_input_one_line_error(text, prefix, word):
    message = str(error_of(text))

    # The prefix runs up to the field path, and a space then starts the problem text.
    assert message[: len(prefix)] == prefix
    assert message[len(prefix)] == " "
    assert word in message
    assert "\n" not in message


def test_error_attributes():
    error = error_of(HEAD + "workers:\n  mode: forked\n")

    assert error.file == "x.yaml"
    assert error.line == 8
    assert error.field == "workers.mode"
    assert error.problem == "'forked' is not one of process, simple, thread"
    assert str(error) == "x.yaml:8: workers.mode: 'forked' is not one of process, simple, thread"


def test_error_path_label_in_subfolder():
    error = error_of(HEAD + "backend: k8s\n", path="scenarios/x.yaml")

    assert str(error).startswith("scenarios/x.yaml:7: backend: ")


def test_pythonpath_relative_to_file(tmp_path):
    (tmp_path / "jobs").mkdir()
    (tmp_path / "plain.txt").write_text("x", encoding="utf-8")
    text = HEAD + "workers:\n  pythonpath: [jobs, plain.txt]\n"

    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, path=tmp_path / "s.yaml")

    assert str(caught.value).startswith(f"{tmp_path / 's.yaml'}:8: workers.pythonpath[1]: is not a folder")


# Files


def test_file_not_found(tmp_path):
    missing = tmp_path / "missing.yaml"

    with pytest.raises(ScenarioError) as caught:
        load_scenario(missing)

    assert str(caught.value) == f"{missing}: file not found"


def test_file_is_folder(tmp_path):
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path)

    assert str(caught.value) == f"{tmp_path}: is a folder, not a scenario file"


def test_file_not_utf8(tmp_path):
    scenario_file = tmp_path / "latin.yaml"
    scenario_file.write_bytes(b"name: t\ndescription: caf\xe9\n")

    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario_file)

    assert str(caught.value).startswith(f"{scenario_file}:2: not UTF-8 text (byte 0xe9)")


def test_file_empty(tmp_path):
    scenario_file = tmp_path / "empty.yaml"
    scenario_file.write_bytes(b"")

    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario_file)

    assert str(caught.value).startswith(f"{scenario_file}: the file is empty")


def test_file_too_large(tmp_path):
    scenario_file = tmp_path / "huge.yaml"
    scenario_file.write_bytes(b"#" * (1024 * 1024 + 1))

    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario_file)

    assert "too large" in str(caught.value)


def test_file_with_bom(tmp_path):
    scenario_file = tmp_path / "bom.yaml"
    scenario_file.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())

    scenario = load_scenario(scenario_file)

    assert scenario.name == "ten-messages"
    assert scenario.path == Path(scenario_file)


def test_file_yaml_error_line(tmp_path):
    scenario_file = tmp_path / "broken.yaml"
    scenario_file.write_text(MINIMAL + "expect:\n  finished: [1\n", encoding="utf-8")

    with pytest.raises(ScenarioError) as caught:
        load_scenario(scenario_file)

    assert str(caught.value).startswith(f"{scenario_file}:9: invalid YAML")


def test_docs_example_loads():
    docs = Path(__file__).resolve().parent.parent / "docs" / "scenarios.md"
    example = docs.read_text(encoding="utf-8").split("## Full example")[1].split("```yaml\n")[1].split("```")[0]

    scenario = parse_scenario(example, path=docs)

    assert scenario.name == "decode-failure"
    assert [phase.messages for phase in scenario.phases] == [10, 200]
    assert scenario.total_messages == 210
    assert scenario.expect.errors[0].count == 2
    assert scenario.expect.pending == 210
    assert scenario.expect.worker_crash is True
    assert (scenario.producer.omit_fields, scenario.producer.extra_fields) == ((), {})
    assert scenario.phases[1].render_payload(11, 0) == {"message": "Test_11", "phase": "ramp", "index": "0"}


@pytest.mark.parametrize(("path", "expected"), [("", "<empty path>: no scenario file given"), ("a\0b", "a\0b: invalid file name")])
def test_file_name_invalid(path, expected):
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)

    assert str(caught.value).startswith(expected)
