"""Describe the machine and the versions a benchmark ran with."""

import os
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import redis


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                kib = int(line.split()[1])
                return f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError):
        pass
    return "unknown"


def _package(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _tool_version(path: str | None) -> str:
    if path is None:
        return "not found"
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return f"unavailable ({error})"
    return (result.stdout or result.stderr).strip() or "unknown"


def describe(connection: redis.Redis, redis_benchmark: str | None) -> dict[str, str]:
    """Return the machine and version facts recorded next to the results."""
    info = connection.info("server")
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "CPU": _cpu_model(),
        "memory": _memory(),
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "rq": _package("rq"),
        "redis-py": _package("redis"),
        "Redis server": str(info.get("redis_version", "unknown")),
        "redis-benchmark": _tool_version(redis_benchmark),
    }
