"""Bad input is rejected with exit 2, one clear line, no traceback, and nothing written to Redis."""

import functools
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from sandbox.services.ports import free_port
from tests import conftest
from tests.conftest import TEST_PASSWORD

# Rejected input fails fast, so these runs get a shorter limit than whole scenarios.
run_cli = functools.partial(conftest.run_cli, timeout=120)

ROOT = Path(__file__).resolve().parent.parent
TEN = (ROOT / "scenarios" / "ten-messages.yaml").read_text()


def _write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _nested(depth):
    return "payload: " + "[" * depth + "1" + "]" * depth


SCENARIO_CASES = [
    ("not-yaml", "name: x\nphases: [\n", ["yaml"]),
    ("empty", "", ["empty"]),
    ("wrong-type", TEN.replace("count: 1", "count: one"), ["workers.count", "integer"]),
    ("bool-as-int", TEN.replace("count: 1", "count: true"), ["workers.count"]),
    ("negative", TEN.replace("messages: 10", "messages: -5"), ["phases[0].messages"]),
    ("absurd", TEN.replace("messages: 10", "messages: 99999999999"), ["phases[0].messages"]),
    ("unknown-key", TEN.replace("  mode: process", "  mode: process\n  colour: red"), ["workers.colour", "unknown key"]),
    ("missing-pythonpath", TEN.replace("  mode: process", "  mode: process\n  pythonpath: [does-not-exist]"),
     ["workers.pythonpath", "does-not-exist"]),
    ("bad-rate", TEN.replace("rate: 20/s", "rate: fast"), ["phases[0].rate"]),
    ("non-utf8", TEN.encode().replace(b"Test_{n}", b"Test_\xff\xfe{n}"), ["utf-8"]),
    ("deep-json", TEN.replace('    payload: "Test_{n}"', "    " + _nested(40)), ["deep"]),
    ("huge", TEN + "# " + "x" * (10 * 1024 * 1024) + "\n", ["MiB"]),
]


@pytest.mark.parametrize("name, content, words", SCENARIO_CASES, ids=[case[0] for case in SCENARIO_CASES])
def test_bad_scenario_rejected(name, content, words, tmp_path, redis_url):
    path = _write(tmp_path, f"{name}.yaml", content)
    result = run_cli("run", str(path), "--redis-url", redis_url)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("rq-sandbox: ")
    assert str(path) in message
    for word in words:
        assert word.lower() in message.lower(), message
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_missing_scenario_file(tmp_path):
    result = run_cli("run", str(tmp_path / "absent.yaml"))
    assert result.returncode == 2
    assert "absent.yaml" in result.stderr
    assert "not found" in result.stderr.lower()


@pytest.mark.parametrize(
    "args, words",
    [
        (["run", "scenarios/ten-messages.yaml", "--colour"], ["unrecognized arguments", "--colour"]),
        (["run", "scenarios/ten-messages.yaml", "--workers", "-3"], ["--workers", "invalid count"]),
        (["run", "scenarios/ten-messages.yaml", "--profile", "kotlin"], ["--profile", "invalid choice"]),
        (["frobnicate"], ["invalid choice", "frobnicate"]),
    ],
)
def test_bad_command_line(args, words):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_conflicting_flags(redis_url):
    result = run_cli("run", "scenarios/ten-messages.yaml", "--redis-url", redis_url, "--keep-services")
    assert result.returncode == 2
    assert "--keep-services" in result.stderr
    assert redis.Redis.from_url(redis_url).dbsize() == 0


def test_cleanup_needs_allow_destructive(redis_url):
    result = run_cli("run", "scenarios/ten-messages.yaml", "--redis-url", redis_url, "--cleanup")
    assert result.returncode == 2
    assert "--allow-destructive" in result.stderr
    assert redis.Redis.from_url(redis_url).dbsize() == 0


@pytest.mark.parametrize(
    "url_template, words",
    [
        ("ftp://127.0.0.1:{port}/0", ["invalid Redis URL", "redis://"]),
        ("redis://127.0.0.1:{port}/abc", ["invalid Redis URL", "not a number"]),
        ("redis://127.0.0.1:{closed}/0", ["cannot connect", "Connection refused"]),
        ("redis://:wrong-pw@127.0.0.1:{auth_port}/0", ["authentication failed", "***"]),
    ],
    ids=["bad-scheme", "bad-database", "unreachable", "wrong-password"],
)
def test_bad_redis_url(url_template, words, redis_server, redis_server_with_password):
    auth_port = int(redis_server_with_password.rsplit(":", 1)[1].split("/")[0])
    url = url_template.format(port=redis_server.port, closed=free_port(), auth_port=auth_port)
    # The password-protected server is shared by the session, so compare its key count before and after.
    keys_before = redis.Redis.from_url(redis_server_with_password).dbsize()
    result = run_cli("run", "scenarios/ten-messages.yaml", "--redis-url", url)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
    assert "wrong-pw" not in result.stderr
    assert redis.Redis.from_url(redis_server_with_password).dbsize() == keys_before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["INT", "TERM", "HUP"])
def test_interrupt_writes_partial_report(sig, tmp_path):
    slow = _write(tmp_path, "slow.yaml", TEN.replace("work: 500ms", "work: 5s"))
    report = tmp_path / "report.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", "run", str(slow), "--report", str(report)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    # Wait until workers are up and jobs are running, then stop the run.
    deadline = time.monotonic() + 60
    lines = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        lines.append(line)
        if "started 1" in line:
            break
    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, "".join(lines) + stderr
    data = json.loads(report.read_text())
    assert data["interrupted"] is True
    assert data["passed"] is False
    assert data["jobs"]["unaccounted"] == 0
    assert "INTERRUPTED" in stdout

    # The run's own Redis is stopped too, not left running.
    port = int(data["redis"]["url"].rsplit(":", 1)[1].split("/")[0])
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1).ping()


def test_password_never_shown(redis_server_with_password, tmp_path):
    state = tmp_path / "state"
    report = tmp_path / "report.json"
    junit = tmp_path / "junit.xml"
    scenario = _write(tmp_path, "s.yaml", TEN.replace("work: 500ms", "work: 10ms").replace("rate: 20/s", "rate: burst"))
    result = run_cli("-vv", "run", str(scenario), "--report", str(report), "--junit", str(junit),
                     "--state-dir", str(state), env={"REDIS_URL": redis_server_with_password})
    assert result.returncode == 0, result.stdout + result.stderr

    texts = {"stdout": result.stdout, "stderr": result.stderr, "report": report.read_text(), "junit": junit.read_text()}
    for path in state.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    assert len(texts) > 4
    for where, text in texts.items():
        assert TEST_PASSWORD not in text, where


def test_foreign_jobs_in_queue_rejected(redis_url):
    connection = redis.Redis.from_url(redis_url)
    connection.rpush("rq:queue:opik:optimizer-cloud", "someone-elses-job")
    result = run_cli("run", "scenarios/ten-messages.yaml", "--redis-url", redis_url)

    assert result.returncode == 2
    assert "already holds 1 job(s)" in result.stderr
    assert connection.lrange("rq:queue:opik:optimizer-cloud", 0, -1) == [b"someone-elses-job"]
    assert connection.dbsize() == 1


def test_unimportable_function_rejected(tmp_path, redis_url):
    path = _write(tmp_path, "typo.yaml", TEN.replace("process_optimizer_job", "process_optimiser_job"))
    result = run_cli("run", str(path), "--redis-url", redis_url)

    assert result.returncode == 2
    assert "producer.function 'sandbox.worker.jobs.process_optimiser_job' cannot be imported" in result.stderr
    assert "AttributeError" in result.stderr
    assert redis.Redis.from_url(redis_url).dbsize() == 0


@pytest.mark.parametrize("option", ["--report", "--junit"])
def test_report_path_is_folder(option, tmp_path):
    result = run_cli("run", "scenarios/ten-messages.yaml", option, str(tmp_path))
    assert result.returncode == 2
    assert "is a folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_state_dir_is_file(tmp_path):
    path = _write(tmp_path, "file", "x")
    result = run_cli("run", "scenarios/ten-messages.yaml", "--state-dir", str(path))
    assert result.returncode == 2
    assert "is a file" in result.stderr


def test_allow_destructive_alone_rejected():
    result = run_cli("run", "scenarios/ten-messages.yaml", "--allow-destructive")
    assert result.returncode == 2
    assert "only applies to --cleanup" in result.stderr
