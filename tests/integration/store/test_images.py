"""The image store: import, names, tags, removal as `docker rmi` does it, rootfs mounts, concurrency."""

import json
import os
import subprocess
import sys
import tarfile
import threading

import pytest

from orch.errors import Conflict, InvalidArgument, NotFound
from orch.node.runtime import layers
from orch.node.runtime.imageconfig import inspect_json, summary_json

from .conftest import entry, tar_bytes

pytestmark = pytest.mark.privileged


def rootfs(tmp_path, name="src", content="hello\n"):
    d = tmp_path / name
    (d / "etc").mkdir(parents=True)
    (d / "etc/motd").write_text(content)
    (d / "bin").mkdir()
    return d


def test_import_a_directory_and_resolve_it_by_every_name(store, tmp_path):
    image = store.import_rootfs(rootfs(tmp_path), "app", {"Cmd": ["sh"]})
    assert image.id.startswith("sha256:") and image.repo_tags == ("app:latest",)
    for ref in ("app", "app:latest", "docker.io/library/app:latest", "library/app", image.id, image.id[7:], image.short_id, image.id[:15]):
        assert store.resolve(ref).id == image.id, ref
    assert image.config["config"] == {"Cmd": ["sh"]}
    assert image.config["rootfs"]["diff_ids"] == image.diff_ids and len(image.diff_ids) == 1
    with pytest.raises(NotFound) as err:
        store.resolve("nope")
    assert str(err.value) == "no such image: nope; build it, pull it, or make a base with 'orch bootstrap busybox'"


def test_import_tar_and_tar_gz_give_the_same_diff_id(store, tmp_path):
    members = [entry("etc", "dir"), entry("etc/motd", data=b"hi\n")]
    (tmp_path / "r.tar").write_bytes(tar_bytes(*members))
    (tmp_path / "r.tar.gz").write_bytes(tar_bytes(*members, gzip=True))
    a = store.import_rootfs(tmp_path / "r.tar", "a")
    b = store.import_rootfs(tmp_path / "r.tar.gz", "b")
    assert a.diff_ids == b.diff_ids
    assert len(store.snapshots.list_committed()) == 1  # one unpacked layer, shared


def test_importing_the_same_tree_twice_under_source_date_epoch_gives_the_same_image(store, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    a = store.import_rootfs(rootfs(tmp_path / "one"), "a")
    os.utime(tmp_path / "one" / "src" / "etc" / "motd", None)  # touched now: clamped anyway
    b = store.import_rootfs(rootfs(tmp_path / "two"), "b")
    assert a.id == b.id and a.created == "2023-11-14T22:13:20Z"


def test_a_hostile_import_leaves_nothing_behind(store, tmp_path):
    (tmp_path / "evil.tar").write_bytes(tar_bytes(entry("../../escape", data=b"x")))
    with pytest.raises(InvalidArgument, match="points outside the layer"):
        store.import_rootfs(tmp_path / "evil.tar", "evil")
    assert store.list() == [] and store.snapshots.list_committed() == [] and store.snapshots.list_active() == []


def test_tag_list_and_rmi_semantics(store, tmp_path):
    image = store.import_rootfs(rootfs(tmp_path), "app:1")
    store.tag("app:1", "registry.example.com/team/app:2")
    assert store.resolve("app:1").repo_tags == ("app:1", "registry.example.com/team/app:2")
    with pytest.raises(Conflict, match="image is referenced in multiple repositories"):
        store.remove(image.short_id)
    assert store.remove("app:1") == ["Untagged: app:1"]
    lines = store.remove("registry.example.com/team/app:2")
    assert lines[:2] == ["Untagged: registry.example.com/team/app:2", f"Deleted: {image.id}"]
    assert lines[2:] == [f"Deleted: {image.diff_ids[0]}"]
    assert store.list() == [] and store.snapshots.list_committed() == []
    assert list(store.content.list()) == []  # config, manifest and layer blob collected


def test_force_removes_by_id_with_many_names(store, tmp_path):
    image = store.import_rootfs(rootfs(tmp_path), "a")
    store.tag("a", "b")
    assert store.remove(image.id[7:19], force=True) == ["Untagged: a:latest", "Untagged: b:latest", f"Deleted: {image.id}", f"Deleted: {image.diff_ids[0]}"]


def test_an_image_in_use_is_only_untagged_and_only_with_force(store, tmp_path):
    image = store.import_rootfs(rootfs(tmp_path), "a")
    users = lambda image_id: ["web"] if image_id == image.id else []
    with pytest.raises(Conflict, match='unable to remove repository reference "a" \\(must force\\) - container web is using'):
        store.remove("a", in_use=users)
    assert store.remove("a", force=True, in_use=users) == ["Untagged: a:latest"]
    assert store.resolve(image.id).repo_tags == ()  # dangling, still there for its container
    with pytest.raises(Conflict, match="being used by a container"):
        store.remove(image.id, in_use={image.id})


def test_shared_layers_survive_the_removal_of_one_image(store, tmp_path):
    base = tar_bytes(entry("base", data=b"b"))
    top = tar_bytes(entry("top", data=b"t"))
    (tmp_path / "base.tar").write_bytes(base)
    one = store.import_rootfs(tmp_path / "base.tar", "one")
    # A second image on the same base layer plus one more.
    cfg = dict(one.config, rootfs={"type": "layers", "diff_ids": one.diff_ids + [store.content.write_bytes(top)]})
    two, _ = store.add_image(json.dumps(cfg).encode(), [(one.layers[0]["digest"], one.layers[0]["mediaType"]), (cfg["rootfs"]["diff_ids"][1], "application/vnd.oci.image.layer.v1.tar")], ["two"])
    assert store.remove("one") == ["Untagged: one:latest", f"Deleted: {one.id}"]  # the base layer stays for two
    assert store.snapshots.list_committed() == sorted(two.chain_ids)


def test_a_moved_tag_leaves_the_old_image_dangling(store, tmp_path):
    old = store.import_rootfs(rootfs(tmp_path, "a", "one"), "app")
    new = store.import_rootfs(rootfs(tmp_path, "b", "two"), "app")
    by_id = {im.id: im for im in store.list()}
    assert by_id[old.id].repo_tags == () and by_id[new.id].repo_tags == ("app:latest",)


def test_inspect_and_summary_have_dockers_shape(store, tmp_path):
    image = store.import_rootfs(rootfs(tmp_path), "app", {"Cmd": ["sh"], "Env": ["A=1"]}, created=1_700_000_000.5)
    doc = inspect_json(image)
    assert list(doc) == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created", "DockerVersion", "Author", "Config",
                         "Architecture", "Os", "Size", "GraphDriver", "RootFS", "Metadata"]
    assert doc["RepoTags"] == ["app:latest"] and doc["Created"] == "2023-11-14T22:13:20.5Z"
    assert doc["Config"]["Cmd"] == ["sh"] and doc["Config"]["Env"] == ["A=1"] and doc["Config"]["Entrypoint"] is None
    assert doc["Config"]["WorkingDir"] == "" and doc["Config"]["Labels"] is None
    assert doc["RootFS"] == {"Type": "layers", "Layers": image.diff_ids}
    assert doc["Architecture"] == "amd64" and doc["Os"] == "linux" and doc["Size"] == image.size > 0
    assert summary_json(image)["Created"] == 1_700_000_000


def test_prepare_rootfs_gives_an_overlay_that_mounts_and_keeps_changes(store, tmp_path, mounts):
    (tmp_path / "l1.tar").write_bytes(tar_bytes(entry("etc/motd", data=b"one"), entry("etc/old", data=b"x"), entry("var/cache/a", data=b"a")))
    one = store.import_rootfs(tmp_path / "l1.tar", "one")
    second = tar_bytes(entry("etc/motd", data=b"two"), entry("etc/.wh.old"), entry("var/cache/.wh..wh..opq"), entry("var/cache/b", data=b"b"))
    diff = store.content.write_bytes(second)
    cfg = dict(one.config, rootfs={"type": "layers", "diff_ids": one.diff_ids + [diff]})
    image, _ = store.add_image(json.dumps(cfg).encode(), [(one.layers[0]["digest"], one.layers[0]["mediaType"]), (diff, "application/vnd.oci.image.layer.v1.tar")], ["two"])

    [m] = store.prepare_rootfs(image, "c1")
    assert m.type == "overlay" and m.target == "/"
    lower = m.options[0].removeprefix("lowerdir=").split(":")
    assert lower == [str(store.snapshots.committed_path(c)) for c in reversed(image.chain_ids)]  # top layer first
    assert m.options[1] == f"upperdir={store.upper_dir('c1')}" and m.options[2].startswith("workdir=")

    root = mounts(m, tmp_path / "rootfs")
    assert (root / "etc/motd").read_text() == "two"
    assert not (root / "etc/old").exists()  # whiteout
    assert sorted(os.listdir(root / "var/cache")) == ["b"]  # opaque
    (root / "etc/new").write_text("mine")
    subprocess.run(["umount", str(root)], check=True)
    assert (store.upper_dir("c1") / "etc/new").read_text() == "mine"
    assert store.prepare_rootfs(image, "c1") == [m]  # a restarted container keeps its upper dir
    with pytest.raises(Conflict):
        store.snapshots.check_not_in_use(image.top_layer)
    store.remove_snapshot("c1")
    assert store.snapshots.list_active() == []


def test_concurrent_imports_from_threads_and_processes_keep_every_name(store, tmp_path):
    src = rootfs(tmp_path)
    errors = []

    def work(i):
        try:
            store.import_rootfs(src, f"t{i}")
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    code = f"from orch.node.runtime.images import ImageStore; s = ImageStore({str(store.root)!r})\nfor i in range(8): s.import_rootfs({str(src)!r}, f'p{{i}}')"
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    proc = subprocess.Popen([sys.executable, "-c", code], env=env)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert proc.wait(timeout=60) == 0 and errors == []
    names = {tag for im in store.list() for tag in im.repo_tags}
    assert names == {f"t{i}:latest" for i in range(8)} | {f"p{i}:latest" for i in range(8)}
    layers_by_name = {tag: im.diff_ids for im in store.list() for tag in im.repo_tags}
    assert len(set(map(tuple, layers_by_name.values()))) == 1, f"one rootfs, more than one layer: {layers_by_name}; {_layer_listing(store, layers_by_name)}"
    assert len(store.snapshots.list_committed()) == 1 and store.snapshots.list_active() == []
    assert list(store.tmp.iterdir()) == [] and list(store.content.ingest_dir.iterdir()) == []


def _layer_listing(store, layers_by_name) -> dict:
    """Each distinct layer's entries, for the message of a failure."""
    out = {}
    for diff_ids in {tuple(d) for d in layers_by_name.values()}:
        with store.content.open(diff_ids[0]) as f, tarfile.open(fileobj=f, mode="r|") as tar:
            out[diff_ids[0][:19]] = [(m.name, m.mode, m.uid, m.gid, m.mtime, m.size, m.pax_headers) for m in tar]
    return out


def mount_with_new_api(m, target):
    """Mount an overlay Mount with fsopen/fsconfig(lowerdir+)/fsmount/move_mount, as the runtime does.

    mount(2) takes one page of options, too few for ~120+ lower dirs; `lowerdir+` adds one at a
    time (Linux 6.8+). The runtime's kernel module owns the real code; this proves the store's
    Mount value carries what it needs.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long

    def check(ret, what):
        if ret < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{what}: {os.strerror(err)}")
        return ret

    fs = check(libc.syscall(430, b"overlay", 1), "fsopen")
    try:
        for opt in m.options:
            key, _, value = opt.partition("=")
            if key == "lowerdir":
                for lower in value.split(":"):
                    check(libc.syscall(431, fs, 1, b"lowerdir+", lower.encode(), 0), f"fsconfig lowerdir+ {lower}")
            else:
                check(libc.syscall(431, fs, 1, key.encode(), value.encode(), 0), f"fsconfig {key}")
        check(libc.syscall(431, fs, 6, None, None, 0), "fsconfig create")
        mnt = check(libc.syscall(432, fs, 1, 0), "fsmount")
        try:
            check(libc.syscall(429, mnt, b"", -100, str(target).encode(), 4), "move_mount")
        finally:
            os.close(mnt)
    finally:
        os.close(fs)


def test_an_image_with_130_layers_mounts_with_the_new_mount_api(store, tmp_path):
    diff_ids, blobs = [], []
    for i in range(130):
        d = store.content.write_bytes(tar_bytes(entry(f"f{i}", data=str(i).encode()), entry("top", data=str(i).encode())))
        diff_ids.append(d)
        blobs.append((d, "application/vnd.oci.image.layer.v1.tar"))
    cfg = {"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    image, _ = store.add_image(json.dumps(cfg).encode(), blobs, ["tall"])
    [m] = store.prepare_rootfs(image, "tall")
    lower = m.options[0].removeprefix("lowerdir=").split(":")
    assert len(lower) == 130 and lower[0].endswith(layers.chain_ids(diff_ids)[-1][7:] + "/fs")  # top first
    assert len(m.options[0]) > 4096  # more than mount(2) can take
    target = tmp_path / "rootfs"
    target.mkdir()
    mount_with_new_api(m, target)
    try:
        assert (target / "f0").read_text() == "0" and (target / "f129").read_text() == "129"
        assert (target / "top").read_text() == "129"  # the top layer wins
    finally:
        subprocess.run(["umount", str(target)], check=True)
    store.remove_snapshot("tall")


def test_prune_and_disk_usage(store, tmp_path):
    old = store.import_rootfs(rootfs(tmp_path, "a", "one"), "app")
    new = store.import_rootfs(rootfs(tmp_path, "b", "two"), "app")  # old is now dangling
    other = store.import_rootfs(rootfs(tmp_path, "c", "three"), "other")
    usage = store.disk_usage(in_use={other.id})
    assert usage["images"] == 3 and usage["active"] == 1 and usage["size"] == old.size + new.size + other.size
    assert usage["reclaimable"] == old.size + new.size

    lines, reclaimed = store.prune()
    assert lines == [f"Deleted: {old.id}", f"Deleted: {old.diff_ids[0]}"] and reclaimed == old.size
    lines, _ = store.prune(all_images=True, in_use={other.id})
    assert lines[:2] == ["Untagged: app:latest", f"Deleted: {new.id}"]
    assert [im.id for im in store.list()] == [other.id]


def test_changes_and_commit_of_a_container_upper_dir(store, tmp_path, mounts):
    (tmp_path / "base.tar").write_bytes(tar_bytes(entry("etc/motd", data=b"one"), entry("etc/old", data=b"x"), entry("usr/bin/tool", data=b"t")))
    base = store.import_rootfs(tmp_path / "base.tar", "base", {"Cmd": ["sh"]})
    [m] = store.prepare_rootfs(base, "c1")
    root = mounts(m, tmp_path / "c1")
    (root / "etc/motd").write_text("two")
    (root / "etc/old").unlink()
    (root / "srv").mkdir()
    (root / "srv/new").write_text("new")
    subprocess.run(["umount", str(root)], check=True)

    assert layers.format_changes(store.changes("c1")) == ["C /etc", "C /etc/motd", "D /etc/old", "A /srv", "A /srv/new"]
    image = store.commit("c1", base, "mine:1", changes={"Cmd": ["cat", "/srv/new"]}, comment="by hand", created_by="orch commit")
    assert image.diff_ids[:1] == base.diff_ids and len(image.diff_ids) == 2
    assert image.config["config"] == {"Cmd": ["cat", "/srv/new"]}
    assert image.config["history"][-1]["comment"] == "by hand"

    [m2] = store.prepare_rootfs(image, "c2")
    root2 = mounts(m2, tmp_path / "c2")
    assert (root2 / "etc/motd").read_text() == "two" and (root2 / "srv/new").read_text() == "new"
    assert not (root2 / "etc/old").exists() and (root2 / "usr/bin/tool").exists()
    subprocess.run(["umount", str(root2)], check=True)
    store.remove_snapshot("c1")
    store.remove_snapshot("c2")


def test_collection_waits_for_writers_and_catches_up_later(store, tmp_path):
    a = store.import_rootfs(rootfs(tmp_path, "a", "one"), "a")
    b = store.import_rootfs(rootfs(tmp_path, "b", "two"), "b")
    with store._writing():  # an import is in flight: its blobs may not be referenced yet
        assert store.remove("a") == ["Untagged: a:latest", f"Deleted: {a.id}"]
        assert store.snapshots.exists(a.diff_ids[0])  # left for later
    assert store.remove("b") == ["Untagged: b:latest", f"Deleted: {b.id}"] + [f"Deleted: {c}" for c in sorted([a.diff_ids[0], b.diff_ids[0]])]
    assert store.snapshots.list_committed() == [] and list(store.content.list()) == []
