"""End to end: scenarios through the real CLI, a real Redis and real rq workers."""

import json
import os
from pathlib import Path

import pytest
import redis

from sandbox.scenario import events
from sandbox.scenario.loader import parse_scenario
from sandbox.scenario.runner import Runner, RunOptions
from tests.conftest import run_cli

ROOT = Path(__file__).resolve().parent.parent
SCENARIOS = ROOT / "scenarios"

pytestmark = pytest.mark.slow


SHIPPED = sorted(path.stem for path in SCENARIOS.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenario_passes(name, tmp_path):
    report_path = tmp_path / "report.json"
    junit_path = tmp_path / "junit.xml"
    result = run_cli("run", f"scenarios/{name}.yaml", "--report", str(report_path), "--junit", str(junit_path))

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{name}: PASSED" in result.stdout
    report = json.loads(report_path.read_text())
    assert report["passed"] is True
    assert report["jobs"]["unaccounted"] == 0
    assert report["versions"]["rq"].startswith("2.")
    assert "<testsuite" in junit_path.read_text()


def test_ten_messages_report_fields(tmp_path):
    report_path = tmp_path / "report.json"
    result = run_cli("run", "scenarios/ten-messages.yaml", "--report", str(report_path))
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())

    assert report["jobs"]["finished"] == 10
    assert report["jobs"]["failed"] == 0
    for timing in ("queue_wait", "processing", "total"):
        summary = report["timings_ms"][timing]
        assert summary["count"] == 10
        assert summary["p50"] <= summary["p95"] <= summary["p99"] <= summary["max"]
    # 500 ms of simulated work per job, as the guide's test.
    assert 500 <= report["timings_ms"]["processing"]["p50"] < 1500
    assert report["throughput"]["enqueue_per_s"] > 0
    assert report["wall_s"] > 5.0
    assert {item["name"] for item in report["expectations"]} >= {"finished", "failed", "unaccounted"}
    processed = report["metrics"]["rq_worker.jobs.processed"]
    assert processed["unit"] == "1"
    assert sum(point["value"] for point in processed["points"]) == 10
    assert processed["points"][0]["attributes"] == {
        "queue": "opik:optimizer-cloud",
        "function": "sandbox.worker.jobs.process_optimizer_job",
    }
    assert report["metrics"]["rq_worker.job.processing_time"]["unit"] == "ms"
    assert report["versions"]["redis_server"]
    assert report["redis"]["embedded"] is True


def test_bad_scenario_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((SCENARIOS / "ten-messages.yaml").read_text().replace("mode: process", "mode: forked"))
    result = run_cli("run", str(bad))

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "forked" in text)
    assert f"{bad}:{line}: workers.mode: 'forked'" in result.stderr


def test_missing_scenario_file_exit_2(tmp_path):
    result = run_cli("run", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "nope.yaml" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_option_exit_2():
    result = run_cli("run", "scenarios/ten-messages.yaml", "--colour", "red")
    assert result.returncode == 2
    assert "--colour" in result.stderr


SLOW_JOBS = """
name: slow-jobs
workers: {count: 1, mode: process}
producer: {queue: "sandbox:slow", function: sandbox.worker.jobs.process_hello_world}
job: {work: 3s}
phases: [{messages: 2, rate: burst}]
expect: {finished: 2, deadline: 60s}
"""


def test_killed_worker_reported_with_exit_3(tmp_path):
    scenario = parse_scenario(SLOW_JOBS, path=str(tmp_path / "slow.yaml"))
    seen = []
    runner = None

    def kill_when_started(event):
        seen.append(event)
        if isinstance(event, events.Progress) and event.started >= 1 and not runner.state.crashes:
            if not getattr(kill_when_started, "done", False):
                kill_when_started.done = True
                runner.pool.kill(0)

    runner = Runner(scenario, RunOptions(state_dir=tmp_path / "state"), subscribers=[kill_when_started])
    report, exit_code = runner.run()

    assert exit_code == 3
    crashes = report["workers"]["crashes"]
    assert len(crashes) == 1
    assert crashes[0]["exit_code"] == -9
    assert crashes[0]["job_id"] in report["jobs"]["ids"]["abandoned"]
    assert report["jobs"]["abandoned"] == 1
    assert report["jobs"]["unaccounted"] == 0
    assert any(isinstance(event, events.WorkerCrashed) for event in seen)
    # The run stops at the crash instead of waiting for the 60 s deadline.
    assert report["wall_s"] < 30


def test_external_redis_keeps_foreign_keys(redis_url, tmp_path):
    connection = redis.Redis.from_url(redis_url)
    connection.set("someone:else", "keep me")
    connection.rpush("rq:queue:opik:optimizer-cloud", "foreign-job-id")
    connection.hset("rq:job:foreign-job-id", mapping={"status": "queued"})

    scenario = tmp_path / "external.yaml"
    scenario.write_text(
        (SCENARIOS / "ten-messages.yaml").read_text().replace("work: 500ms", "work: 0ms")
        .replace("finished: 10", "finished: 11").replace("messages: 10", "messages: 11")
    )
    result = run_cli("run", str(scenario), "--redis-url", redis_url, "--workers", "0",
                     "--report", str(tmp_path / "r.json"))
    assert result.returncode == 1  # no worker: nothing finishes
    assert connection.get("someone:else") == b"keep me"
    assert connection.hget("rq:job:foreign-job-id", "status") == b"queued"
    assert connection.llen("rq:queue:opik:optimizer-cloud") == 12

    result = run_cli("run", str(scenario), "--redis-url", redis_url, "--workers", "0", "--cleanup")
    assert result.returncode == 2
    assert "--allow-destructive" in result.stderr
    assert connection.llen("rq:queue:opik:optimizer-cloud") == 12

    result = run_cli("run", str(scenario), "--redis-url", redis_url, "--workers", "0", "--cleanup",
                     "--allow-destructive")
    assert connection.get("someone:else") == b"keep me"
    assert connection.lrange("rq:queue:opik:optimizer-cloud", 0, -1)[0] == b"foreign-job-id"
    # Only the first run's 11 ids remain besides the foreign one; the second run removed its own.
    assert connection.llen("rq:queue:opik:optimizer-cloud") == 12
    assert connection.exists("rq:job:foreign-job-id")


def test_redis_url_from_environment_is_masked(redis_server_with_password, tmp_path):
    url = redis_server_with_password
    result = run_cli("run", "scenarios/ten-messages.yaml", "--workers", "0", "--json", env={"REDIS_URL": url})
    report = json.loads(result.stdout)
    assert report["redis"]["embedded"] is False
    assert "s3cret-pw" not in result.stdout + result.stderr
    assert ":***@" in report["redis"]["url"]


def test_nanosecond_timestamps_crash_rq_worker(tmp_path):
    # JDK 15+ on Linux prints nine fraction digits; rq 2.6 parses at most six.
    report_path = tmp_path / "report.json"
    result = run_cli("run", "scenarios/ten-messages.yaml", "--clock-precision", "nanos", "--report", str(report_path))

    assert result.returncode == 3, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    crash = report["workers"]["crashes"][0]
    assert crash["last_error"].startswith("ValueError: time data '")
    assert "does not match format" in crash["last_error"]
    # The job the worker died on stays in the intermediate list: abandoned, not pending.
    assert crash["job_id"] in report["jobs"]["ids"]["abandoned"]
    assert report["jobs"]["abandoned_by_rq_action"] == {"left in the intermediate list": 1}
    assert report["jobs"]["unaccounted"] == 0
    assert report["producer"]["clock_precision"] == "nanos"


def test_rq_native_profile_override(tmp_path):
    report_path = tmp_path / "report.json"
    result = run_cli("run", "scenarios/five-workers.yaml", "--profile", "rq-native", "--report", str(report_path))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    assert report["producer"]["profile"] == "rq-native"
    assert report["jobs"]["finished"] == 10


STACK = """
name: with-stack
services: [redis, mysql, clickhouse]
workers: {count: 1, mode: simple}
producer: {queue: "opik:optimizer-cloud", function: sandbox.worker.jobs.process_optimizer_job}
phases: [{messages: 5, rate: burst}]
expect: {finished: 5}
"""


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # kill(0) still succeeds on a zombie, which is gone all the same.
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"


def test_scenario_services_started_and_stopped(tmp_path):
    scenario = parse_scenario(STACK, path=str(tmp_path / "stack.yaml"))
    report, exit_code = Runner(scenario, RunOptions(state_dir=tmp_path / "state")).run()

    assert exit_code == 0, report
    assert report["services"]["started"] == ["redis", "mysql", "clickhouse"]
    pids = [status["pid"] for status in report["services"]["statuses"]]
    assert len(pids) == 3
    assert not any(_pid_alive(pid) for pid in pids)


def test_scenario_reuses_running_services(tmp_path):
    from sandbox.services.local import LocalBackend

    backend = LocalBackend(tmp_path / "state" / "services")
    running = {status.name: status.pid for status in backend.up(["redis", "mysql"])}
    try:
        scenario = parse_scenario(STACK, path=str(tmp_path / "stack.yaml"))
        report, exit_code = Runner(scenario, RunOptions(state_dir=tmp_path / "state")).run()

        assert exit_code == 0, report
        assert report["services"]["started"] == ["clickhouse"]
        assert all(_pid_alive(pid) for pid in running.values())
        clickhouse = next(s for s in report["services"]["statuses"] if s["name"] == "clickhouse")
        assert not _pid_alive(clickhouse["pid"])
    finally:
        backend.down(["redis", "mysql", "clickhouse"])
