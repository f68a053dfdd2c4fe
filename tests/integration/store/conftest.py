"""Helpers for the store's tests: crafted layer tars and a store in a temporary ORCH_ROOT."""

import io
import subprocess
import tarfile
from pathlib import Path

import pytest

from orch.node.runtime.images import ImageStore


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than a few seconds (debootstrap); CI runs it")


def entry(name, kind="file", data=b"", *, mode=None, uid=0, gid=0, link="", major=0, minor=0, xattrs=None, mtime=1_600_000_000):
    """A tar member as (TarInfo, data)."""
    info = tarfile.TarInfo(name)
    info.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                 "char": tarfile.CHRTYPE, "block": tarfile.BLKTYPE, "fifo": tarfile.FIFOTYPE}[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    info.uid, info.gid, info.mtime = uid, gid, mtime
    info.linkname = link
    info.devmajor, info.devminor = major, minor
    if xattrs:
        info.pax_headers = {f"SCHILY.xattr.{k}": v for k, v in xattrs.items()}
    if kind == "file":
        info.size = len(data)
    return info, data


def tar_bytes(*entries, gzip=False) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCH_ROOT", str(tmp_path / "root"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return ImageStore(tmp_path / "root")


@pytest.fixture
def mounts():
    """Mount overlays for a test and unmount every one of them afterwards, also on failure."""
    done: list[Path] = []

    def mount(m, target: Path):
        target.mkdir(parents=True, exist_ok=True)
        opts = ",".join(o for o in m.options if o not in ("rbind", "rw"))
        if m.type == "bind":
            subprocess.run(["mount", "--bind", m.source, str(target)], check=True)
        else:
            subprocess.run(["mount", "-t", m.type, m.source, str(target), "-o", opts], check=True, capture_output=True)
        done.append(target)
        return target

    yield mount
    for target in reversed(done):
        subprocess.run(["umount", "-l", str(target)], check=False)
