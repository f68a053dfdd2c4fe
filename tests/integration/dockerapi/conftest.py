"""Two engines for the Docker Engine API's tests, side by side: an orch node (ORCH_ROOT and
ORCH_RUN in a temporary directory, its agent serving docker.sock) and a private dockerd
(bench/peers.py: its own data root, socket and bridge; no iptables rules), both with
busybox:latest from the same archive, and the real docker CLI 28 for both
(`docker(engine, *args)`), each with a DOCKER_CONFIG of its own.

The node is the agent tests' (tests/integration/agent/conftest.py's OrchNode and its
clean-up); dockerd is stopped and its data removed at the end.
"""

import os
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.peers import private_dockerd
from tests.integration.agent.conftest import OrchNode
from tests.integration.build.conftest import cached_base
from tests.integration.processes import remove_node_cgroups, remove_node_networks, stop_process

pytestmark = pytest.mark.privileged


@dataclass
class Engine:
    name: str
    env: dict

    def docker(self, *args, check=True, timeout=120, input=None, env=None) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], env=dict(self.env, **(env or {})), capture_output=True, text=True,
                              timeout=timeout, input=input, stdin=None if input is not None else subprocess.DEVNULL)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name}: docker {' '.join(args)} exited {done.returncode}\n"
                                 f"stdout: {done.stdout}\nstderr: {done.stderr}")
        return done


@pytest.fixture(scope="session")
def orch_engine():
    if os.geteuid() != 0:
        pytest.skip("needs root (namespaces, mounts, cgroups); run as root, as CI does")
    if not shutil.which("docker"):
        pytest.fail("missing the docker CLI: run scripts/setup (apt-get install docker.io)", pytrace=False)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    base = Path(tempfile.mkdtemp(prefix="orch-dockerapi-test-"))
    node = OrchNode(base)
    try:
        node.root.mkdir()
        node.orch("load", "-i", str(cached_base("busybox")))  # the first command starts the agent
        (base / "docker-config").mkdir()
        yield Engine("orch", dict(node.env, DOCKER_HOST=f"unix://{node.run_dir}/docker.sock", DOCKER_CONFIG=str(base / "docker-config")))
    finally:
        try:
            ids = node.orch("ps", "-aq", "--no-trunc", check=False).stdout.split()
            if ids:
                node.orch("rm", "-f", *ids, check=False)
        finally:
            sup = node.supervisor_pid()
            stop_process(node.agent_pid())
            stop_process(sup)
            remove_node_networks(node.root, node.net_prefix)
            remove_node_cgroups(node.root)
            signal.signal(signal.SIGTERM, previous)
            subprocess.run(["umount", "-R", str(base)], capture_output=True)
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def dockerd_engine(tmp_path_factory):
    if not shutil.which("dockerd"):
        pytest.fail("missing dockerd: run scripts/setup (apt-get install docker.io)", pytrace=False)
    config = tmp_path_factory.mktemp("dockerd-config")
    with private_dockerd(cached_base("busybox"), bridge=True) as env:
        if isinstance(env, str):
            pytest.fail(f"the private dockerd did not start: {env}", pytrace=False)
        yield Engine("dockerd", dict(env, DOCKER_CONFIG=str(config)))


@pytest.fixture(params=["orch", "dockerd"])
def engine(request):
    """The test once with each engine (a comparison that needs both at once takes both)."""
    return request.getfixturevalue(f"{request.param}_engine")


@pytest.fixture
def both(orch_engine, dockerd_engine):
    return orch_engine, dockerd_engine
