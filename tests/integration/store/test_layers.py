"""Unpacking layers safely (crafted hostile tars, one per row), whiteouts, and reproducible layers."""

import io
import os
import stat
from pathlib import Path

import pytest

from orch.node.runtime import layers
from orch.node.runtime.layers import LayerError, apply_layer, create_layer

from .conftest import entry, tar_bytes

pytestmark = pytest.mark.privileged


def apply(data: bytes, dest: Path):
    dest.mkdir(exist_ok=True)
    return apply_layer(io.BytesIO(data), dest, label="layer sha256:ab12..")


# Each row: a hostile layer, and the words its one-line error must contain.
HOSTILE = [
    ("dotdot", [entry("../etc/passwd", data=b"x")], "entry '../etc/passwd' points outside the layer"),
    ("dotdot-in-the-middle", [entry("a/../../x", data=b"x")], "points outside the layer"),
    ("absolute", [entry("/etc/passwd", data=b"x")], "entry '/etc/passwd' is an absolute path"),
    ("through-symlink", [entry("etc", "symlink", link="/etc"), entry("etc/passwd", data=b"x")],
     "entry 'etc/passwd' passes through the symlink 'etc'"),
    ("through-relative-symlink", [entry("up", "symlink", link="../../.."), entry("up/tmp/x", data=b"x")], "passes through the symlink 'up'"),
    ("through-nested-symlink", [entry("a", "dir"), entry("a/b", "symlink", link="/"), entry("a/b/c/d", data=b"x")],
     "passes through the symlink 'a/b'"),
    ("hardlink-outside", [entry("passwd", "hardlink", link="/etc/passwd")], "is a hardlink to '/etc/passwd'"),
    ("hardlink-dotdot", [entry("passwd", "hardlink", link="../../etc/passwd")], "is a hardlink to '../../etc/passwd'"),
    ("hardlink-not-in-layer", [entry("x", "hardlink", link="etc/shadow")], "not an entry of this layer"),
    ("hardlink-through-replaced-dir", [entry("a/f", data=b"x"), entry("a", "symlink", link="/etc"), entry("h", "hardlink", link="a/f")],
     "is a hardlink to 'a/f'"),
    ("whiteout-of-parent", [entry("a/.wh...")], "entry 'a/.wh...' is a whiteout of no file"),
    ("whiteout-of-dot", [entry(".wh..")], "is a whiteout of no file"),
    ("whiteout-through-symlink", [entry("etc", "symlink", link="/etc"), entry("etc/.wh.passwd")], "passes through the symlink 'etc'"),
    ("opaque-through-symlink", [entry("etc", "symlink", link="/etc"), entry("etc/.wh..wh..opq")], "passes through the symlink 'etc'"),
    ("device-through-symlink", [entry("d", "symlink", link="/dev"), entry("d/null2", "char", major=1, minor=3)], "passes through the symlink 'd'"),
    ("file-parent", [entry("f", data=b"x"), entry("f/g", data=b"y")], "has the non-directory 'f' as a parent"),
]


@pytest.mark.parametrize("name, members, message", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_layers_are_refused_and_write_nothing_outside(tmp_path, name, members, message):
    dest = tmp_path / "layer"
    dest.mkdir()
    outside = set(os.listdir(tmp_path))
    with pytest.raises(LayerError) as err:
        apply(tar_bytes(*members), dest)
    text = str(err.value)
    assert text.startswith("layer sha256:ab12..: ") and message in text and text.endswith("refusing to unpack")
    assert "\n" not in text
    assert set(os.listdir(tmp_path)) == outside  # nothing next to the layer dir
    assert not Path("/etc/passwd").is_symlink() and Path("/etc/passwd").stat().st_nlink == 1


def test_symlinks_are_created_as_they_are_and_never_followed(tmp_path):
    dest = tmp_path / "layer"
    # An absolute symlink to the host's /etc is fine as content; replacing it with a file must
    # unlink the symlink, not write through it.
    apply(tar_bytes(entry("etc", "symlink", link="/etc"), entry("etc", data=b"now a file")), dest)
    assert (dest / "etc").read_bytes() == b"now a file" and not (dest / "etc").is_symlink()
    apply(tar_bytes(entry("hosts", "symlink", link="/etc/hosts")), dest)
    assert os.readlink(dest / "hosts") == "/etc/hosts"


def test_metadata_devices_setuid_xattrs_and_hardlinks_are_kept(tmp_path):
    dest = tmp_path / "layer"
    diff_id, size = apply(tar_bytes(
        entry("bin", "dir"),
        entry("bin/su", data=b"#!", mode=0o4755, uid=0, gid=0),
        entry("bin/su2", "hardlink", link="bin/su"),
        entry("home/user/file", data=b"hi", uid=1000, gid=1001, mode=0o600),
        entry("dev/null", "char", mode=0o666, major=1, minor=3),
        entry("dev/sda", "block", mode=0o660, major=8, minor=0),
        entry("run/fifo", "fifo"),
        entry("bin/ping", data=b"elf", xattrs={"user.note": "hello"}),
        entry("./", "dir", mode=0o755),
    ), dest)
    assert diff_id.startswith("sha256:") and size > 0
    su = os.lstat(dest / "bin/su")
    assert stat.S_IMODE(su.st_mode) == 0o4755 and su.st_nlink == 2
    assert os.lstat(dest / "bin/su2").st_ino == su.st_ino
    f = os.lstat(dest / "home/user/file")
    assert (f.st_uid, f.st_gid, stat.S_IMODE(f.st_mode)) == (1000, 1001, 0o600)
    null = os.lstat(dest / "dev/null")
    assert stat.S_ISCHR(null.st_mode) and (os.major(null.st_rdev), os.minor(null.st_rdev)) == (1, 3)
    assert stat.S_ISBLK(os.lstat(dest / "dev/sda").st_mode)
    assert stat.S_ISFIFO(os.lstat(dest / "run/fifo").st_mode)
    assert os.getxattr(dest / "bin/ping", "user.note") == b"hello"
    assert int(os.lstat(dest / "bin").st_mtime) == 1_600_000_000  # directory times set after their children


def test_whiteouts_become_overlay_whiteouts(tmp_path):
    dest = tmp_path / "layer"
    apply(tar_bytes(entry("etc", "dir"), entry("etc/.wh.motd"), entry("var/cache", "dir"), entry("var/cache/.wh..wh..opq")), dest)
    motd = os.lstat(dest / "etc/motd")
    assert stat.S_ISCHR(motd.st_mode) and motd.st_rdev == os.makedev(0, 0)
    assert not (dest / "etc/.wh.motd").exists()
    assert os.getxattr(dest / "var/cache", "trusted.overlay.opaque") == b"y"
    assert not (dest / "var/cache/.wh..wh..opq").exists()


def test_diff_id_is_the_sha256_of_the_uncompressed_tar_also_for_gzip(tmp_path):
    import hashlib

    members = [entry("a", data=b"1"), entry("b/c", data=b"2")]
    plain, gz = tar_bytes(*members), tar_bytes(*members, gzip=True)
    want = "sha256:" + hashlib.sha256(plain).hexdigest()
    assert apply(plain, tmp_path / "p")[0] == want
    assert apply(gz, tmp_path / "g")[0] == want


@pytest.mark.parametrize("data, message", [(b"not a tar at all" * 100, "not a tar archive"), (b"\x1f\x8b\x08\x00garbage", "corrupt")])
def test_garbage_is_a_one_line_error(tmp_path, data, message):
    with pytest.raises(LayerError, match=message):
        apply(data, tmp_path / "x")


def make_tree(root: Path):
    (root / "etc").mkdir(parents=True)
    (root / "etc/hostname").write_text("box\n")
    (root / "bin").mkdir()
    (root / "bin/tool").write_bytes(b"\x7fELF")
    os.chmod(root / "bin/tool", 0o4755)
    os.link(root / "bin/tool", root / "bin/tool-again")
    os.symlink("tool", root / "bin/alias")
    os.mknod(root / "etc/gone", 0o600 | stat.S_IFCHR, os.makedev(0, 0))  # an overlay whiteout
    (root / "opaque").mkdir()
    os.setxattr(root / "opaque", "trusted.overlay.opaque", b"y")
    os.chown(root / "etc/hostname", 1000, 1000)


def test_create_layer_is_reproducible_and_round_trips(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_tree(a)
    make_tree(b)
    os.utime(b / "etc/hostname", (2_000_000_000, 2_000_000_000))  # later than the epoch: clamped
    out_a, out_b = io.BytesIO(), io.BytesIO()
    diff_a, _ = create_layer(a, out_a, epoch=1_700_000_000)
    diff_b, _ = create_layer(b, out_b, epoch=1_700_000_000)
    assert diff_a == diff_b and out_a.getvalue() == out_b.getvalue()

    import tarfile

    names = tarfile.open(fileobj=io.BytesIO(out_a.getvalue())).getnames()
    assert names == ["bin", "bin/alias", "bin/tool", "bin/tool-again", "etc", "etc/.wh.gone", "etc/hostname", "opaque", "opaque/.wh..wh..opq"]

    back = tmp_path / "back"
    back.mkdir()
    diff, _ = apply_layer(io.BytesIO(out_a.getvalue()), back)
    assert diff == diff_a
    assert os.lstat(back / "bin/tool").st_ino == os.lstat(back / "bin/tool-again").st_ino
    assert stat.S_IMODE(os.lstat(back / "bin/tool").st_mode) == 0o4755
    assert os.lstat(back / "etc/gone").st_rdev == 0 and stat.S_ISCHR(os.lstat(back / "etc/gone").st_mode)
    assert os.getxattr(back / "opaque", "trusted.overlay.opaque") == b"y"
    assert os.lstat(back / "etc/hostname").st_uid == 1000
    assert int(os.lstat(back / "etc/hostname").st_mtime) == 1_700_000_000


def test_chain_ids():
    d1, d2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    import hashlib

    assert layers.chain_ids([d1, d2]) == [d1, "sha256:" + hashlib.sha256(f"{d1} {d2}".encode()).hexdigest()]
