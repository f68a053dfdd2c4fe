"""Snapshots: unpacked layers and containers' writable layers, as overlayfs directories.

The vocabulary is containerd's (`core/snapshots/snapshotter.go`): an *active* snapshot, named
by a *key*, is a writable directory on top of a chain of committed parents; `prepare(key,
parent)` makes one and returns the mounts that show it; `commit(name, key)` freezes an active
snapshot into a *committed* one, named by `name`, that can be a parent; `remove(key)` drops an
active one. Layers are unpacked by preparing an active snapshot on the previous layer, applying
the layer tar straight into its upper directory (whiteouts become overlay whiteouts there),
and committing it under the layer's chain ID. A container's rootfs is an active snapshot keyed
by the container id whose parent is the image's top chain ID.

Nothing here mounts anything: the Mount values are performed by the container's init, in the
container's own mount namespace.

Layout under ORCH_ROOT/snapshots:

    committed/<chain hex>/fs       the layer's files (a lower directory, never written again)
    committed/<chain hex>/parent   the parent's chain ID, absent for a base layer
    committed/<chain hex>/content-size   the layer's content size in bytes
    active/<key>/fs                the writable upper directory
    active/<key>/work              overlayfs's work directory
    active/<key>/parent            the parent's name, absent for none
"""

import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path

from orch import paths
from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from orch.node.runtime.content import check_digest
from orch.node.runtime.mount import Mount

UNPACK_PREFIX = "unpack-"  # keys of the active snapshots layers are unpacked in
CONTENT_SIZE = "content-size"  # beside fs/: the layer's content size (docker's DiffSize)
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


def _hex(name: str) -> str:
    """The directory name of a committed snapshot: its chain ID's hex digits, checked."""
    return check_digest(name)


class Snapshotter:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.committed_dir = self.root / "committed"
        self.active_dir = self.root / "active"
        self.tmp_dir = self.root / "tmp"
        # Root only (upper dirs hold what containers leave: setuid programs, device nodes): see
        # orch.paths. Below these, modes are the containers' own.
        for d in (self.root, self.committed_dir, self.active_dir, self.tmp_dir):
            paths.private_dir(d)
        self._clean_stale()

    def _clean_stale(self, age: float = 3600.0) -> None:
        """Drop what a crashed process left: half-made or half-removed snapshots, unpacks."""
        now = time.time()
        stale = [p for p in self.tmp_dir.iterdir()] + [p for p in self.active_dir.iterdir() if p.name.startswith(UNPACK_PREFIX)]
        for p in stale:
            try:
                if now - p.lstat().st_mtime > age:
                    shutil.rmtree(p, ignore_errors=True)
            except FileNotFoundError:
                pass

    # -- committed -------------------------------------------------------------------------

    def exists(self, name: str) -> bool:
        return (self.committed_dir / _hex(name) / "fs").is_dir()

    def committed_path(self, name: str) -> Path:
        return self.committed_dir / _hex(name) / "fs"

    def parent_of(self, name: str) -> str | None:
        p = self.committed_dir / _hex(name) / "parent"
        return p.read_text() if p.exists() else None

    def chain(self, name: str | None) -> list[str]:
        """The committed snapshot `name` and its ancestors, top first."""
        out = []
        while name is not None:
            if not self.exists(name):
                raise NotFound(f"no such committed snapshot: {name}; the image's layers are missing, load or import it again")
            out.append(name)
            name = self.parent_of(name)
        return out

    def list_committed(self) -> list[str]:
        return sorted("sha256:" + p.name for p in self.committed_dir.iterdir() if (p / "fs").is_dir())

    def remove_committed(self, name: str) -> None:
        d = self.committed_dir / _hex(name)
        if not d.exists():
            return
        # Rename first so a half-removed layer is never mistaken for a complete one.
        trash = self.tmp_dir / f"rm-{uuid.uuid4().hex}"
        os.rename(d, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # -- active ----------------------------------------------------------------------------

    def _active(self, key: str) -> Path:
        if not _KEY.match(key):
            raise InvalidArgument(f"invalid snapshot key '{key}': use letters, digits, '_', '.' and '-'")
        return self.active_dir / key

    def active_exists(self, key: str) -> bool:
        return (self._active(key) / "fs").is_dir()

    def list_active(self) -> list[str]:
        return sorted(p.name for p in self.active_dir.iterdir())

    def active_parent(self, key: str) -> str | None:
        p = self._active(key) / "parent"
        return p.read_text() if p.exists() else None

    def prepare(self, key: str, parent: str | None) -> list[Mount]:
        """Make the active snapshot `key` on `parent` and return the mounts that show it."""
        d = self._active(key)
        if d.exists():
            raise AlreadyExists(f"snapshot '{key}' already exists; remove it first")
        if parent is not None and not self.exists(parent):
            raise NotFound(f"no such committed snapshot: {parent}; the image's layers are missing, load or import it again")
        # Build in a temporary directory and rename: a crash leaves no half-made snapshot.
        tmp = self.tmp_dir / f"prepare-{key}-{uuid.uuid4().hex[:8]}"
        (tmp / "fs").mkdir(parents=True)
        os.chmod(tmp / "fs", 0o755)
        (tmp / "work").mkdir()
        if parent is not None:
            (tmp / "parent").write_text(parent)
        try:
            os.rename(tmp, d)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            raise AlreadyExists(f"snapshot '{key}' already exists; remove it first") from None
        return self.mounts(key)

    def mounts(self, key: str) -> list[Mount]:
        """The mounts of an active snapshot: an overlay on its parents, or a bind of a base."""
        d = self._active(key)
        if not d.exists():
            raise NotFound(f"no such snapshot: '{key}'")
        lowers = [str(self.committed_path(n)) for n in self.chain(self.active_parent(key))]
        if not lowers:
            return [Mount("bind", str(d / "fs"), "/", ("rbind", "rw"))]
        # lowerdir lists the top layer first, as overlayfs wants. The string may exceed a page
        # for >120 layers: the mount code splits it into one `lowerdir+` per entry (new API).
        options = ("lowerdir=" + ":".join(lowers), f"upperdir={d / 'fs'}", f"workdir={d / 'work'}")
        return [Mount("overlay", "overlay", "/", options)]

    def upper_dir(self, key: str) -> Path:
        return self._active(key) / "fs"

    def commit(self, name: str, key: str, *, size: int | None = None) -> None:
        """Freeze the active snapshot `key` as the committed snapshot `name`.

        Committing a name that exists already (two unpacks of the same layer raced) drops the
        active snapshot and keeps the existing one: their content is the same by definition.
        """
        d = self._active(key)
        if not d.exists():
            raise NotFound(f"no such snapshot: '{key}'")
        target = self.committed_dir / _hex(name)
        shutil.rmtree(d / "work", ignore_errors=True)
        if size is not None:
            (d / CONTENT_SIZE).write_text(str(size))
        if target.exists():
            self.remove(key)
            return
        try:
            os.rename(d, target)
        except OSError:
            if target.exists():
                self.remove(key)
                return
            raise

    def remove(self, key: str) -> None:
        d = self._active(key)
        if not d.exists():
            return
        trash = self.tmp_dir / f"rm-{uuid.uuid4().hex}"
        os.rename(d, trash)
        _rmtree_unmounted(trash)

    def in_use(self) -> set[str]:
        """Committed snapshots that some active snapshot stands on."""
        used: set[str] = set()
        for key in self.list_active():
            parent = self.active_parent(key)
            if parent is not None and self.exists(parent):
                used.update(self.chain(parent))
        return used

    def size(self, name: str) -> int:
        """The layer's content size, as docker counts it (layers.apply_layer): recorded when
        it was unpacked, or counted from its files (a store of an older orch recorded the
        tar's length instead, under another name)."""
        p = self.committed_dir / _hex(name) / CONTENT_SIZE
        try:
            return int(p.read_text())
        except FileNotFoundError:
            return content_size(self.committed_path(name))

    def check_not_in_use(self, name: str) -> None:
        if name in self.in_use():
            raise Conflict(f"snapshot {name} is in use by a container")


def content_size(root: Path) -> int:
    """moby's directory.Size: the lstat sizes of everything under `root` but directories
    (file bytes, symlink target lengths), each inode once."""
    total = 0
    seen: set[int] = set()
    for dirpath, dirnames, filenames in os.walk(root):
        # os.walk lists a symlink to a directory among dirnames: it is counted, not followed.
        for n in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode) and st.st_size and st.st_ino not in seen:
                seen.add(st.st_ino)
                total += st.st_size
    return total


def _rmtree_unmounted(path: Path) -> None:
    # The work directory of an overlay keeps a root-owned "work" dir with mode 000; rmtree as
    # root removes it regardless.
    shutil.rmtree(path, ignore_errors=True)
