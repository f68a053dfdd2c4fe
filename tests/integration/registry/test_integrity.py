"""Indexes, corrupt blobs and interrupted uploads against a real registry."""

import json

import httpx
import pytest

from orch.errors import NotFound, SystemFailure
from orch.registry import manifest as mf
from orch.registry.client import RegistryClient
from orch.registry.pull import pull
from orch.registry.push import push

from .conftest import make_image

AMD = [{"bin/app": b"amd64 program\n"}]
ARM = [{"bin/app": b"arm64 program\n"}]


def _push_index(reg, src, repo: str) -> tuple[str, str, str]:
    """Push an amd64 and an arm64 image by digest and an index of both under :multi."""
    amd = make_image(src, f"{reg.host}/{repo}:amd", AMD)
    arm_image = make_image(src, None, ARM)
    # Rewrite the second image's config as arm64 (a different config, so a different id).
    arm_config = dict(arm_image.config, architecture="arm64")
    from orch.node.runtime.images import canonical_json

    arm, _ = src.add_image(canonical_json(arm_config), [(l["digest"], l["mediaType"]) for l in arm_image.layers], [f"{reg.host}/{repo}:arm"])
    amd_digest = push(src, f"{reg.host}/{repo}:amd")
    arm_digest = push(src, f"{reg.host}/{repo}:arm")
    index = {
        "schemaVersion": 2,
        "mediaType": mf.OCI_INDEX,
        "manifests": [
            {"mediaType": mf.OCI_MANIFEST, "digest": arm_digest, "size": 0, "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": mf.OCI_MANIFEST, "digest": amd_digest, "size": 0, "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }
    with RegistryClient(reg.host, "http") as client:
        for entry in index["manifests"]:
            _, _, raw, _ = client.get_manifest(repo, entry["digest"])
            entry["size"] = len(raw)
        raw = json.dumps(index).encode()
        index_digest = client.put_manifest(repo, "multi", mf.OCI_INDEX, raw)
    return amd.id, arm.id, index_digest


def test_pulling_an_index_picks_linux_amd64(registry_server, store_factory):
    reg = registry_server()
    amd_id, arm_id, index_digest = _push_index(reg, store_factory("src"), "demo/multi")
    dst = store_factory("dst")
    image = pull(dst, f"{reg.host}/demo/multi:multi")
    assert image.id == amd_id != arm_id
    # docker records the digest the tag points to: the index's.
    assert image.repo_digests == (f"{reg.host}/demo/multi@{index_digest}",)
    assert [i.id for i in dst.list()] == [amd_id]


def test_an_index_without_linux_amd64_is_refused(registry_server, store_factory):
    reg = registry_server()
    src = store_factory("src")
    _push_index(reg, src, "demo/multi")
    with RegistryClient(reg.host, "http") as client:
        _, doc, _, _ = client.get_manifest("demo/multi", "multi")
        doc["manifests"] = doc["manifests"][:1]  # arm64 only
        client.put_manifest("demo/multi", "armonly", mf.OCI_INDEX, json.dumps(doc).encode())
    dst = store_factory("dst")
    with pytest.raises(NotFound, match=r"no linux/amd64 image in its index \(it has linux/arm64\)"):
        pull(dst, f"{reg.host}/demo/multi:armonly")
    assert dst.list() == []


def _nothing_kept(store) -> None:
    assert store.list() == []
    assert list(store.content.list()) == []
    assert store.snapshots.list_committed() == []
    assert list(store.content.ingest_dir.iterdir()) == []


@pytest.mark.parametrize("which", [0, 1])
def test_a_corrupt_layer_is_refused_and_nothing_is_kept(registry_server, store_factory, which):
    reg = registry_server()
    src = store_factory("src")
    ref = f"{reg.host}/demo/app:v1"
    make_image(src, ref, [{"a": b"first layer\n" * 1000}, {"b": b"second layer\n" * 1000}])
    push(src, ref)
    with RegistryClient(reg.host, "http") as client:
        _, doc, _, _ = client.get_manifest("demo/app", "v1")
    victim = reg.blob_data_path(doc["layers"][which]["digest"])
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes: only the digest can tell
    victim.write_bytes(bytes(data))
    dst = store_factory("dst")
    with pytest.raises(SystemFailure, match=rf"blob demo/app@{doc['layers'][which]['digest']}: the registry sent \d+ bytes with digest sha256:[0-9a-f]{{64}}; refused, nothing kept"):
        pull(dst, ref, parallel=1)
    _nothing_kept(dst)


def test_a_corrupt_config_is_refused(registry_server, store_factory):
    reg = registry_server()
    src = store_factory("src")
    ref = f"{reg.host}/demo/app:v1"
    image = make_image(src, ref, AMD)
    push(src, ref)
    path = reg.blob_data_path(image.id)
    path.write_bytes(path.read_bytes().replace(b"amd64", b"arm64"))
    dst = store_factory("dst")
    with pytest.raises(SystemFailure, match="the registry sent content with digest sha256:.*; refused"):
        pull(dst, ref)
    _nothing_kept(dst)


class FlakyTransport(httpx.HTTPTransport):
    """Breaks the n-th PATCH: before it reaches the registry (`lose="request"`), or after the
    registry took the chunk, by losing its answer (`lose="answer"`, a dropped connection)."""

    def __init__(self, fail_on: int, lose: str):
        super().__init__()
        self.fail_on, self.lose = fail_on, lose
        self.patches = 0
        self.bytes_delivered = 0

    def handle_request(self, request):
        if request.method == "PATCH":
            self.patches += 1
            if self.patches == self.fail_on and self.lose == "request":
                raise httpx.ConnectError("connection refused (test)")
        response = super().handle_request(request)
        if request.method == "PATCH":
            self.bytes_delivered += len(request.content)
            if self.patches == self.fail_on and self.lose == "answer":
                response.close()
                raise httpx.ReadError("connection reset by peer (test)")
        return response


@pytest.mark.parametrize("lose", ["request", "answer"])
def test_an_interrupted_chunked_upload_goes_on(registry_server, store_factory, lose):
    reg = registry_server()
    src = store_factory("src")
    ref = f"{reg.host}/demo/big:v1"
    import random

    # Incompressible content, so the gzip blob spans several 64 KiB chunks.
    noise = random.Random(7).randbytes(300_000)
    image = make_image(src, ref, [{"noise": noise}])
    blob_size = None
    transport = FlakyTransport(fail_on=2, lose=lose)
    clients = []
    import orch.registry.push as push_mod

    real = push_mod.open_client

    def keep(*a, **kw):
        clients.append(real(*a, **kw))
        return clients[-1]

    push_mod.open_client = keep
    try:
        digest = push(src, ref, transport=transport, chunk_size=64 << 10)
    finally:
        push_mod.open_client = real
    sent = clients[0].requests
    # After the failure the client asked the registry where the upload stood.
    assert any(m == "GET" and "/blobs/uploads/" in p for m, p in sent)
    with RegistryClient(reg.host, "http") as client:
        _, doc, _, _ = client.get_manifest("demo/big", digest)
    blob_size = doc["layers"][0]["size"]
    config_size = doc["config"]["size"]
    if lose == "request":
        # A true resume: every byte reached the registry exactly once.
        assert transport.bytes_delivered == blob_size + config_size
    else:
        # distribution cannot resume after a lost answer; the layer was sent again from 0.
        assert transport.bytes_delivered == 64 * 1024 * 2 + blob_size + config_size
    dst = store_factory("dst")
    assert pull(dst, ref).id == image.id
    assert (dst.snapshots.committed_path(image.top_layer) / "noise").read_bytes() == noise
