"""Push then pull through a real registry: same image, same layers, nothing re-sent."""

import json

import pytest

from orch.errors import NotFound, SystemFailure
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
