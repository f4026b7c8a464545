"""`inspect` shows one job as Redis stores it, never writing raw control bytes to the terminal."""

import argparse
import json


from sandbox.cli import main
from sandbox.contract.check_cli import add_inspect_arguments, run_inspect
from sandbox.contract.inspect import describe_field, inspect_job, render_inspect
from sandbox.contract.profiles import ProfileOptions
from sandbox.errors import ExitCode
from sandbox.producer.publisher import Publisher
from tests.conftest import drain

QUEUE = "opik:hello_world_queue"
FUNC = "sandbox.worker.jobs.process_hello_world"




def publish(connection, func=FUNC, **options) -> str:
    return Publisher(connection, ProfileOptions(**options)).enqueue(QUEUE, func, ["Test_1"])


def inspect_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_inspect_arguments(parser)
    return parser.parse_args(list(argv))


def has_raw_control(text: str) -> bool:
    return any(not char.isprintable() and char != "\n" for char in text)


def test_zlib_job_prints_hex(redis_url, connection, capsys):
    job_id = publish(connection, name="java-legacy-zlib")

    code = run_inspect(inspect_args(job_id, "--redis-url", redis_url))

    out = capsys.readouterr().out
    assert code == ExitCode.OK
    assert "hex 78 9c" in out
    assert "zlib stream" in out
    assert f'decoded: ["{FUNC}", null, ["Test_1"], {{}}]' in out
    assert f"queue list rq:queue:{QUEUE} at position 0" in out
    assert not has_raw_control(out)


def test_unknown_id_exits_1(redis_url, capsys):
    code = run_inspect(inspect_args("no-such-job", "--redis-url", redis_url))

    captured = capsys.readouterr()
    assert code == ExitCode.FAILED
    assert "not found" in captured.err
    assert "not found" in captured.out


def test_control_bytes_are_escaped(connection):
    job_id = publish(connection, description="\x1b[31mred\x1b[0m\x07")

    output = render_inspect(inspect_job(connection, job_id))

    assert "\x1b" not in output
    assert "\x07" not in output
    assert "hex 1b 5b 33 31 6d 72 65 64" in output
    assert "UTF-8 text with control characters" in output
    assert not has_raw_control(output)


def test_field_description():
    compressed = describe_field("data", b"x\x9c" + b"\x00" * 3)
    text = describe_field("status", b"queued")
    pickled = describe_field("data", b"\x80\x05K\x01.", serializer="pickle")

    assert compressed["note"] == "binary, 5 bytes, zlib stream"
    assert compressed["hex"] == "78 9c 00 00 00"
    assert text == {"name": "status", "size": 6, "text": "queued"}
    assert pickled["note"] == "binary, 5 bytes, pickle"
    assert "decoded" not in pickled


def test_position_and_findings(connection):
    publish(connection)
    job_id = publish(connection, clock_precision="nanos")

    data = inspect_job(connection, job_id)

    assert data["found"]
    assert data["where"]["queues"] == [{"queue": QUEUE, "key": f"rq:queue:{QUEUE}", "position": 1}]
    assert 86_390 < data["ttl"] <= 86_400
    assert {finding["rule"] for finding in data["findings"]} >= {"rq-fetch", "timestamp-format"}
    assert data["results"] is None


def test_failed_job_shows_registry_and_exception(connection):
    job_id = publish(connection, func="sandbox.worker.jobs.process_missing")
    drain(connection, QUEUE)

    data = inspect_job(connection, job_id)
    output = render_inspect(data)

    [registry] = data["where"]["registries"]
    assert registry["kind"] == "failed"
    assert registry["key"] == f"rq:failed:{QUEUE}"
    assert registry["time"].endswith("Z")
    assert data["results"]["count"] == 1
    assert data["results"]["latest"]["type"] == "failed"
    assert "Invalid attribute name" in data["results"]["latest"]["exc_string"]
    assert f"failed registry rq:failed:{QUEUE}" in output
    assert "exception:" in output


def test_finished_job_shows_return_value(redis_url, connection, capsys):
    job_id = publish(connection)
    drain(connection, QUEUE)

    code = run_inspect(inspect_args(job_id, "--json", "--redis-url", redis_url))

    document = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert document["results"]["latest"]["type"] == "successful"
    assert json.loads(document["results"]["latest"]["return_value"])["status"] == "ok"
    assert [r["kind"] for r in document["where"]["registries"]] == ["finished"]
    fields = {item["name"]: item for item in document["fields"]}
    assert fields["status"]["text"] == "finished"


def test_main_inspect(redis_url, connection, capsys):
    job_id = publish(connection, name="java-legacy-zlib")

    assert main(["inspect", job_id, "--redis-url", redis_url]) == ExitCode.OK
    assert "zlib stream" in capsys.readouterr().out
    assert main(["inspect", "no-such-job", "--redis-url", redis_url]) == ExitCode.FAILED
    assert "not found" in capsys.readouterr().err
    assert main(["inspect", f"rq:job:{job_id}", "--redis-url", redis_url]) == ExitCode.USAGE
