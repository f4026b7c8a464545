"""Write a run's report as JSON and as JUnit XML."""

import json
import os
import platform
import xml.etree.ElementTree as ET
from pathlib import Path

import redis
import rq

import sandbox


def versions(redis_server: str | None) -> dict:
    """Versions of what ran: rq, redis-py, the Redis server, Python and the sandbox."""
    return {
        "rq": rq.__version__ if hasattr(rq, "__version__") else rq.VERSION,
        "redis_py": redis.__version__,
        "redis_server": redis_server,
        "python": platform.python_version(),
        "rq_sandbox": sandbox.__version__,
    }


def write_json(report: dict, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_junit(report: dict, path: Path) -> None:
    """Write one test suite per run, with one test case per expectation."""
    expectations = report.get("expectations", [])
    failures = [item for item in expectations if not item["passed"]]
    suite = ET.Element(
        "testsuite",
        name=f"rq-sandbox.{report['scenario']}",
        tests=str(len(expectations)),
        failures=str(len(failures)),
        errors="1" if report.get("infrastructure_error") else "0",
        time=f"{report.get('wall_s', 0):.3f}",
    )
    for item in expectations:
        case = ET.SubElement(suite, "testcase", classname=report["scenario"], name=item["name"])
        if not item["passed"]:
            failure = ET.SubElement(case, "failure", message=f"expected {item['expected']}, got {item['actual']}")
            failure.text = json.dumps(item, default=str)
    if report.get("infrastructure_error"):
        case = ET.SubElement(suite, "testcase", classname=report["scenario"], name="infrastructure")
        ET.SubElement(case, "error", message=report["infrastructure_error"])

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ET.ElementTree(suite).write(path, encoding="utf-8", xml_declaration=True)
