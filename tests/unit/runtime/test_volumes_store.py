"""VolumeStore on a temporary root: the layout, names, in-use refusal, prune's rule."""

from __future__ import annotations

import pytest

from orch.errors import Conflict, InvalidArgument, NotFound
from orch.node.runtime.volumes import ANONYMOUS_LABEL, VolumeStore


def test_create_get_list_remove(tmp_path):
    store = VolumeStore(tmp_path)
    meta = store.create("db", labels={"a": "b"})
    assert meta["Mountpoint"] == str(tmp_path / "volumes" / "db" / "_data")
    assert (meta["Name"], meta["Driver"], meta["Scope"], meta["Labels"]) == ("db", "local", "local", {"a": "b"})
    assert store.create("db") == meta  # an existing name is returned as it is
    anon = store.create()
    assert len(anon["Name"]) == 64 and ANONYMOUS_LABEL in anon["Labels"]
    assert [v["Name"] for v in store.list()] == sorted(["db", anon["Name"]])
    assert store.is_empty("db")
    (tmp_path / "volumes" / "db" / "_data" / "f").write_text("x")
    assert not store.is_empty("db")
    with pytest.raises(Conflict, match="volume db is in use by container\\(s\\) web, worker"):
        store.remove("db", in_use=["web", "worker"])
    with pytest.raises(Conflict):
        store.remove("db", in_use=["web"], force=True)
    store.remove("db")
    with pytest.raises(NotFound, match="no such volume: db"):
        store.get("db")
    store.remove("db", force=True)  # force: a missing volume is fine


@pytest.mark.parametrize("name,kw,message", [
    ("-x", {}, "invalid volume name"),
    ("a/b", {}, "invalid volume name"),
    ("ok", {"driver": "nfs"}, "only the 'local' driver"),
    ("ok", {"driver_opts": {"type": "tmpfs"}}, "not supported"),
])
def test_bad_create(tmp_path, name, kw, message):
    with pytest.raises(InvalidArgument, match=message):
        VolumeStore(tmp_path).create(name, **kw)


def test_prune_takes_unused_anonymous_volumes_unless_all(tmp_path):
    store = VolumeStore(tmp_path)
    store.create("named")
    used, unused = store.create()["Name"], store.create()["Name"]
    (tmp_path / "volumes" / unused / "_data" / "f").write_bytes(b"12345")
    gone, freed = store.prune(in_use={used})
    assert (gone, freed) == ([unused], 5)
    gone, _ = store.prune(in_use={used}, all_volumes=True)
    assert gone == ["named"]
    assert [v["Name"] for v in store.list()] == [used]


def test_a_crash_before_meta_json_is_invisible(tmp_path):
    store = VolumeStore(tmp_path)
    (tmp_path / "volumes" / "half" / "_data").mkdir(parents=True)
    assert store.list() == []
    assert store.create("half")["Name"] == "half"
