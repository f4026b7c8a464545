"""The engine never imports Textual: only `rq-sandbox tui` loads it."""

import json
import subprocess
import sys

CORE = (
    "sandbox.cli",
    "sandbox.scenario.runner",
    "sandbox.scenario.loader",
    "sandbox.producer.publisher",
    "sandbox.producer.pacing",
    "sandbox.worker.pool",
    "sandbox.monitor.harvest",
    "sandbox.monitor.stats",
    "sandbox.monitor.snapshot",
    "sandbox.services.redis_process",
    "sandbox.tui",
    "sandbox.tui.commands",
    "sandbox.tui.stack",
)


def test_core_modules_do_not_import_textual():
    code = (
        "import importlib, json, sys\n"
        f"for name in {CORE!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_app_module_imports_textual():
    # The check above would pass vacuously if the subprocess could not see Textual at all.
    code = "import sys, sandbox.tui.app; print('textual' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "True", result.stderr
