"""A private dockerd, a private podman storage, and the llama.cpp image loaded into both.

Nothing here touches a system daemon, its socket or its storage: dockerd runs with its own data root,
exec root, pid file and socket under a temporary folder (no iptables, no bridge: containers use the
host's network) and is stopped after the session; podman keeps its images and containers under a
temporary root. The image is `scripts/build-llamacpp-image.sh`'s (built once, then cached under
~/.cache/servestack/images). Every test is skipped, with the reason, where this cannot run: not
root, dockerd or podman not installed (`scripts/setup-containers.sh`), a daemon that does not start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
IMAGE = "servestack-llamacpp:test"
DAEMON_START_SECONDS = 60
SETUP = "run scripts/setup-containers.sh"
# podman's default nofile limit (1048576) is above this machine's hard limit, which runc cannot raise.
PODMAN_OPTIONS = ["--runtime", "runc", "--ulimit", "nofile=20000:20000", "--ulimit", "nproc=4096:4096"]


@dataclass
class ContainerCli:
    """`docker` or `podman`, pointed at the tests' private daemon or storage by `env`."""

    cli: str
    env: dict[str, str]
    options: list[str] = field(default_factory=list)  # what the stack's `options:` needs on this host

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.cli, *args], env={**os.environ, **self.env}, capture_output=True, text=True, timeout=timeout
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{self.cli} {' '.join(args)} failed: {done.stderr.strip()}")
        return done

    def containers(self) -> dict[str, str]:
        """Every container, running or not: name → id."""
        lines = self.run("ps", "-a", "--no-trunc", "--format", "{{.Names}} {{.ID}}").stdout.split()
        return dict(zip(lines[::2], lines[1::2], strict=True))

    def inspect(self, name: str) -> dict:
        return json.loads(self.run("inspect", name).stdout)[0]

    def remove_all(self) -> None:
        for container_id in self.containers().values():
            self.run("rm", "--force", container_id, check=False)


def build_rootfs() -> Path:
    script = ROOT / "scripts" / "build-llamacpp-image.sh"
    done = subprocess.run(
        [str(script)], env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=900
    )
    if done.returncode != 0:
        pytest.skip(f"could not build the llama.cpp image: {done.stderr.strip().splitlines()[-1:]}")
    return Path(done.stdout.strip())


@pytest.fixture(scope="session")
def rootfs() -> Path:
    if os.geteuid() != 0:
        pytest.skip("container tests need root (a private dockerd, podman's storage)")
    return build_rootfs()


@pytest.fixture(scope="session")
def docker_cli(rootfs: Path) -> Iterator[ContainerCli]:
    """A private dockerd for this session, with the llama.cpp image imported."""
    if shutil.which("dockerd") is None or shutil.which("docker") is None:
        pytest.skip(f"dockerd is not installed: {SETUP}")
    folder = Path(tempfile.mkdtemp(prefix="ss-docker-", dir="/tmp"))  # short: a socket path has 108 bytes
    socket = folder / "docker.sock"
    argv = [
        "dockerd", f"--data-root={folder / 'data'}", f"--exec-root={folder / 'exec'}",
        f"--pidfile={folder / 'docker.pid'}", f"--host=unix://{socket}",
        "--iptables=false", "--ip6tables=false", "--bridge=none", "--default-ulimit", "nofile=20000:20000",
    ]  # fmt: skip
    log = folder / "dockerd.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    docker = ContainerCli("docker", {"DOCKER_HOST": f"unix://{socket}"})
    try:
        _wait_for_daemon(docker, daemon, log)
        docker.run("import", str(rootfs), IMAGE)
        yield docker
    finally:
        docker.remove_all()
        _stop_daemon(daemon)
        _remove(folder)


def _wait_for_daemon(docker: ContainerCli, daemon: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + DAEMON_START_SECONDS
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            break
        if docker.run("version", check=False, timeout=10).returncode == 0:
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace").strip().splitlines()[-3:]
    _stop_daemon(daemon)
    pytest.skip(f"the private dockerd did not start: {' | '.join(tail)}")


def _stop_daemon(daemon: subprocess.Popen[bytes]) -> None:
    if daemon.poll() is None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()


def _remove(folder: Path) -> None:
    """Remove a daemon's folder, unmounting what it left mounted there (dockerd keeps a network namespace)."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(f"{folder}/")), reverse=True):
        subprocess.run(["umount", "--lazy", mount], check=False)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def podman_cli(rootfs: Path) -> Iterator[ContainerCli]:
    """podman with a storage root and configuration of its own, with the llama.cpp image imported."""
    if shutil.which("podman") is None:
        pytest.skip(f"podman is not installed: {SETUP}")
    folder = Path(tempfile.mkdtemp(prefix="ss-podman-", dir="/tmp"))
    storage, config = folder / "storage.conf", folder / "containers.conf"
    storage.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{folder}/root"\nrunroot = "{folder}/run"\n')
    # No systemd here: cgroups by cgroupfs, events to a file.
    config.write_text(f'[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "{folder}/tmp"\n')
    podman = ContainerCli(
        "podman", {"CONTAINERS_STORAGE_CONF": str(storage), "CONTAINERS_CONF": str(config)}, PODMAN_OPTIONS
    )
    try:
        done = podman.run("import", str(rootfs), IMAGE, check=False, timeout=300)
        if done.returncode != 0:
            pytest.skip(f"podman cannot import an image here: {done.stderr.strip()}")
        yield podman
    finally:
        podman.remove_all()
        _remove(folder)


@pytest.fixture(params=["docker", "podman"])
def engine_cli(request: pytest.FixtureRequest, home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ContainerCli]:
    """Each container engine in turn, its variables in this test's environment (servestack's too)."""
    cli: ContainerCli = request.getfixturevalue(f"{request.param}_cli")
    for name, value in cli.env.items():
        monkeypatch.setenv(name, value)
    yield cli
    cli.remove_all()  # a failed test leaves nothing to the next one
