"""Images that crossed a registry run: podman runs what orch pushed; orch's pulled layers,
mounted as the overlay the store prepares, run a shell in fresh namespaces.

The busybox image comes from `bootstrap` (Debian's busybox-static), made once per machine.
"""

import shutil
import subprocess
import tempfile

import pytest

from orch.node.runtime.images import ImageStore
from orch.registry.pull import pull
from orch.registry.push import push
from tests.integration.build.conftest import cached_base

pytestmark = pytest.mark.privileged


@pytest.fixture(scope="session")
def busybox_archive(tmp_path_factory):
    """An OCI archive of `orch bootstrap busybox` (its image made once per machine: cached_base)."""
    base = tmp_path_factory.mktemp("busybox")
    store = ImageStore(base / "store")
    store.load(cached_base("busybox"))
    archive = base / "busybox-oci.tar"
    store.save(["busybox:latest"], archive, fmt="oci")
    return archive


def _podman(root, run_root, *args) -> subprocess.CompletedProcess:
    # Storage and run state in the test's directory; runc and cgroupfs because crun refuses
    # this machine's hybrid cgroups; rlimits at or below the current ones, because raising
    # them needs CAP_SYS_RESOURCE, which this machine does not give.
    base = ["podman", "--root", str(root / "storage"), "--runroot", str(run_root), "--storage-driver", "vfs",
            "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=120)


@pytest.mark.tools("podman", "runc", package="podman runc")
def test_podman_runs_what_orch_pushed(registry_server, store_factory, busybox_archive, tmp_path):
    reg = registry_server()
    store = store_factory()
    store.load(busybox_archive)
    ref = f"{reg.host}/base/busybox:v1"
    store.tag("busybox:latest", ref)
    push(store, ref)
    pod = tmp_path / "podman"
    # podman wants a run root shorter than 50 characters: pytest's tmp paths are longer.
    run_root = tempfile.mkdtemp(prefix="orch-pod-", dir="/tmp")
    try:
        done = _podman(pod, run_root, "run", "--rm", "--tls-verify=false", "--network", "none", "--ulimit", "nofile=1024:1024",
                       "--ulimit", "nproc=1024:1024", ref, "sh", "-c", "echo hello from podman; head -1 /etc/passwd")
        assert done.returncode == 0, done.stderr
        assert done.stdout == "hello from podman\nroot:x:0:0:root:/root:/bin/sh\n"
    finally:
        _podman(pod, run_root, "rm", "--all", "--force")
        for path in (pod, run_root):
            subprocess.run(["umount", "-R", str(path)], capture_output=True)  # nothing should be left; make sure
        shutil.rmtree(run_root, ignore_errors=True)


def test_orch_runs_what_skopeo_pushed(registry_server, store_factory, busybox_archive, tmp_path):
    reg = registry_server()
    ref = f"{reg.host}/base/busybox:skopeo"
    done = subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "--dest-compress",
                           f"oci-archive:{busybox_archive}", f"docker://{ref}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    store = store_factory()
    image = pull(store, ref)
    (mount,) = store.prepare_rootfs(image, "registry-run-test")
    root = tmp_path / "rootfs"
    root.mkdir()
    try:
        # A private mount namespace: the overlay vanishes with the process, even if it is killed.
        script = f'mount -t overlay overlay -o {",".join(mount.options)} {root} && exec chroot {root} /bin/sh -c "hostname box; echo hello from \\$(hostname); ls /bin/busybox"'
        run = subprocess.run(["unshare", "--mount", "--uts", "--pid", "--fork", "--propagation", "private", "sh", "-c", script],
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stderr
        assert run.stdout == "hello from box\n/bin/busybox\n"
    finally:
        store.remove_snapshot("registry-run-test")
