"""Checks a run makes before it starts anything, so bad input fails fast and writes nothing."""

import importlib
import os
import subprocess
import sys
from pathlib import Path

import redis

from sandbox.contract import keys
from sandbox.errors import UsageError
from sandbox.scenario.model import Scenario

#: Seconds the import check of the job function may take.
IMPORT_CHECK_TIMEOUT_S = 30


def check_output_paths(report: Path | None, junit: Path | None, state_dir: Path | None) -> None:
    """Reject report and state paths that could only fail after the run."""
    for option, path in (("--report", report), ("--junit", junit)):
        if path is None:
            continue
        if path.is_dir():
            example = path / ("junit.xml" if option == "--junit" else "report.json")
            raise UsageError(f"{option} {path} is a folder; give a file path such as {example}")
        for parent in path.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise UsageError(f"{option} {path}: {parent} is a file, not a folder")
                break
    if state_dir is not None and state_dir.exists() and not state_dir.is_dir():
        raise UsageError(f"--state-dir {state_dir} is a file; give a folder")


def check_function_importable(scenario: Scenario) -> None:
    """Import the job function the way a worker will, in a child process with the workers' import path.

    The child keeps whatever the import does away from this process. A job
    function that cannot be imported would otherwise fail every job of the run.
    """
    if scenario.workers.count == 0:
        return
    module, _, attribute = scenario.producer.function.rpartition(".")
    if module.startswith("sandbox.") and not scenario.workers.pythonpath:
        # The sandbox's own job functions import without side effects, so skip the child's start-up cost.
        try:
            getattr(importlib.import_module(module), attribute)
            return
        except (ImportError, AttributeError):
            pass  # the child below reports it the same way as for any other function
    code = (
        "import importlib, sys\n"
        f"module = importlib.import_module({module!r})\n"
        f"getattr(module, {attribute!r})\n"
    )
    environment = dict(os.environ)
    paths = [str(path) for path in scenario.workers.pythonpath]
    if environment.get("PYTHONPATH"):
        paths.append(environment["PYTHONPATH"])
    environment["PYTHONPATH"] = os.pathsep.join(paths)

    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True, text=True, timeout=IMPORT_CHECK_TIMEOUT_S, env=environment,
    )
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1] if lines else f"exit status {result.returncode}"
        where = f"{scenario.path}: " if scenario.path else ""
        raise UsageError(
            f"{where}producer.function {scenario.producer.function!r} cannot be imported by the workers: {reason}; "
            "check the name or add its folder to workers.pythonpath"
        )


def check_queues_empty(connection: redis.Redis, scenario: Scenario) -> None:
    """Refuse to start workers on queues of a Redis the sandbox did not start that already hold jobs.

    Its workers would run those jobs too: someone else's work, and counts the
    run could not account for.
    """
    if scenario.workers.count == 0:
        return
    pipe = connection.pipeline(transaction=False)
    for queue in scenario.workers.queues:
        pipe.llen(keys.queue_key(queue))
        pipe.llen(keys.intermediate_queue_key(queue))
    depths = pipe.execute()
    for index, queue in enumerate(scenario.workers.queues):
        waiting = depths[2 * index] + depths[2 * index + 1]
        if waiting:
            raise UsageError(
                f"queue {queue!r} already holds {waiting} job(s) this run did not write, and its workers would run them; "
                "use another queue name in the scenario, drain the queue, or run with --workers 0"
            )
