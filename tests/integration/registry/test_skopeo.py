"""Interop with skopeo (containers/image): orch pushes and skopeo reads; skopeo pushes and orch pulls."""

import json
import subprocess

import pytest

from orch.registry.pull import pull
from orch.registry.push import push

from .conftest import PASSWORD, USER, make_image

pytestmark = pytest.mark.tools("skopeo", package="skopeo")

LAYERS = [{"bin/app": b"#!/bin/sh\necho skopeo\n"}, {"etc/motd": b"layer two\n" * 100}]


def skopeo(*args: str) -> str:
    # --insecure-policy: no /etc/containers/policy.json is needed for a test registry.
    done = subprocess.run(["skopeo", "--insecure-policy", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("auth", [False, True])
def test_orch_pushes_and_skopeo_copies(registry_server, store_factory, tmp_path, monkeypatch, auth):
    reg = registry_server(auth=auth)
    creds = ["--creds", f"{USER}:{PASSWORD}"] if auth else []
    if auth:
        from orch.registry import credentials

        credentials.save(reg.host, USER, PASSWORD)
    store = store_factory()
    ref = f"{reg.host}/interop/app:v1"
    image = make_image(store, ref, LAYERS)
    digest = push(store, ref)

    info = json.loads(skopeo("inspect", "--tls-verify=false", *creds, f"docker://{ref}"))
    assert info["Digest"] == digest
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", *creds, f"docker://{ref}"))
    assert info["Layers"] == [l["digest"] for l in raw["layers"]]
    assert raw["config"]["digest"] == image.id

    out = tmp_path / "oci"
    src_creds = ["--src-creds", f"{USER}:{PASSWORD}"] if auth else []
    skopeo("copy", "--src-tls-verify=false", *src_creds, f"docker://{ref}", f"oci:{out}:v1")
    loaded = store_factory("loaded")
    loaded.load(out)
    (copy,) = loaded.list()
    assert copy.id == image.id and copy.diff_ids == image.diff_ids


@pytest.mark.parametrize("fmt", ["oci", "v2s2", "zstd"])
def test_skopeo_pushes_and_orch_pulls(registry_server, store_factory, tmp_path, fmt):
    reg = registry_server()
    src = store_factory("src")
    image = make_image(src, "example.org/interop/app:v1", LAYERS)
    archive = tmp_path / "app.tar"
    src.save(["example.org/interop/app:v1"], archive, fmt="oci")
    ref = f"{reg.host}/interop/app:{fmt}"
    extra = {"oci": ["--format", "oci"], "v2s2": ["--format", "v2s2", "--dest-compress"],
             "zstd": ["--format", "oci", "--dest-compress", "--dest-compress-format", "zstd"]}[fmt]
    skopeo("copy", "--dest-tls-verify=false", *extra, f"oci-archive:{archive}", f"docker://{ref}")
    raw = json.loads(skopeo("inspect", "--raw", "--tls-verify=false", f"docker://{ref}"))
    if fmt == "v2s2":
        assert raw["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    if fmt == "zstd":
        assert all(l["mediaType"].endswith("+zstd") for l in raw["layers"])

    dst = store_factory("dst")
    pulled = pull(dst, ref)
    assert pulled.id == image.id and pulled.diff_ids == image.diff_ids
    top = dst.snapshots.committed_path(pulled.top_layer)
    assert (top / "etc/motd").read_bytes() == b"layer two\n" * 100
