"""The real dashboard in a real terminal: tmux runs it, sends keys and reads the screen."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

#: Runs `run_tui` directly when the console script has no `tui` command yet.
LAUNCHER = (
    "import argparse, sys; from sandbox.tui.commands import add_tui_arguments, run_tui; "
    "p = argparse.ArgumentParser(prog='rq-sandbox tui'); add_tui_arguments(p); "
    "sys.exit(run_tui(p.parse_args(sys.argv[1:])))"
)


def tui_command() -> list[str]:
    script = shutil.which("rq-sandbox")
    if script and subprocess.run([script, "tui", "--help"], capture_output=True).returncode == 0:
        return [script, "tui"]
    return [sys.executable, "-c", LAUNCHER]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def wait_screen(session: str, pattern: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux("capture-pane", "-p", "-t", session)
        if re.search(pattern, screen):
            return screen
        if time.monotonic() > deadline:
            pytest.fail(f"{pattern!r} not on screen after {timeout} s:\n{screen}")
        time.sleep(0.2)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited; only its parent has not read its status yet.
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def test_tmux_dashboard_sends_and_quits(tmp_path):
    session = f"rq-sandbox-test-{os.getpid()}"
    state = tmp_path / "state"
    command = [*tui_command(), "--state-dir", str(state), "--services", "none", "--work-ms", "200", "--refresh", "0.2"]
    shell = f"cd {shlex.quote(str(Path(__file__).resolve().parent.parent))} && {shlex.join(command)}; echo TUI-EXIT=$?; sleep 30"
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("REDIS_URL", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", shell], check=True, env=env)
    try:
        screen = wait_screen(session, r"connected · .* 1 workers")
        assert "***" in screen or "redis://127.0.0.1" in screen
        worker_pid = int(re.search(r"tui-\S+-(\d+)-0", screen).group(1))
        redis_pid = json.loads((state / "state.json").read_text())["services"]["redis"]["pid"]
        assert alive(worker_pid)
        assert alive(redis_pid)

        tmux("send-keys", "-t", session, "s")
        tmux("send-keys", "-t", session, "2")
        screen = wait_screen(session, r"…\w{12}\s+finished")
        assert "opik:optimizer-cloud" in screen

        tmux("send-keys", "-t", session, "?")
        wait_screen(session, r"rq-sandbox tui: keys")
        tmux("send-keys", "-t", session, "Escape")
        # Sent right after Escape, q would arrive as Alt+q.
        wait_screen(session, r"^(?![\s\S]*tui: keys)")
        tmux("send-keys", "-t", session, "q")
        wait_screen(session, r"TUI-EXIT=0", timeout=30)

        deadline = time.monotonic() + 10
        while (alive(worker_pid) or alive(redis_pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker_pid), "the pool's worker outlived the dashboard"
        assert not alive(redis_pid), "the dashboard's Redis outlived it"
        log = (state / "tui" / "tui.log").read_text()
        assert "Dashboard stopped" in log
        assert "opik@" not in log
        assert ":opik@" not in log
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
