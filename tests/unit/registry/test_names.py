"""Where references live, which manifests orch takes, and the platform it picks."""

import json

import pytest

from orch.errors import InvalidArgument, NotFound
from orch.registry import manifest as mf
from orch.registry.names import credentials_key, locate

LOCATIONS = [
    # reference, host, scheme, repository, tag, digest
    ("busybox", "registry-1.docker.io", "https", "library/busybox", "latest", None),
    ("docker.io/library/busybox:1.36", "registry-1.docker.io", "https", "library/busybox", "1.36", None),
    ("index.docker.io/me/app", "registry-1.docker.io", "https", "me/app", "latest", None),
    ("me/app:v2", "registry-1.docker.io", "https", "me/app", "v2", None),
    ("localhost:5000/app", "localhost:5000", "http", "app", "latest", None),
    ("127.0.0.1:5000/a/b/c:t", "127.0.0.1:5000", "http", "a/b/c", "t", None),
    ("[::1]:5000/app:x", "[::1]:5000", "http", "app", "x", None),
    ("registry.example.com/team/app", "registry.example.com", "https", "team/app", "latest", None),
    ("ghcr.io/o/app@sha256:" + "a" * 64, "ghcr.io", "https", "o/app", None, "sha256:" + "a" * 64),
]


@pytest.mark.parametrize("ref, host, scheme, repo, tag, digest", LOCATIONS)
def test_locate(ref, host, scheme, repo, tag, digest):
    loc = locate(ref)
    assert (loc.host, loc.scheme, loc.repository, loc.ref.tag, loc.ref.digest) == (host, scheme, repo, tag, digest)


def test_insecure_registries_speak_http():
    assert locate("reg.lan:5000/app", "reg.lan:5000").scheme == "http"
    assert locate("reg.lan:5000/app", "reg.lan").scheme == "http"
    assert locate("reg.lan:5000/app", "other").scheme == "https"


@pytest.mark.parametrize("server, key", [
    (None, "https://index.docker.io/v1/"), ("docker.io", "https://index.docker.io/v1/"), ("index.docker.io", "https://index.docker.io/v1/"),
    ("https://index.docker.io/v1/", "https://index.docker.io/v1/"), ("localhost:5000", "localhost:5000"),
    ("http://localhost:5000/", "localhost:5000"), ("https://reg.example.com/v2/", "reg.example.com"),
])
def test_credentials_key(server, key):
    assert credentials_key(server) == key


def _index(*platforms):
    return {"manifests": [{"digest": f"sha256:{i:064x}", "platform": dict(zip(("os", "architecture"), p.split("/")))}
                          for i, p in enumerate(platforms)]}


@pytest.mark.parametrize("platforms, picked", [
    (["linux/amd64"], 0), (["linux/arm64", "linux/amd64"], 1), (["linux/amd64", "linux/amd64"], 0),
    (["windows/amd64", "linux/arm/v7", "linux/amd64"], 2),
])
def test_pick_platform(platforms, picked):
    assert mf.pick_platform(_index(*platforms), "x")["digest"] == f"sha256:{picked:064x}"


def test_pick_platform_names_what_there_is():
    with pytest.raises(NotFound, match=r"^app: no linux/amd64 image in its index \(it has linux/arm, linux/arm64\);"):
        mf.pick_platform(_index("linux/arm64", "linux/arm"), "app")


@pytest.mark.parametrize("media, kind", [
    (mf.LAYER_GZIP, "gzip"), (mf.DOCKER_LAYER_GZIP, "gzip"), (mf.LAYER_TAR, ""), (mf.LAYER_ZSTD, "zstd"),
    ("application/vnd.docker.image.rootfs.diff.tar", ""),
])
def test_compression(media, kind):
    assert mf.compression(media) == kind


def test_unknown_layer_type_is_refused():
    with pytest.raises(InvalidArgument, match="unsupported layer media type 'text/plain'"):
        mf.compression("text/plain")


@pytest.mark.parametrize("doc, header, media", [
    ({"mediaType": mf.DOCKER_MANIFEST, "config": {}}, "", mf.DOCKER_MANIFEST),
    ({"config": {}}, mf.OCI_MANIFEST + "; charset=utf-8", mf.OCI_MANIFEST),
    ({"manifests": []}, "", mf.OCI_INDEX),
    ({"config": {}}, "", mf.OCI_MANIFEST),
    ({"mediaType": mf.DOCKER_LIST, "manifests": []}, mf.OCI_INDEX, mf.DOCKER_LIST),
])
def test_parse_document(doc, header, media):
    assert mf.parse_document(json.dumps(doc).encode(), header, "m")[0] == media


@pytest.mark.parametrize("raw, message", [
    (b"not json", "m: the registry sent a manifest that is not JSON"),
    (b"[]", "m: the registry sent a manifest that is not a JSON object"),
    (json.dumps({"schemaVersion": 1, "mediaType": "application/vnd.docker.distribution.manifest.v1+prettyjws"}).encode(),
     r"m: unsupported manifest type .* \(schema 1 manifests are obsolete"),
    (json.dumps({"mediaType": mf.OCI_MANIFEST}).encode(), "m: the manifest has no config descriptor"),
])
def test_bad_documents(raw, message):
    with pytest.raises(InvalidArgument, match=message):
        mf.parse_document(raw, "", "m")


def test_check_layers_counts_diff_ids():
    manifest = {"layers": [{"mediaType": mf.LAYER_GZIP, "digest": "sha256:" + "1" * 64, "size": 3}]}
    with pytest.raises(InvalidArgument, match="x: the manifest lists 1 layers but the image config 2 diff IDs"):
        mf.check_layers(manifest, {"rootfs": {"diff_ids": ["a", "b"]}}, "x")
