"""Archives interchangeable with the peers: skopeo reads what orch saves, orch loads what skopeo writes."""

import json
import subprocess

import pytest

from orch.node.runtime.images import ImageStore

from .conftest import entry, tar_bytes

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.tools("skopeo", package="skopeo"),
]


def skopeo(*args) -> str:
    p = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout


@pytest.fixture
def image(store, tmp_path):
    (tmp_path / "r.tar").write_bytes(tar_bytes(entry("bin", "dir"), entry("bin/hello", data=b"#!/bin/sh\necho hi\n", mode=0o755)))
    return store.import_rootfs(tmp_path / "r.tar", "hello:1", {"Cmd": ["/bin/hello"]})


def test_skopeo_reads_what_orch_saves(store, image, tmp_path):
    store.save(["hello:1"], tmp_path / "d.tar")
    store.save(["hello:1"], tmp_path / "o.tar", "oci")
    for source in (f"docker-archive:{tmp_path}/d.tar", f"oci-archive:{tmp_path}/o.tar:1"):
        info = json.loads(skopeo("inspect", source))
        assert info["Layers"] == image.diff_ids and info["Architecture"] == "amd64", source
    config = json.loads(skopeo("inspect", "--config", f"oci-archive:{tmp_path}/o.tar:1"))
    assert config["config"]["Cmd"] == ["/bin/hello"]


@pytest.mark.parametrize("dest, load_from, tags", [
    ("docker-archive:{t}/copy.tar:example.com/hello:2", "{t}/copy.tar", ("example.com/hello:2",)),
    ("oci:{t}/layout:example.com/hello:3", "{t}/layout", ("example.com/hello:3",)),
    ("oci-archive:{t}/copy-oci.tar:latest", "{t}/copy-oci.tar", ()),
])
def test_orch_loads_what_skopeo_writes(store, image, tmp_path, dest, load_from, tags):
    store.save(["hello:1"], tmp_path / "d.tar")
    skopeo("copy", "--dest-compress" if dest.startswith("oci") else "--quiet", f"docker-archive:{tmp_path}/d.tar", dest.format(t=tmp_path))
    fresh = ImageStore(tmp_path / "fresh")
    fresh.load(load_from.format(t=tmp_path))
    [loaded] = fresh.list()
    assert loaded.diff_ids == image.diff_ids and loaded.repo_tags == tags
    assert loaded.config["config"]["Cmd"] == ["/bin/hello"]
