"""The contract check finds each known break in job hashes, using a real Redis and the installed rq."""

import argparse
import json
import time

import pytest
import redis
from rq.job import Job
from rq.serializers import JSONSerializer

from sandbox.contract.check import check_job, check_jobs, locate
from sandbox.contract.check_cli import add_check_arguments, run_check
from sandbox.cli import main
from sandbox.contract.profiles import ProfileOptions
from sandbox.errors import ExitCode, UsageError
from sandbox.producer.publisher import Publisher
from tests.conftest import TEST_PASSWORD, drain

QUEUE = "opik:optimizer-cloud"
FUNC = "sandbox.worker.jobs.process_hello_world"
ZLIB_UTF8_ERROR = "'utf-8' codec can't decode byte 0x9c in position 1: invalid start byte"




def publish(connection, func=FUNC, queue=QUEUE, **options) -> str:
    return Publisher(connection, ProfileOptions(**options)).enqueue(queue, func, ["Test_1"])


def with_field(connection, name: str, value, **options) -> str:
    """Publish a java job whose field `name` contains `value` instead of the writer's own."""
    return publish(connection, omit_fields=(name,), extra_fields={name: value}, **options)


def by_rule(findings, rule):
    return [finding for finding in findings if finding.rule == rule]


def severities(findings):
    return {finding.severity for finding in findings}


def test_clean_java_job_has_no_error(connection):
    job_id = publish(connection, name="java", clock_precision="micros")

    findings = check_job(connection, job_id)

    assert "error" not in severities(findings)
    ignored = by_rule(findings, "field-ignored")
    assert [finding.field for finding in ignored] == ["timeout_in_sec"]
    assert ignored[0].severity == "warning"
    assert "180 s" in ignored[0].message
    assert ignored[0].value == "86400"


def test_clean_rq_native_job_has_no_error(connection):
    job_id = publish(connection, name="rq-native")

    findings = check_job(connection, job_id)

    assert "error" not in severities(findings)
    assert by_rule(findings, "field-ignored") == []
    assert by_rule(findings, "data-zlib")[0].severity == "info"


def test_zlib_data_with_decode_responses(connection):
    job_id = publish(connection, name="java-legacy-zlib")

    findings = check_job(connection, job_id, decode_responses=True)

    data = by_rule(findings, "data-not-utf8")
    assert len(data) == 1
    assert data[0].severity == "error"
    assert data[0].job_id == job_id
    assert data[0].field == "data"
    assert ZLIB_UTF8_ERROR in data[0].message
    assert data[0].value.startswith("hex 78 9c")
    fetch = by_rule(findings, "rq-fetch")
    assert f"UnicodeDecodeError: {ZLIB_UTF8_ERROR}" in fetch[0].message


def test_zlib_data_read_as_bytes_is_fine(connection):
    job_id = publish(connection, name="java-legacy-zlib")

    findings = check_job(connection, job_id, decode_responses=False)

    assert "error" not in severities(findings)
    assert by_rule(findings, "data-zlib")[0].field == "data"


def test_decode_responses_quotes_rq(connection):
    job_id = publish(connection)
    client = redis.Redis(connection_pool=redis.ConnectionPool(**{
        **connection.connection_pool.connection_kwargs, "decode_responses": True}))
    with pytest.raises(TypeError) as raised:
        Job.fetch(job_id, connection=client, serializer=JSONSerializer)
    client.close()

    findings = check_job(connection, job_id, decode_responses=True)

    fetch = by_rule(findings, "rq-fetch")
    assert fetch[0].severity == "error"
    assert f"TypeError: {raised.value}" in fetch[0].message
    assert "decode_responses=False" in fetch[0].message


def test_data_not_json(connection):
    job_id = with_field(connection, "data", "process_hello_world('Test_1')")

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "data-not-json")
    assert finding.severity == "error"
    assert finding.field == "data"
    assert "JSONDecodeError" in finding.message
    assert "DeserializationError" in finding.message


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ('{"func": "sandbox.worker.jobs.process_noop"}', "found dict"),
        ('["sandbox.worker.jobs.process_noop", null, []]', "found 3 items"),
        ('["sandbox.worker.jobs.process_noop", null, "Test_1", {}]', "args must be a list, found str"),
        ('["sandbox.worker.jobs.process_noop", null, [], []]', "kwargs must be an object, found list"),
        ('["sandbox.worker.jobs.process_noop", {"a": 1}, [], {}]', "instance must be null"),
        ('[42, null, [], {}]', "func must be a dotted name, found int"),
    ],
)
def test_data_wrong_shape(connection, data, words):
    job_id = with_field(connection, "data", data)

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "data-shape")
    assert finding.severity == "error"
    assert finding.field == "data"
    assert words in finding.message


def test_unknown_module(connection):
    job_id = publish(connection, func="no_such_package.rq_worker.process_job")

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "func-import")
    assert finding.severity == "error"
    assert finding.value == "no_such_package.rq_worker.process_job"
    assert "No module named 'no_such_package'" in finding.message
    assert "--pythonpath" in finding.message


def test_unknown_attribute(connection):
    job_id = publish(connection, func="sandbox.worker.jobs.process_missing")

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "func-attribute")
    assert finding.severity == "error"
    assert "sandbox.worker.jobs has no attribute 'process_missing'" in finding.message


def test_pythonpath_adds_function(connection, tmp_path):
    (tmp_path / "contract_check_probe.py").write_text("def handle(message):\n    return message\n")
    job_id = publish(connection, func="contract_check_probe.handle")

    without = check_job(connection, job_id)
    with_path = check_job(connection, job_id, pythonpath=[str(tmp_path)])

    assert [finding.rule for finding in without if finding.severity == "error"] == ["func-import"]
    assert "error" not in severities(with_path)


def test_unparseable_timestamp(connection):
    job_id = with_field(connection, "created_at", "yesterday")

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "timestamp-format")
    assert finding.severity == "error"
    assert finding.field == "created_at"
    assert finding.value == "yesterday"
    assert "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" in finding.message
    fetch = by_rule(findings, "rq-fetch")
    assert "ValueError: time data 'yesterday' does not match format" in fetch[0].message


def test_nanosecond_timestamp(connection):
    job_id = publish(connection, clock_precision="nanos")
    with pytest.raises(ValueError) as raised:
        Job.fetch(job_id, connection=connection, serializer=JSONSerializer)

    findings = check_job(connection, job_id)

    timestamps = by_rule(findings, "timestamp-format")
    assert [finding.field for finding in timestamps] == ["created_at", "enqueued_at"]
    assert all(finding.severity == "error" for finding in timestamps)
    assert "9 fraction digits" in timestamps[0].message
    assert "rq 2.x parses at most 6 fraction digits" in timestamps[0].message
    [fetch] = by_rule(findings, "rq-fetch")
    assert fetch.message.startswith(f"Job.fetch raises ValueError: {raised.value}:")


def test_millisecond_timestamp_parses(connection):
    job_id = publish(connection, clock_precision="millis")

    findings = check_job(connection, job_id)

    assert by_rule(findings, "timestamp-format") == []
    assert "error" not in severities(findings)


def test_nanosecond_job_stuck_intermediate(connection):
    job_id = publish(connection, clock_precision="nanos")
    drain(connection, QUEUE)

    assert connection.lrange(f"rq:queue:{QUEUE}:intermediate", 0, -1) == [job_id.encode()]
    result = check_jobs(connection, queue=QUEUE)
    assert result.job_ids == [job_id]
    [stuck] = [finding for finding in result.findings if finding.rule == "intermediate"]
    assert stuck.severity == "warning"
    assert f"rq:queue:{QUEUE}:intermediate" in stuck.message
    assert result.has_errors


def test_missing_description(connection):
    job_id = publish(connection, omit_fields=("description",))

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "description-missing")
    assert finding.severity == "info"
    assert finding.field == "description"
    assert "rq shows none" in finding.message


def test_missing_status(connection):
    job_id = publish(connection, omit_fields=("status",))

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "status-missing")
    assert finding.severity == "warning"
    assert finding.field == "status"
    assert "'created'" in finding.message
    assert "InvalidJobOperation" in finding.message
    assert "error" not in severities(findings)


def test_invalid_status(connection):
    job_id = with_field(connection, "status", "QUEUED")

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "status-invalid")
    assert finding.severity == "error"
    assert "'QUEUED' is not an rq status" in finding.message


def test_status_inconsistent_with_queue(connection):
    job_id = with_field(connection, "status", "finished")

    findings = check_job(connection, job_id)

    messages = [finding.message for finding in by_rule(findings, "status-location")]
    assert any("a worker will run it again" in message for message in messages)
    assert any("no finished registry" in message for message in messages)


def test_queued_job_in_no_queue(connection):
    job_id = publish(connection)
    connection.delete(f"rq:queue:{QUEUE}")

    findings = check_job(connection, job_id)

    [finding] = by_rule(findings, "status-location")
    assert finding.severity == "warning"
    assert "in no queue list" in finding.message


def test_origin_missing_and_mismatch(connection):
    missing = publish(connection, omit_fields=("origin",))
    other = with_field(connection, "origin", "opik:other")

    assert by_rule(check_job(connection, missing), "origin-missing")[0].severity == "warning"
    [mismatch] = by_rule(check_job(connection, other), "origin-mismatch")
    assert mismatch.severity == "warning"
    assert QUEUE in mismatch.message


def test_id_in_queue_without_hash(connection):
    connection.rpush(f"rq:queue:{QUEUE}", "never-written")

    result = check_jobs(connection, queue=QUEUE)

    [finding] = result.findings
    assert finding.severity == "error"
    assert finding.job_id == "never-written"
    assert finding.rule == "hash-missing"
    assert "expired or never written" in finding.message
    assert "skips the id silently" in finding.message


def test_expired_hash(connection):
    job_id = publish(connection, ttl_s=1)
    deadline = time.monotonic() + 5
    while connection.exists(f"rq:job:{job_id}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not connection.exists(f"rq:job:{job_id}")

    result = check_jobs(connection, queue=QUEUE)

    assert [(f.severity, f.job_id, f.rule) for f in result.findings] == [("error", job_id, "hash-missing")]


def test_hash_without_ttl(connection):
    job_id = publish(connection)
    connection.persist(f"rq:job:{job_id}")

    [finding] = by_rule(check_job(connection, job_id), "ttl-none")

    assert finding.severity == "warning"
    assert "never expires" in finding.message


def test_unknown_job_id(connection):
    result = check_jobs(connection, job_id="no-such-job")

    [finding] = result.findings
    assert finding.rule == "hash-missing"
    assert "not found" in finding.message


def test_value_hides_url_password(connection):
    job_id = with_field(connection, "data", "redis://:hunter2@127.0.0.1:1/0 is not JSON")

    [finding] = by_rule(check_job(connection, job_id), "data-not-json")

    assert "hunter2" not in finding.value
    assert "***" in finding.value


def test_check_never_writes(connection):
    publish(connection, name="java-legacy-zlib")
    publish(connection, clock_precision="nanos")
    connection.rpush(f"rq:queue:{QUEUE}", "never-written")
    before = {key: connection.dump(key) for key in connection.scan_iter()}

    check_jobs(connection, queue=QUEUE, decode_responses=True)
    check_jobs(connection)

    after = {key: connection.dump(key) for key in connection.scan_iter()}
    assert after == before


def test_scan_skips_side_keys(connection):
    ids = [publish(connection) for _ in range(3)]
    connection.sadd(f"rq:job:{ids[0]}:dependents", "x")

    everything = check_jobs(connection)
    limited = check_jobs(connection, scan_limit=2)

    assert sorted(everything.job_ids) == sorted(ids)
    assert not everything.truncated
    assert limited.jobs_checked == 2
    assert limited.truncated


def test_findings_sorted(connection):
    publish(connection, clock_precision="nanos")
    publish(connection, omit_fields=("description",))
    connection.rpush(f"rq:queue:{QUEUE}", "0-never-written")

    findings = check_jobs(connection, queue=QUEUE).findings

    order = {"error": 0, "warning": 1, "info": 2}
    keys = [(order[f.severity], f.job_id) for f in findings]
    assert keys == sorted(keys)
    assert findings[0].severity == "error"


def test_locate_finds_finished_registry(connection):
    job_id = publish(connection)
    drain(connection, QUEUE)

    where = locate(connection, job_id)

    assert where["queues"] == {}
    assert QUEUE in where["registries"]["finished"]
    assert "error" not in severities(check_job(connection, job_id))


def check_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_check_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_exit_codes(redis_url, connection, capsys):
    clean = publish(connection)
    broken = publish(connection, clock_precision="nanos")

    assert run_check(check_args("--job", clean, "--redis-url", redis_url)) == ExitCode.OK
    assert run_check(check_args("--job", broken, "--redis-url", redis_url)) == ExitCode.FAILED

    out = capsys.readouterr().out
    assert f"error   {broken}  created_at: created_at has 9 fraction digits" in out
    assert "1 jobs checked (job " in out


def test_cli_json(redis_url, connection, capsys):
    job_id = publish(connection, name="java-legacy-zlib")

    code = run_check(check_args("--queue", QUEUE, "--decode-responses", "--json", "--redis-url", redis_url))

    document = json.loads(capsys.readouterr().out)
    assert code == ExitCode.FAILED
    assert document["jobs_checked"] == 1
    assert document["counts"]["error"] == 2
    assert {f["rule"] for f in document["findings"] if f["job_id"] == job_id} >= {"rq-fetch", "data-not-utf8"}


def test_cli_without_redis_url(monkeypatch):
    for name in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)

    with pytest.raises(UsageError, match="pass --redis-url") as raised:
        run_check(check_args("--scan"))
    assert raised.value.exit_code == ExitCode.USAGE


def test_cli_bad_serializer(redis_url):
    with pytest.raises(UsageError, match="invalid --serializer"):
        run_check(check_args("--serializer", "no_such_module.Serializer", "--redis-url", redis_url))


def test_cli_masks_password(redis_server_with_password, capsys):
    url = redis_server_with_password
    client = redis.Redis.from_url(url)
    client.flushall()
    publish(client)
    client.close()

    assert run_check(check_args("--json", "--redis-url", url)) == ExitCode.OK

    out = capsys.readouterr().out
    assert TEST_PASSWORD not in out
    assert json.loads(out)["jobs_checked"] == 1


def test_main_exit_codes(redis_url, connection, monkeypatch, capsys):
    for name in ("REDIS_URL", "REDIS_HOST"):
        monkeypatch.delenv(name, raising=False)
    clean = publish(connection)
    broken = publish(connection, name="java-legacy-zlib")

    assert main(["contract", "check", "--job", clean, "--redis-url", redis_url]) == ExitCode.OK
    assert main(["contract", "check", "--job", broken, "--decode-responses", "--redis-url", redis_url]) == 1
    assert main(["contract", "check", "--scan"]) == ExitCode.USAGE
    assert "pass --redis-url" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["contract", "check", "--queue", QUEUE, "--job", clean])
    assert raised.value.code == ExitCode.USAGE
