"""compute_changes on hand-made overlay directories: what `orch container diff` prints for
each kind of entry an upper directory can hold. (Root: whiteouts are device nodes and the
opaque mark is a trusted.* xattr.)"""

import os
import stat

import pytest

from orch.node.runtime.layers import compute_changes, format_changes, in_lowers

pytestmark = pytest.mark.privileged


def tree(root, spec: dict) -> None:
    """{path: "file" | "dir" | "whiteout" | "opaque"} under root."""
    for rel, kind in spec.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if kind == "file":
            p.write_text(rel)
        elif kind == "dir":
            p.mkdir(exist_ok=True)
        elif kind == "whiteout":
            os.mknod(p, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        elif kind == "opaque":
            p.mkdir(exist_ok=True)
            os.setxattr(p, "trusted.overlay.opaque", b"y")


CASES = [
    ("a new file", {}, {"new.txt": "file"}, ["A /new.txt"]),
    ("a changed file in a copied-up dir", {"etc/passwd": "file"}, {"etc/passwd": "file"}, ["C /etc", "C /etc/passwd"]),
    ("a deleted file", {"etc/group": "file"}, {"etc": "dir", "etc/group": "whiteout"}, ["C /etc", "D /etc/group"]),
    ("a new dir with files", {"usr/bin/sh": "file"}, {"usr/local/bin/tool": "file"},
     ["C /usr", "A /usr/local", "A /usr/local/bin", "A /usr/local/bin/tool"]),
    ("an opaque dir replacing a lower one", {"var/cache/a": "file", "var/cache/b": "file"},
     {"var/cache": "opaque", "var/cache/a": "file"}, ["C /var", "C /var/cache", "A /var/cache/a"]),
    ("a whiteout of something never there", {}, {"ghost": "whiteout"}, []),
]


@pytest.mark.parametrize("name,lower,upper,expected", CASES, ids=[c[0] for c in CASES])
def test_changes(tmp_path, name, lower, upper, expected):
    lo, up = tmp_path / "lower", tmp_path / "upper"
    lo.mkdir()
    up.mkdir()
    tree(lo, lower)
    tree(up, upper)
    assert format_changes(compute_changes(up, [lo])) == expected


def test_lookup_through_layers(tmp_path):
    top, mid, base = (tmp_path / n for n in ("top", "mid", "base"))
    for d in (top, mid, base):
        d.mkdir()
    tree(base, {"a/x": "file", "b/y": "file", "c/z": "file"})
    tree(mid, {"a/x": "whiteout", "b": "opaque", "b/new": "file"})
    lowers = [top, mid, base]
    assert not in_lowers(lowers, "a/x")  # deleted in mid
    assert not in_lowers(lowers, "b/y")  # hidden by mid's opaque b
    assert in_lowers(lowers, "b/new") and in_lowers(lowers, "c/z") and in_lowers(lowers, "c")
    assert not in_lowers(lowers, "nothing")
