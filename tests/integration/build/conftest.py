"""Fixtures for the builder's privileged tests: a store in a temporary ORCH_ROOT with the base
images loaded, and a way to run an image.

Base images come from the store's bootstrap (busybox from Debian's busybox-static, debian from
debootstrap). Each is made once per machine and kept as a docker-archive under
/var/cache/orch-test (ORCH_TEST_CACHE), so a test only pays for `load` (busybox: a few tens of
milliseconds; debootstrap takes ~30-60 s the first time). Every test checks afterwards that
no mount under its directories and no build cgroup is left.
"""

import fcntl
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from orch.node.runtime.images import ImageStore

CACHE = Path(os.environ.get("ORCH_TEST_CACHE", "/var/cache/orch-test"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (debootstrap, apt-get); CI runs it")


def cached_base(name: str) -> Path:
    """A docker-archive of base image `name` ("busybox" or "debian"), made once per machine."""
    from orch.node.runtime.bootstrap import BASES, bootstrap

    CACHE.mkdir(parents=True, exist_ok=True)
    archive = CACHE / f"orch-base-{name}.tar"
    with open(CACHE / f"orch-base-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs make it once
        if not archive.exists():
            tmp = Path(tempfile.mkdtemp(prefix=f"orch-base-{name}-"))
            try:
                store = ImageStore(tmp)
                bootstrap(store, name)
                store.save([BASES[name]], tmp / "image.tar")
                os.rename(tmp / "image.tar", archive)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return archive


def build_mounts(*dirs) -> list[str]:
    prefixes = tuple(str(d) for d in dirs)
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if line.split()[4].startswith(prefixes)]


def build_cgroups(root: Path) -> list[str]:
    """The RUN-step cgroups of the node at `root` that still exist (other nodes' are not ours)."""
    from orch.build.rootfs import build_cgroup_path

    return [str(p) for p in Path("/sys/fs/cgroup").glob("*/" + build_cgroup_path(root, "build-*"))]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """An image store in a temporary ORCH_ROOT with busybox:latest loaded."""
    if os.geteuid() != 0:
        pytest.skip("needs root (overlayfs, namespaces, cgroups); run as root, as CI does")
    root = tmp_path / "root"
    monkeypatch.setenv("ORCH_ROOT", str(root))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    s = ImageStore(root)
    s.load(cached_base("busybox"))
    try:
        yield s
    finally:
        from tests.integration.processes import remove_node_cgroups

        assert build_mounts(tmp_path) == [], "a build left a mount behind"
        assert build_cgroups(root) == [], "a build left a cgroup behind"
        remove_node_cgroups(root)


@pytest.fixture
def context(tmp_path):
    """A function writing a build context from {relative path: text}."""

    def make(files: dict, name: str = "ctx") -> Path:
        d = tmp_path / name
        for rel, text in files.items():
            p = d / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        d.mkdir(exist_ok=True)
        return d

    return make


def run_image(store, image, command=None) -> tuple[int, str]:
    """Run a container of `image` as `orch run` would (its Entrypoint/Cmd, Env, WorkingDir,
    User) with the runtime's spawn; return (exit code, output)."""
    from orch.build import rootfs
    from orch.node.runtime.config import compute_process

    process = compute_process(image.config, entrypoint=None, command=command, env=[], workdir=None, user=None, tty=False)
    lines: list[str] = []
    try:
        key = rootfs.run(store, image, list(process.args), env=list(process.env), cwd=process.cwd, user=process.user,
                         network="none", out=lines.append)
    except rootfs.RunFailed as err:
        return err.exit_code, "\n".join(lines)
    store.remove_snapshot(key)
    return 0, "\n".join(lines)


@pytest.fixture
def build_network(store, tmp_path):
    """What the agent gives a build's "default" RUN steps (routes_build): a namespace on the
    node's default bridge with NAT out, made through the node's networking, with its own
    nftables table and bridge names; removed afterwards, also when the test fails."""
    from orch.build.rootfs import BuildNetwork
    from orch.node.agent.networking import NodeNetworking
    from tests.integration.processes import remove_node_networks

    from orch.net.files import parse_resolv_conf
    from orch.net.kernel import RealKernel
    from orch.net.manager import Networks

    prefix = "orchB" + os.urandom(2).hex()
    # No embedded DNS here (its threads would share this process with the builds' forks):
    # the steps get the host's resolvers, as docker's default bridge gives them.
    networks = Networks(RealKernel(), run_dir=tmp_path / "run", dns=None, table=prefix, bridge_prefix=prefix + "-",
                        host_resolv=parse_resolv_conf(Path("/etc/resolv.conf").read_text()))
    net = NodeNetworking(store.root, tmp_path / "run", prefix=prefix, networks=networks)
    build_id = "build-" + os.urandom(12).hex()
    try:
        path, resolv = net.setup_build(build_id)
        yield BuildNetwork(path, resolv)
    finally:
        try:
            net.release(build_id)
            net.nets.reap(force=True)
            net.close()
        finally:
            remove_node_networks(store.root, prefix)
