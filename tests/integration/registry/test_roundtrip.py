"""Push then pull through a real registry: same image, same layers, nothing re-sent."""

import json

import pytest

from orch.errors import NotFound
from orch.registry.pull import pull
from orch.registry.push import push

from .conftest import make_image

LAYERS = [{"bin/app": b"#!/bin/sh\necho hello\n", "etc/motd": b"hi\n"}, {"etc/motd": b"changed\n", "data/big": bytes(range(256)) * 2048}]


def _events():
    seen = []
    return seen, seen.append


def test_push_then_pull_gives_the_same_image(registry_server, store_factory):
    reg = registry_server()
    src, dst = store_factory("a"), store_factory("b")
    ref = f"{reg.host}/demo/app:v1"
    image = make_image(src, ref, LAYERS)
    seen, events = _events()
    digest = push(src, ref, events=events)
    statuses = [e["status"] for e in seen if "id" in e and not e.get("progressDetail")]
    assert statuses.count("Pushed") == 2
    assert seen[-1]["status"].startswith(f"v1: digest: {digest} size: ")
    assert f"{reg.host}/demo/app@{digest}" in src.resolve(ref).repo_digests

    seen, events = _events()
    pulled = pull(dst, ref, events=events)
    assert pulled.id == image.id
    assert pulled.diff_ids == image.diff_ids
    assert pulled.repo_tags == (ref,)
    assert pulled.repo_digests == (f"{reg.host}/demo/app@{digest}",)
    assert [l["mediaType"] for l in pulled.layers] == ["application/vnd.oci.image.layer.v1.tar+gzip"] * 2
    # The layers are unpacked: the top snapshot holds the second layer's file.
    top = dst.snapshots.committed_path(pulled.top_layer)
    assert (top / "etc/motd").read_bytes() == b"changed\n"
    assert dst.resolve(f"{reg.host}/demo/app@{digest}").id == image.id
    lines = [e["status"] for e in seen if "id" not in e]
    assert lines[0] == "v1: Pulling from demo/app"
    assert f"Digest: {digest}" in lines and lines[-1] == ref


def test_second_push_skips_blobs_the_registry_has(registry_server, store_factory):
    reg = registry_server()
    store = store_factory()
    ref = f"{reg.host}/demo/app:v1"
    make_image(store, ref, LAYERS)
    push(store, ref)
    seen, events = _events()
    from orch.registry import pull as pull_mod

    clients = []
    real_open = pull_mod.open_client

    def counting(*a, **kw):
        clients.append(real_open(*a, **kw))
        return clients[-1]

    import orch.registry.push as push_mod

    push_mod.open_client, saved = counting, push_mod.open_client
    try:
        push(store, ref, events=events)
    finally:
        push_mod.open_client = saved
    sent = clients[0].requests
    assert not [r for r in sent if r[0] in ("POST", "PATCH")], sent
    assert [e["status"] for e in seen if "id" in e].count("Layer already exists") == 2


def test_push_to_a_second_repository_mounts_the_layers(registry_server, store_factory):
    reg = registry_server()
    store = store_factory()
    first, second = f"{reg.host}/demo/app:v1", f"{reg.host}/other/app:v1"
    image = make_image(store, first, LAYERS)
    push(store, first)
    store.tag(image.id, second)
    seen, events = _events()
    push(store, second, events=events)
    assert [e["status"] for e in seen if "id" in e].count("Mounted from demo/app") == 2


def test_pull_of_a_missing_tag_says_not_found(registry_server, store_factory):
    reg = registry_server()
    with pytest.raises(NotFound, match=r"manifest demo/none:v1: not found on 127\.0\.0\.1:\d+ \(MANIFEST_UNKNOWN"):
        pull(store_factory(), f"{reg.host}/demo/none:v1")


def _recording(module):
    """Wrap `module.open_client` so the test sees the clients (and their requests) a call made."""
    clients = []
    real = module.open_client

    def keep(*a, **kw):
        clients.append(real(*a, **kw))
        return clients[-1]

    return clients, keep, real


def test_a_second_pull_is_up_to_date_and_fetches_nothing(registry_server, store_factory, monkeypatch):
    reg = registry_server()
    src, dst = store_factory("a"), store_factory("b")
    ref = f"{reg.host}/demo/app:v1"
    image = make_image(src, ref, LAYERS)
    push(src, ref)
    pull(dst, ref)
    import orch.registry.pull as pull_mod

    clients, keep, _ = _recording(pull_mod)
    monkeypatch.setattr(pull_mod, "open_client", keep)
    seen, events = _events()
    assert pull(dst, ref, events=events).id == image.id
    assert clients[0].requests == [("HEAD", "/v2/demo/app/manifests/v1")]
    assert seen[-2]["status"] == f"Status: Image is up to date for {ref}"


def test_pull_by_digest_records_no_tag(registry_server, store_factory):
    reg = registry_server()
    src, dst = store_factory("a"), store_factory("b")
    ref = f"{reg.host}/demo/app:v1"
    image = make_image(src, ref, LAYERS)
    digest = push(src, ref)
    pulled = pull(dst, f"{reg.host}/demo/app@{digest}")
    assert pulled.id == image.id
    assert pulled.repo_tags == ()
    assert pulled.repo_digests == (f"{reg.host}/demo/app@{digest}",)


def test_a_pulled_image_pushes_to_another_registry_unchanged(registry_server, store_factory):
    one, two = registry_server(), registry_server()
    src, mid = store_factory("a"), store_factory("b")
    make_image(src, f"{one.host}/demo/app:v1", LAYERS)
    digest = push(src, f"{one.host}/demo/app:v1")
    image = pull(mid, f"{one.host}/demo/app:v1")
    mid.tag(image.id, f"{two.host}/copy/app:v1")
    # The gzip blobs go as they are, so the manifest (and its digest) is the same.
    assert push(mid, f"{two.host}/copy/app:v1") == digest


def test_a_layer_that_does_not_match_its_diff_id_is_refused(registry_server, store_factory):
    """The blob digests are right but the config lies about the content: the unpack catches it."""
    reg = registry_server()
    src = store_factory("a")
    ref = f"{reg.host}/demo/liar:v1"
    image = make_image(src, ref, LAYERS)
    push(src, ref)
    from orch.node.runtime.images import canonical_json
    from orch.registry import manifest as mf
    from orch.registry.client import RegistryClient

    config = dict(image.config, rootfs={"type": "layers", "diff_ids": [image.diff_ids[0], "sha256:" + "e" * 64]})
    raw_config = canonical_json(config)
    with RegistryClient(reg.host, "http") as client:
        _, doc, _, _ = client.get_manifest("demo/liar", "v1")
        import hashlib, io

        config_digest = "sha256:" + hashlib.sha256(raw_config).hexdigest()
        client.upload_blob("demo/liar", config_digest, len(raw_config), lambda: io.BytesIO(raw_config))
        doc["config"] = {"mediaType": mf.OCI_CONFIG, "digest": config_digest, "size": len(raw_config)}
        client.put_manifest("demo/liar", "v1", mf.OCI_MANIFEST, json.dumps(doc).encode())
    dst = store_factory("b")
    with pytest.raises(Exception, match=r"its content has diff ID sha256:[0-9a-f]+, but the image config says sha256:e{64}"):
        pull(dst, ref)
    assert dst.list() == [] and list(dst.content.list()) == [] and dst.snapshots.list_committed() == []
