"""docker's copy rules as orch's cp applies them on the host's side (orch/cli/cp.py, moby
pkg/archive copy.go), compose ls's status, and the host extraction's refusals."""

import io
import os
import tarfile

import pytest

from orch.cli import cp
from orch.cli.compose_extra import combined_status, compute_projects


@pytest.mark.parametrize("path,split", [
    ("/a/b", ("/a", "b")), ("/a/b/", ("/a", "b")), ("/a/b/.", ("/a/b", ".")), ("b", (".", "b")), ("/", ("/", "/")),
    ("//a//b", ("/a", "b")),
])
def test_split_path_dir_entry(path, split):
    assert cp.split_path_dir_entry(path) == split


D, F = True, False


@pytest.mark.parametrize("src,dst,expected", [
    # (src path, is dir), (dst path, exists, is dir) -> (extract into, renames) or the error
    (("/c/d", D), ("/h/x", False, F), ("/h", ("d", "x"))),  # a directory to a new name becomes it
    (("/c/d", D), ("/h/x", True, D), ("/h/x", None)),  # into an existing directory
    (("/c/d/.", D), ("/h/x", True, D), ("/h/x", None)),  # its contents (the archive's entries are ".")
    (("/c/d", D), ("/h/f", True, F), "cannot copy directory"),
    (("/c/f", F), ("/h/g", True, F), ("/h", ("f", "g"))),  # a file over a file takes its name
    (("/c/f", F), ("/h/new", False, F), ("/h", ("f", "new"))),
    (("/c/f", F), ("/h/new/", False, F), "no such directory"),  # a missing "DEST/" is no directory
])
def test_prepare_archive_copy(src, dst, expected):
    s = cp.CopyInfo(src[0], True, src[1])
    d = cp.CopyInfo(dst[0], dst[1], dst[2])
    if isinstance(expected, str):
        with pytest.raises(cp.CopyError, match=expected):
            cp.prepare_archive_copy(s, d)
    else:
        assert cp.prepare_archive_copy(s, d) == expected


def test_rebase_names_and_split_args():
    assert cp.rebase_name("/c/link/", "/c/d") == ("/c/d/", "link")
    assert cp.rebase_name("/c/d", "/c/d") == ("/c/d", "")
    assert cp.split_cp_arg("web:/etc") == ("web", "/etc")
    assert cp.split_cp_arg("/abs:odd") == ("", "/abs:odd")
    assert cp.split_cp_arg("./rel:x") == ("", "./rel:x")
    assert cp.rename_entry("d/sub/d", "d", "x") == "x/sub/d"


def archive(*members) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, extra in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                data = extra.encode()
                info.size, info.mode = len(data), 0o4755
                tar.addfile(info, io.BytesIO(data))
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, extra
                tar.addfile(info)
            elif kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o750
                tar.addfile(info)
    buf.seek(0)
    return buf


def test_host_extraction_keeps_modes_and_renames(tmp_path):
    cp.extract_on_host(archive(("d", "dir", None), ("d/f", "file", "hi")), str(tmp_path), [("d", "x")])
    assert (tmp_path / "x" / "f").read_text() == "hi"
    assert (tmp_path / "x" / "f").stat().st_mode & 0o7777 == 0o4755
    assert (tmp_path / "x").stat().st_mode & 0o777 == 0o750


@pytest.mark.parametrize("members,words", [
    ([("../evil", "file", "x")], "outside"),
    ([("l", "sym", "../../etc"), ], "invalid symlink"),
    ([("out", "sym", "/"), ("out/etc/passwd", "file", "x")], "link would take it outside"),
])
def test_host_extraction_refuses_what_would_leave_the_destination(tmp_path, members, words):
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(cp.CopyError, match=words):
        cp.extract_on_host(archive(*members), str(dest), [])
    assert not (tmp_path / "evil").exists()


def test_a_file_never_replaces_a_directory_nor_writes_through_a_link(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(cp.CopyError, match="cannot overwrite directory"):
        cp.extract_on_host(archive(("d", "file", "x")), str(tmp_path), [])
    outside = tmp_path / "outside"
    outside.write_text("keep")
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "f")
    cp.extract_on_host(archive(("f", "file", "new")), str(dest), [])
    assert outside.read_text() == "keep" and (dest / "f").read_text() == "new" and not (dest / "f").is_symlink()


def test_compose_ls_status():
    assert combined_status(["running", "exited", "running"]) == "exited(1), running(2)"
    rows = [{"State": "running", "Labels": {"com.docker.compose.project": "b", "com.docker.compose.project.config_files": "/b.yml"}},
            {"State": "exited", "Labels": {"com.docker.compose.project": "a"}},
            {"State": "running", "Labels": {}}]
    assert compute_projects(rows) == [{"Name": "a", "Status": "exited(1)", "ConfigFiles": ""},
                                      {"Name": "b", "Status": "running(1)", "ConfigFiles": "/b.yml"}]
