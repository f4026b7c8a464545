"""A Podman engine with the compose file's images, for tests of the Docker backend.

The machines that run the tests have no Docker and reach no container registry, so
`scripts/podman-setup.sh` brings up Podman's Docker-compatible API and
`scripts/build-test-images.sh` builds stand-in images under the compose file's names.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"

#: Where podman-setup.sh keeps its socket, containers.conf, pid and log.
PODMAN_DIR = Path(os.environ.get("RQ_SANDBOX_PODMAN_DIR", "/tmp/rq-sandbox-podman"))

#: Seconds the setup script may take: a first run installs podman from Debian.
SETUP_TIMEOUT = 600

#: Seconds the image build may take: a first run installs three database servers.
BUILD_TIMEOUT = 900


@dataclass
class Engine:
    """A running Podman API the tests may use, and whether this session started it."""

    socket: Path
    started_here: bool

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.url)


def _service_running() -> bool:
    pidfile = PODMAN_DIR / "podman.pid"
    if not (PODMAN_DIR / "podman.sock").is_socket() or not pidfile.is_file():
        return False
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
    except (ValueError, OSError):
        return False
    return True


def _unavailable(reason: str) -> None:
    # CI must exercise the engine: there a missing engine is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail(f"Podman engine needed in CI: {reason}", pytrace=False)
    pytest.skip(f"no Podman engine: {reason}")


def _run(script: str, timeout: float) -> subprocess.CompletedProcess:
    env = {**os.environ, "RQ_SANDBOX_PODMAN_DIR": str(PODMAN_DIR)}
    return subprocess.run(
        ["bash", str(SCRIPTS / script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def start_engine() -> Engine:
    """Run the setup script (reusing a running service) and build the stand-in images."""
    was_running = _service_running()
    try:
        setup = _run("podman-setup.sh", SETUP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"podman-setup.sh did not finish: {exc}")
    if setup.returncode != 0:
        _unavailable(f"podman-setup.sh exited {setup.returncode}: {setup.stderr.strip()[-500:]}")
    socket = Path(setup.stdout.strip().splitlines()[-1])

    build = _run("build-test-images.sh", BUILD_TIMEOUT)
    if build.returncode != 0:
        pytest.fail(f"build-test-images.sh exited {build.returncode}: {build.stderr.strip()[-800:]}", pytrace=False)
    return Engine(socket=socket, started_here=not was_running)


def stop_engine(engine: Engine) -> None:
    """Stop the API service if this session started it; a service found running stays."""
    if not engine.started_here:
        return
    pidfile = PODMAN_DIR / "podman.pid"
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 15)
    except (ValueError, OSError):
        return
    pidfile.unlink(missing_ok=True)


def remove_containers(client: docker.DockerClient, names: list[str]) -> None:
    """Remove the named containers if they exist, labelled or not: the tests created them."""
    for name in names:
        try:
            client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass


def remove_volumes(client: docker.DockerClient, names: list[str]) -> None:
    for name in names:
        try:
            client.volumes.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
