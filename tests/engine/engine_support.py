"""A real container engine for the engine tests: the docker CLI, the images they run, containers.

The tests talk to whatever engine ``docker`` reaches (``DOCKER_HOST``, or the default socket);
``.ci/engine`` starts a private one. No registry is assumed: ``node:20-bookworm-slim`` (the base
of ``Dockerfile.base``) is built locally from Debian's minbase plus this machine's node 20 when
the engine does not have it, and kept by the engine, so later runs reuse it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Optional

DOCKER = "docker"
REPO = Path(__file__).resolve().parents[2]
NODE_IMAGE = "node:20-bookworm-slim"  # Dockerfile.base's FROM with NODE_VERSION=20
BASE_IMAGE = "reloadd-node:engine-test"  # Dockerfile.base built from this checkout
STANDIN_LABEL = "org.reloadd.standin"  # marks a node image built here rather than pulled
ENGINE_TIMEOUT = 20.0  # seconds for a docker command that only talks to the engine
BUILD_TIMEOUT = 600.0  # seconds for an image build (a cold PyPI/npm download through a proxy)
# The engine runs containers on the host's network (a private engine has no bridge): apps in the
# tests listen on 127.0.0.1 and nothing is published anywhere else.
NETWORK = ["--network", "host"]
# Where this machine's extra CA certificates live (a TLS-inspecting proxy in front of the package
# registries). They go into the stand-in node image only: a test-machine fact, never part of the
# published Dockerfile.
EXTRA_CA_DIR = Path("/usr/local/share/ca-certificates")
STANDIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # docker import sets none


def docker_env() -> dict[str, str]:
    # The classic builder: the machine may have no buildx plugin, and BuildKit would then refuse.
    return {**os.environ, "DOCKER_BUILDKIT": "0", "DOCKER_CLI_HINTS": "false"}


def docker(*args: str, timeout: float = ENGINE_TIMEOUT, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; fail with its stderr when ``check`` and it fails."""
    done = subprocess.run(
        [DOCKER, *args], capture_output=True, text=True, timeout=timeout, env=docker_env(), check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({done.returncode}):\n{done.stderr}{done.stdout}")
    return done


def engine_missing() -> Optional[str]:
    """Why there is no engine to test against, or None when ``docker`` reaches one."""
    if shutil.which(DOCKER) is None:
        return "no docker CLI on PATH (.ci/engine installs docker.io and starts a private engine)"
    try:
        done = docker("version", "--format", "{{.Server.Version}}", check=False)
    except subprocess.TimeoutExpired:
        return "the container engine does not answer"
    if done.returncode != 0:
        where = os.environ.get("DOCKER_HOST", "the default socket")
        return f"no container engine at {where} (.ci/engine starts one; needs root)"
    return None


def image_exists(tag: str) -> bool:
    return docker("image", "inspect", tag, check=False).returncode == 0


def image_size_mb(tag: str) -> float:
    return int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout) / 1e6


def ensure_node_image() -> None:
    """Make sure the engine has ``node:20-bookworm-slim``; build a stand-in when it has not."""
    if image_exists(NODE_IMAGE):
        return
    node = shutil.which("node")
    if os.geteuid() != 0 or shutil.which("mmdebstrap") is None or node is None:
        raise RuntimeError(f"{NODE_IMAGE} is not in the engine and building a stand-in needs root, mmdebstrap, node")
    with tempfile.TemporaryDirectory(prefix="reloadd-standin-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        _debian_minbase(rootfs)
        _add_node(rootfs, Path(node).resolve())
        _add_node_user(rootfs)
        _import(rootfs)


def _debian_minbase(rootfs: Path) -> None:
    argv = ["mmdebstrap", "--quiet", "--variant=minbase", "--include=ca-certificates,libstdc++6", "bookworm"]
    subprocess.run([*argv, str(rootfs)], check=True, timeout=BUILD_TIMEOUT, capture_output=True)


def _add_node(rootfs: Path, node: Path) -> None:
    """This machine's node and its npm, where the official image has them (/usr/local)."""
    local = rootfs / "usr/local"
    shutil.copy2(node, local / "bin/node")
    npm = node.parent.parent / "lib/node_modules/npm"
    if npm.is_dir():
        shutil.copytree(npm, local / "lib/node_modules/npm", symlinks=True)
        (local / "bin/npm").symlink_to("../lib/node_modules/npm/bin/npm-cli.js")
    for cert in sorted(EXTRA_CA_DIR.glob("*.crt")):
        shutil.copy2(cert, rootfs / "usr/local/share/ca-certificates" / cert.name)
    subprocess.run(["chroot", str(rootfs), "update-ca-certificates"], check=True, capture_output=True)


def _add_node_user(rootfs: Path) -> None:
    """The official image's unprivileged ``node`` user (uid 1000), which Dockerfile.base runs as."""
    with open(rootfs / "etc/passwd", "a") as passwd:
        passwd.write("node:x:1000:1000::/home/node:/bin/bash\n")
    with open(rootfs / "etc/group", "a") as group:
        group.write("node:x:1000:\n")
    home = rootfs / "home/node"
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, 1000, 1000)


def _import(rootfs: Path) -> None:
    changes = [
        f"ENV PATH={STANDIN_PATH}",
        # node carries its own CA list; the system store holds this machine's proxy CA too.
        "ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt",
        f"LABEL {STANDIN_LABEL}=1",
        'CMD ["node"]',
    ]
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    argv = [DOCKER, "import", *(arg for change in changes for arg in ("--change", change)), "-", NODE_IMAGE]
    imported = subprocess.run(argv, stdin=tar.stdout, capture_output=True, env=docker_env(), timeout=BUILD_TIMEOUT)
    assert tar.stdout is not None
    tar.stdout.close()
    tar.wait()
    if imported.returncode != 0:
        raise RuntimeError(f"docker import failed: {imported.stderr.decode(errors='replace')}")


def build(tag: str, dockerfile: Path, context: Path, *build_args: str) -> float:
    """``docker build`` on the host network; returns the seconds it took (cached layers are fast)."""
    started = time.monotonic()
    args = [arg for build_arg in build_args for arg in ("--build-arg", build_arg)]
    docker("build", *NETWORK, "-q", "-f", str(dockerfile), "-t", tag, *args, str(context), timeout=BUILD_TIMEOUT)
    return time.monotonic() - started


def unique_name(what: str) -> str:
    return f"reloadd-test-{what}-{uuid.uuid4().hex[:8]}"


class Container:
    """A container started with ``docker run -d`` and removed (with everything in it) at the end."""

    def __init__(self, image: str, *run_args: str, command: tuple[str, ...] = (), what: str = "app") -> None:
        self.name = unique_name(what)
        docker("run", "-d", "--name", self.name, *NETWORK, *run_args, image, *command)

    def logs(self) -> str:
        done = docker("logs", self.name, check=False)
        return done.stdout + done.stderr

    def exec(self, *argv: str, user: Optional[str] = None) -> str:
        who = ["--user", user] if user else []
        return docker("exec", *who, self.name, *argv).stdout

    def status(self) -> str:
        return docker("inspect", "--format", "{{.State.Status}}", self.name).stdout.strip()

    def exit_code(self) -> int:
        return int(docker("inspect", "--format", "{{.State.ExitCode}}", self.name).stdout)

    def processes(self) -> list[tuple[str, str]]:
        """(state, command) of every process in the container, as its own ps would show them."""
        out = self.exec("sh", "-c", "for d in /proc/[0-9]*; do echo $(cut -d' ' -f3 $d/stat) $(cat $d/comm); done")
        return [tuple(line.split(" ", 1)) for line in out.splitlines() if " " in line]  # type: ignore[misc]

    def remove(self) -> None:
        docker("rm", "-f", "-v", self.name, check=False)
