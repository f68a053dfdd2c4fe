"""Images cross between orch and its peers and RUN on the other side (issue 4's interop):

- an image podman made (a layer written by a podman container, then `podman commit` and
  `podman save`, docker-archive and OCI archive) loads into orch and runs with `orch run`;
- an image orch saved loads into podman and runs there;
- an image skopeo pushed to a real registry (Debian's docker-registry on loopback) is pulled by
  `orch pull` and runs with `orch run`.

podman runs with its storage and run root in the test's directory, runc and cgroupfs (crun
refuses this machine's hybrid cgroups) and rlimits at or below the current ones.
"""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.integration.registry.conftest import registry_server  # noqa: F401  (a fixture)

pytestmark = pytest.mark.privileged


@pytest.fixture
def podman(tmp_path):
    for tool in ("podman", "runc"):
        if not shutil.which(tool):
            pytest.fail(f"{tool} is missing: scripts/setup installs it (apt-get install podman runc)")
    storage = tmp_path / "podman"
    # podman wants a run root shorter than 50 characters: pytest's tmp paths are longer.
    run_root = tempfile.mkdtemp(prefix="orch-pod-", dir="/tmp")
    base = ["podman", "--root", str(storage), "--runroot", run_root, "--storage-driver", "vfs",
            "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "none"]

    def run(*args, check=True) -> subprocess.CompletedProcess:
        done = subprocess.run(base + list(args), capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr}")
        return done

    try:
        yield run
    finally:
        run("rm", "--all", "--force", check=False)
        run("rmi", "--all", "--force", check=False)
        for path in (storage, Path(run_root)):
            subprocess.run(["umount", "-R", str(path)], capture_output=True)
        shutil.rmtree(run_root, ignore_errors=True)


LIMITS = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", "--network", "none")


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_an_image_podman_made_and_saved_loads_and_runs_in_orch(node, podman, tmp_path, fmt):
    archive = tmp_path / "busybox.tar"
    node.orch("save", "-o", str(archive), "busybox:latest")
    podman("load", "-i", str(archive))
    podman("run", "--name", "maker", *LIMITS, "localhost/busybox:latest" if _has_localhost(podman) else "busybox:latest",
           "sh", "-c", "echo made by podman > /peer.txt")
    podman("commit", "maker", f"peer-{fmt}:v1")
    saved = tmp_path / f"peer-{fmt}.tar"
    podman("save", "--format", fmt, "-o", str(saved), f"peer-{fmt}:v1")

    loaded = node.orch("load", "-i", str(saved)).stdout
    # podman names its images localhost/NAME:TAG; docker would keep that name too.
    ref = _loaded_name(node, f"peer-{fmt}")
    assert ref in loaded or "Loaded image" in loaded, loaded
    out = node.orch("run", "--rm", "--network", "none", ref, "cat", "/peer.txt").stdout
    assert out == "made by podman\n"
    node.orch("rmi", ref)


def test_an_image_orch_saved_loads_and_runs_in_podman(node, podman, tmp_path):
    node.orch("run", "--name", "orch-maker", "--network", "none", "busybox", "sh", "-c", "echo made by orch > /mine.txt")
    node.orch("commit", "orch-maker", "orch-made:v1")
    node.orch("rm", "orch-maker")
    archive = tmp_path / "orch-made.tar"
    node.orch("save", "-o", str(archive), "orch-made:v1")
    podman("load", "-i", str(archive))
    done = podman("run", "--rm", *LIMITS, "orch-made:v1", "cat", "/mine.txt")
    assert done.stdout == "made by orch\n"
    node.orch("rmi", "orch-made:v1")


def test_an_image_skopeo_pushed_is_pulled_and_run_by_orch(node, registry_server, tmp_path):  # noqa: F811
    if not shutil.which("skopeo"):
        pytest.fail("skopeo is missing: scripts/setup installs it (apt-get install skopeo)")
    reg = registry_server()
    archive = tmp_path / "busybox-oci.tar"
    node.orch("save", "--format", "oci", "-o", str(archive), "busybox:latest")
    ref = f"{reg.host}/peers/busybox:skopeo"
    done = subprocess.run(["skopeo", "--insecure-policy", "copy", "--dest-tls-verify=false", "--dest-compress",
                           f"oci-archive:{archive}", f"docker://{ref}"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pulled = node.orch("pull", ref)
    assert f"Status: Downloaded newer image for {ref}" in pulled.stdout or "Pulled" in pulled.stdout, pulled.stdout
    out = node.orch("run", "--rm", "--network", "none", ref, "sh", "-c", "echo pulled and running; hostname").stdout.splitlines()
    assert out[0] == "pulled and running" and len(out[1]) == 12
    node.orch("rmi", ref)


def _has_localhost(podman) -> bool:
    return "localhost/busybox" in podman("images", "--format", "{{.Repository}}").stdout


def _loaded_name(node, repo: str) -> str:
    for line in node.orch("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split():
        if repo in line:
            return line
    raise AssertionError(f"no image named like {repo} after load: {node.orch('images').stdout}")
