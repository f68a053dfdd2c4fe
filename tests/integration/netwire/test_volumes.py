"""Volumes, binds and tmpfs through the CLI on real containers: data that outlives containers,
filled from the image on first use, refused removal while in use, `rm -v`."""

from __future__ import annotations

import json
import os

import pytest

from orch.node.runtime.images import ImageStore

pytestmark = pytest.mark.privileged


def layered_image(node, ref: str) -> None:
    """An image of three layers (busybox, then two made by containers and committed), with a
    VOLUME at /data: ownership and modes to preserve, a whiteout, a link out of the root."""
    store = ImageStore(node.root)
    steps = [
        ("busybox", "mkdir -p /data/sub && echo seed > /data/sub/f && chown 65534:65534 /data/sub && chmod 700 /data/sub"
                    " && echo gone > /data/gone && ln -s /etc /data/etc-link && ln -s / /escape", None),
        (f"{ref}-1", "rm /data/gone && echo top > /data/top", {"Volumes": {"/data": {}}}),
    ]
    for i, (base, script, changes) in enumerate(steps):
        name = f"{ref}-build{i}"
        node.ok("run", "--name", name, base, "sh", "-c", script)
        cid = node.inspect(name)["Id"]
        store.commit(cid, store.resolve(base), f"{ref}-{i + 1}" if i == 0 else ref, changes=changes)
        node.ok("rm", name)


def test_named_volume_outlives_its_containers_and_refuses_removal_in_use(node):
    node.ok("volume", "create", "--label", "k=v", "data")
    node.ok("run", "--rm", "-v", "data:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    node.ok("run", "--name", "reader", "-v", "data:/data:ro", "busybox", "sh", "-c", "cat /data/f; touch /data/x 2>/dev/null || echo read-only")
    assert node.ok("logs", "reader").split() == ["kept", "read-only"]
    # In use by a stopped container: refused, naming it; force does not override.
    err = node.fails("volume", "rm", "data")
    assert err.count("\n") == 1 and "in use" in err and "reader" in err, err
    node.ok("rm", "reader")
    assert node.ok("run", "--rm", "--mount", "type=volume,source=data,target=/d", "busybox", "cat", "/d/f") == "kept\n"
    meta = json.loads(node.ok("volume", "inspect", "data"))[0]
    assert (meta["Driver"], meta["Labels"], meta["Scope"]) == ("local", {"k": "v"}, "local")
    assert open(os.path.join(meta["Mountpoint"], "f")).read() == "kept\n"
    assert node.ok("volume", "ls", "-q").split() == ["data"]
    assert node.ok("volume", "ls", "-q", "--filter", "label=k=other").split() == []
    node.ok("volume", "rm", "data")
    assert not os.path.exists(meta["Mountpoint"])
    assert "no such volume" in node.fails("volume", "inspect", "data")


def test_volume_filled_from_the_image_on_first_use(node):
    layered_image(node, "seeded")
    out = node.ok("run", "--rm", "-v", "seed:/data", "seeded", "sh", "-c",
                  "ls /data; stat -c '%U %a' /data/sub; cat /data/sub/f /data/top").split("\n")
    assert out[:4] == ["etc-link", "sub", "top", "nobody 700"], out  # "gone" was whited out
    assert out[4:6] == ["seed", "top"]
    # A volume with content is not filled again; nocopy leaves a new one empty.
    node.ok("run", "--rm", "-v", "seed:/data", "seeded", "sh", "-c", "rm -r /data/*; echo mine > /data/m")
    assert node.ok("run", "--rm", "-v", "seed:/data", "seeded", "ls", "/data").split() == ["m"]
    assert node.ok("run", "--rm", "-v", "empty:/data:nocopy", "seeded", "ls", "/data").split() == []
    # A target that is a link out of the root in the image stays inside the container.
    node.ok("run", "--rm", "-v", "esc:/escape/tmp/orch-escape-probe", "seeded", "true")
    assert not os.path.exists("/tmp/orch-escape-probe")


def test_anonymous_volumes_and_rm_v(node):
    layered_image(node, "anon")
    node.ok("run", "--name", "a1", "anon", "sh", "-c", "echo more > /data/more")
    (mount,) = node.inspect("a1")["Mounts"]
    assert (mount["Type"], mount["Destination"], mount["RW"]) == ("volume", "/data", True)
    assert sorted(os.listdir(mount["Source"])) == ["etc-link", "more", "sub", "top"]
    # --volumes-from shares it, read-only when asked.
    out = node.ok("run", "--rm", "--volumes-from", "a1:ro", "busybox", "sh", "-c", "cat /data/more; touch /data/y 2>/dev/null || echo ro")
    assert out.split() == ["more", "ro"]
    node.ok("rm", "-v", "a1")
    assert not os.path.exists(mount["Source"])
    # Without -v the anonymous volume stays (docker's rule); `run --rm` removes its own.
    node.ok("run", "--name", "a2", "anon", "true")
    source = node.inspect("a2")["Mounts"][0]["Source"]
    node.ok("rm", "a2")
    assert os.path.isdir(source)
    node.ok("volume", "prune", "-f")
    assert not os.path.exists(source)
    before = set(node.ok("volume", "ls", "-q").split())
    node.ok("run", "--rm", "anon", "true")
    assert set(node.ok("volume", "ls", "-q").split()) == before
    # A create that fails after its volumes were made (a bad network) leaves no anonymous volume.
    assert "not found" in node.fails("run", "--rm", "--network", "nosuch", "anon", "true")
    assert set(node.ok("volume", "ls", "-q").split()) == before


def test_binds_and_tmpfs(node, tmp_path):
    (tmp_path / "h").write_text("from host\n")
    out = node.ok("run", "--rm", "-v", f"{tmp_path}:/h:ro", "--mount", f"type=bind,source={tmp_path},target=/rw",
                  "--tmpfs", "/scratch:size=1m", "--mount", "type=tmpfs,target=/t,tmpfs-size=2m", "busybox", "sh", "-c",
                  "cat /h/h; touch /h/x 2>/dev/null || echo ro; echo back > /rw/w; grep -E ' /(scratch|t) ' /proc/mounts")
    lines = out.splitlines()
    assert lines[:2] == ["from host", "ro"]
    sizes = {line.split()[1]: line.split()[3].rsplit("size=", 1)[1] for line in lines[2:]}
    assert sizes == {"/scratch": "1024k", "/t": "2048k"}, lines
    assert (tmp_path / "w").read_text() == "back\n"
    err = node.fails("run", "--rm", "-v", f"{tmp_path}/nope:/x", "busybox", "true")
    assert "does not exist" in err and err.count("\n") == 1
    assert "duplicate mount point" in node.fails("run", "--rm", "-v", "a:/x", "-v", "b:/x", "busybox", "true")
    mounts = [line for line in open("/proc/self/mounts") if str(tmp_path) in line]
    assert mounts == []
