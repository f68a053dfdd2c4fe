"""Base images from Debian packages, for real: busybox-static and debootstrap.

The debian test runs debootstrap (about 30-60 s, from the Debian mirror); it is marked slow
but runs in CI, once per session.
"""

import os
import shutil
import subprocess

import pytest

from orch.node.runtime import bootstrap as bs
from orch.node.runtime import layers
from orch.node.runtime.images import ImageStore

pytestmark = pytest.mark.privileged


def run_in(store, image, key, mounts, tmp_path, *argv):
    """Mount the image's rootfs as a container would see it and run a program in it (chroot)."""
    [m] = store.prepare_rootfs(image, key)
    root = mounts(m, tmp_path / key)
    return subprocess.run(["chroot", str(root), *argv], capture_output=True, text=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def test_busybox_bootstrap_builds_a_working_cached_reproducible_image(store, tmp_path, mounts):
    image, built, message = bs.bootstrap(store, "busybox")
    assert built and message == f"built busybox:latest ({image.short_id}, 1 layer)"
    assert image.repo_tags == ("busybox:latest",) and len(image.diff_ids) == 1
    cfg = image.config["config"]
    assert cfg["Cmd"] == ["sh"] and cfg["Env"] == [bs.PATH_ENV]
    assert "busybox-static" in image.config["history"][0]["comment"]

    again, built, message = bs.bootstrap(store, "busybox")
    assert not built and again.id == image.id and message == f"busybox:latest is already there ({image.short_id}); use --force to build it again"

    rebuilt, built, _ = bs.bootstrap(store, "busybox", force=True)
    assert built and rebuilt.id == image.id and rebuilt.diff_ids == image.diff_ids  # reproducible

    p = run_in(store, image, "c1", mounts, tmp_path, "/bin/sh", "-c", "echo $((6*7)); ls -d /bin/ls /tmp /proc /etc/passwd; id -un; id -u nobody")
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["42", "/bin/ls", "/etc/passwd", "/proc", "/tmp", "root", "65534"]
    store.remove_snapshot("c1")


def test_busybox_tree_is_deterministic(tmp_path):
    fake = tmp_path / "busybox"
    fake.write_bytes(b"\x7fELF fake")
    digests = []
    for name in ("a", "b"):
        root = tmp_path / name
        root.mkdir()
        bs.busybox_tree(root, fake, ["sh", "ls", "busybox", "cat"], epoch=1_700_000_000)
        with open(os.devnull, "wb") as out:
            digests.append(layers.create_layer(root, out, epoch=1_700_000_000)[0])
    assert digests[0] == digests[1]
    root = tmp_path / "a"
    assert sorted(os.listdir(root / "bin")) == ["busybox", "cat", "ls", "sh"] and os.readlink(root / "bin/sh") == "busybox"
    assert (root / "etc/passwd").read_text().startswith("root:x:0:0:")
    assert oct(os.stat(root / "tmp").st_mode & 0o7777) == "0o1777"


def test_unknown_base_is_refused(store):
    with pytest.raises(bs.InvalidArgument, match="unknown base image 'alpine'; choose one of: busybox, debian"):
        bs.bootstrap(store, "alpine")


@pytest.fixture(scope="session")
def debian(tmp_path_factory):
    """One debootstrap per session; tests that need debian:bookworm share this store."""
    root = tmp_path_factory.mktemp("debian-store")
    try:
        store = ImageStore(root)
        image, built, _ = bs.bootstrap(store, "debian")
        assert built
        yield store, image
    finally:
        shutil.rmtree(root, ignore_errors=True)  # 240 MB: not left for pytest's tmp retention


@pytest.mark.slow
def test_debian_bootstrap_gives_a_working_bookworm(debian, tmp_path, mounts):
    store, image = debian
    assert image.repo_tags == ("debian:bookworm",) and image.config["config"]["Cmd"] == ["bash"]
    assert image.size > 50_000_000
    assert bs.bootstrap(store, "debian")[1] is False  # cached
    p = run_in(store, image, "deb1", mounts, tmp_path, "/bin/bash", "-c", "cat /etc/debian_version; dpkg -s bash | grep Status; ls /var/log | wc -l")
    assert p.returncode == 0, p.stderr
    version, status, logs = p.stdout.splitlines()
    assert version.startswith("12.") and status == "Status: install ok installed" and logs == "0"
    store.remove_snapshot("deb1")
