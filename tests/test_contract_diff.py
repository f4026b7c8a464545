"""The contract diff: the Java writer's job hash against RQ's own, on a real Redis."""

import argparse
import json

import pytest
import redis

from sandbox.contract import diff, lab_cli
from sandbox.contract.profiles import ProfileOptions
from sandbox.errors import UsageError

HELLO = "sandbox.worker.jobs.process_hello_world"


def rows_by_field(rows, source="hash"):
    return {row.field: row for row in rows if row.source == source}


def test_diff_rows(redis_url):
    connection = redis.Redis.from_url(redis_url)

    rows = diff.contract_diff(connection, "diff-queue", HELLO, ["Test_1"])

    fields = rows_by_field(rows)
    assert fields["timeout_in_sec"].verdict == diff.ONLY_JAVA
    assert fields["timeout_in_sec"].java == "86400"
    assert fields["id"].verdict == diff.ONLY_JAVA

    data = fields["data"]
    assert data.verdict == diff.FORMAT
    assert data.java == f'["{HELLO}",null,["Test_1"],{{}}]'
    assert data.rq_native.startswith("<")
    assert "78 9c" in data.rq_native
    assert "JSON text vs zlib-compressed; the same JSON once decompressed" in data.note

    only_rq = {name for name, row in fields.items() if row.verdict == diff.ONLY_RQ}
    assert {"timeout", "ttl", "started_at", "ended_at", "worker_name", "last_heartbeat"} <= only_rq
    assert fields["timeout"].rq_native == "180"
    assert fields["started_at"].rq_native == '""'

    assert (fields["status"].verdict, fields["status"].java) == (diff.SAME, "queued")
    assert fields["origin"].verdict == diff.SAME
    # Both writers use six digits by default, so only the values differ.
    assert fields["created_at"].verdict == diff.VALUE
    assert fields["created_at"].note == "each job has its own time"
    assert fields["description"].verdict == diff.VALUE
    assert fields["description"].rq_native == f"{HELLO}('Test_1')"

    restored = rows_by_field(rows, "Job.fetch")
    assert [restored[name].verdict for name in ("func_name", "args", "kwargs", "status", "origin")] == [diff.SAME] * 5
    assert restored["args"].java == '["Test_1"]'
    assert (restored["timeout"].verdict, restored["timeout"].java, restored["timeout"].rq_native) == (
        diff.VALUE, "null", "180")
    assert rows_by_field(rows, "key")["EXPIRE (s)"].verdict == diff.SAME


def test_diff_timestamp_digit_count(redis_url):
    connection = redis.Redis.from_url(redis_url)
    options = ProfileOptions(name="java", clock_precision="nanos")

    rows = diff.contract_diff(connection, "diff-queue", HELLO, ["Test_1"], java_options=options)

    created = rows_by_field(rows)["created_at"]
    digits = len(created.java.rstrip("Z").split(".")[1])
    # A nanosecond clock prints nine digits, or six when the value happens to end in 000.
    assert created.verdict == (diff.VALUE if digits == 6 else diff.FORMAT)


def test_compare_hashes_timestamp_format():
    rows = diff.compare_hashes(
        {b"created_at": b"2026-12-04T20:09:20.994035371Z", b"status": b"queued"},
        {b"created_at": b"2026-12-04T20:09:20.994101Z", b"status": b"queued"},
    )

    created, status = rows
    assert (created.field, created.verdict) == ("created_at", diff.FORMAT)
    assert created.note == (
        "ISO-8601 UTC, 9 fraction digits vs ISO-8601 UTC, 6 fraction digits; "
        "the values differ anyway: each job has its own time"
    )
    assert (status.field, status.verdict, status.java, status.rq_native) == ("status", diff.SAME, "queued", "queued")


def test_diff_leaves_no_keys_and_keeps_the_rest(redis_url):
    connection = redis.Redis.from_url(redis_url)
    connection.set("user:keep", "mine")
    connection.rpush("rq:queue:shared", "someone-elses-job")
    connection.sadd("rq:queues", "rq:queue:shared")
    before = sorted(connection.keys("*"))

    diff.contract_diff(connection, "shared", HELLO, ["Test_1"])
    diff.contract_diff(connection, diff.default_queue(), HELLO, [{"message": "Test_2"}])

    assert sorted(connection.keys("*")) == before
    assert connection.lrange("rq:queue:shared", 0, -1) == [b"someone-elses-job"]
    # The diff's own queue was added to rq:queues by rq's enqueue and removed again; the shared one stays.
    assert connection.smembers("rq:queues") == {b"rq:queue:shared"}


def test_diff_rejects_non_java_options(redis_url):
    connection = redis.Redis.from_url(redis_url)

    with pytest.raises(ValueError, match="java profile"):
        diff.contract_diff(connection, "q", HELLO, [], java_options=ProfileOptions(name="rq-native"))
    assert connection.keys("*") == []


def test_shape_names_formats():
    assert diff.shape(b"2026-12-04T20:09:20.994035371Z") == "ISO-8601 UTC, 9 fraction digits"
    assert diff.shape(b"2026-12-04T20:09:20Z") == "ISO-8601 UTC, 0 fraction digits"
    assert diff.shape(b"86400") == "integer text"
    assert diff.shape(b"") == "empty"
    assert diff.shape(b'["f",null,[],{}]') == "JSON text"
    assert diff.shape(b"x\x9c\x8b\x8e\x05\x00\x01\x15\x00\xb9") == "zlib-compressed"
    assert diff.shape(b"01a242bc-f9d3-75d4-ad3a-31302db5b6eb") == "UUID"


def diff_args(argv) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    lab_cli.add_diff_arguments(parser)
    return parser.parse_args(argv)


def test_run_diff_json(redis_url, capsys):
    exit_code = lab_cli.run_diff(diff_args(["--redis-url", redis_url, "--json", "--queue", "cli-queue"]))

    rows = json.loads(capsys.readouterr().out)
    assert exit_code == 0
    by_field = {(row["source"], row["field"]): row for row in rows}
    assert by_field[("hash", "timeout_in_sec")]["verdict"] == "only java"
    assert by_field[("hash", "data")]["verdict"] == "different format"
    assert redis.Redis.from_url(redis_url).keys("*") == []


def test_run_diff_table_on_private_redis(capsys):
    exit_code = lab_cli.run_diff(diff_args([]))

    out = capsys.readouterr().out
    assert exit_code == 0
    assert out.startswith("java writer vs rq-native (Queue.enqueue) on queue rq-sandbox:contract-diff:")
    assert "timeout_in_sec" in out
    assert "Job.fetch:" in out


@pytest.mark.parametrize("argv", [["--queue", "has space"], ["--function", "nodots"]])
def test_run_diff_rejects_bad_input(argv):
    with pytest.raises(UsageError):
        lab_cli.run_diff(diff_args(argv))
