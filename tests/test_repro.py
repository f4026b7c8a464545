"""The utf-8 decode repro, its matrix and the utf8-decode-bug scenario, on real Redis and real rq workers."""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from sandbox.contract import lab_cli
from sandbox.contract.matrix import CELLS, CRASHED, FAILED, FINISHED, OUTCOMES, STUCK, JobPlace, classify
from sandbox.contract.repro import EXPECTED_ERROR, FIXED, HISTORICAL, render_text, repro_utf8_decode
from sandbox.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent


def repro_args(**overrides) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    lab_cli.add_repro_arguments(parser)
    args = parser.parse_args([])
    for name, value in overrides.items():
        setattr(args, name, value)
    return args


def test_run_repro_on_private_redis(capsys):
    exit_code = lab_cli.run_repro(repro_args(json=True))

    result = json.loads(capsys.readouterr().out)
    assert exit_code == 0
    assert result["exit_code"] == 0
    assert result["reproduced"] is True
    assert result["fix_held"] is True
    assert result["redis"]["embedded"] is True

    historical = result["historical"]
    assert historical["outcome"] == CRASHED
    assert historical["detail"] == f"UnicodeDecodeError: {EXPECTED_ERROR}"
    # rq dies while restoring the job hash on dequeue, before the job starts.
    assert any("in fetch" in frame for frame in historical["crash_frames"])
    held = [job for job in historical["jobs"] if job["location"] == "intermediate"]
    assert [job["job_id"] for job in held] == [historical["crashed_job_id"]]
    assert sorted(job["location"] for job in historical["jobs"]) == ["intermediate", "queue", "queue"]
    assert {job["status"] for job in historical["jobs"]} == {"queued"}

    fixed = result["fixed"]
    assert fixed["outcome"] == FINISHED
    assert [(job["status"], job["location"]) for job in fixed["jobs"]] == [("finished", "finished")] * 3

    matrix = result["matrix"]
    assert len(matrix) == 12
    assert {(c["cell"]["profile"], c["cell"]["decode_responses"], c["cell"]["serializer"]) for c in matrix} == {
        (cell.profile, cell.decode_responses, cell.serializer) for cell in CELLS
    }
    for cell in matrix:
        assert cell["outcome"] in OUTCOMES
        assert len(cell["jobs"]) == 3


def test_repro_on_given_redis_never_flushes(redis_url):
    connection = redis.Redis.from_url(redis_url)
    connection.set("user:keep", "mine")
    connection.rpush("rq:queue:user-queue", "user-job")

    result = repro_utf8_decode(redis_url)

    assert result.exit_code == 0
    assert result.embedded_redis is False
    # The cells deleted what they wrote, and only that.
    assert sorted(connection.keys("*")) == [b"rq:queue:user-queue", b"user:keep"]
    assert connection.lrange("rq:queue:user-queue", 0, -1) == [b"user-job"]

    by_cell = {cell.cell: cell for cell in result.matrix}
    assert by_cell[HISTORICAL] is result.historical
    assert by_cell[FIXED] is result.fixed
    # Each cell had a queue of its own.
    assert len({cell.queue for cell in result.matrix}) == 12
    assert len({job_id for cell in result.matrix for job_id in cell.job_ids}) == 36

    text = render_text(result)
    assert "(a) historical: java-legacy-zlib writer, workers with decode_responses=True" in text
    assert f"rq raised: UnicodeDecodeError: {EXPECTED_ERROR}" in text
    assert "reproduced: yes" in text
    assert "fix held:   yes" in text


def test_run_repro_text_output(redis_url, capsys):
    exit_code = lab_cli.run_repro(repro_args(redis_url=redis_url))

    out = capsys.readouterr().out
    assert exit_code == 0
    assert EXPECTED_ERROR in out
    matrix_rows = re.findall(r"^    (java|java-legacy-zlib|rq-native) +(True|False) +(json|pickle) ", out, re.MULTILINE)
    assert len(set(matrix_rows)) == 12


def test_run_repro_rejects_bad_url():
    with pytest.raises(UsageError):
        lab_cli.run_repro(repro_args(redis_url="http://127.0.0.1:1/0"))


def test_classify_ranks_crash_over_failed_over_stuck():
    queued = JobPlace("a", "queued", "queue")
    failed = JobPlace("b", "failed", "failed")
    done = JobPlace("c", "finished", "finished")

    assert classify([queued, failed], "ValueError: boom", {}) == (CRASHED, "ValueError: boom")
    assert classify([failed, done], None, {"b": "Traceback ...\nKeyError: 'x'\n"}) == (FAILED, "KeyError: 'x'")
    assert classify([done, done], None, {}) == (FINISHED, None)
    assert classify([queued, JobPlace("d", "started", "started"), done], None, {}) == (STUCK, "queue x1, started x1")
    assert classify([JobPlace("e", None, "nowhere")], None, {}) == (STUCK, "nowhere x1")


def test_utf8_decode_bug_scenario_passes():
    completed = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", "scenarios/utf8-decode-bug.yaml", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout)
    assert report["passed"] is True
    assert report["producer"]["profile"] == "java-legacy-zlib"
    assert report["workers"]["decode_responses"] is True
    (crash,) = report["workers"]["crashes"]
    assert crash["last_error"] == f"UnicodeDecodeError: {EXPECTED_ERROR}"
    assert crash["job_id"] in report["jobs"]["ids"]["abandoned"]
    assert report["jobs"]["abandoned_by_rq_action"] == {"left in the intermediate list": 1}
    jobs = report["jobs"]
    assert (jobs["finished"], jobs["failed"], jobs["abandoned"], jobs["pending"]) == (0, 0, 1, 2)
    assert all(item["passed"] for item in report["expectations"])
