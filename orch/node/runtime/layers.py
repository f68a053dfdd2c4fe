"""Layer tars: apply one safely into a directory, and make one from a directory, reproducibly.

Applying (unpacking) a layer is where a hostile image attacks the host, so every entry is
checked before anything is written:

- its path must be relative, without `..` components: the tar's root is the layer's root;
- no directory on the way to it may be a symlink *inside the target directory* (checked with
  lstat component by component), because writing through a symlink that an earlier entry
  planted (`etc -> /etc`, then `etc/passwd`) would write on the host;
- symlinks are created as they are: a symlink is only dangerous when followed, and unpacking
  never follows one (existing entries are unlinked, never opened through);
- a hardlink may only point at an entry this same layer already unpacked.

Ownership, modes with setuid/setgid bits, device nodes and extended attributes are kept: we
run as root and images legitimately carry them (which is why tarfile's filter="data" alone is
not the guard here). Whiteouts become what overlayfs understands: `.wh.NAME` becomes a 0/0
character device NAME, and `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory.

Making a layer walks a directory in sorted order, turns overlay whiteouts back into `.wh.`
entries, keeps numeric owners (no user names), and clamps modification times to
SOURCE_DATE_EPOCH when one is given, so the same tree always gives the same diff ID.

The diff ID of a layer is the sha256 of its uncompressed tar (OCI image spec); the blob digest
is of the bytes as stored (maybe gzip); the chain ID of a stack of layers is
sha256(parent_chain_id + " " + diff_id).
"""

import gzip
import hashlib
import os
import shutil
import stat
import tarfile
import zlib
from pathlib import Path
from typing import BinaryIO

from orch.errors import InvalidArgument, SystemFailure

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX = "SCHILY.xattr."
GZIP_MAGIC = b"\x1f\x8b"


class LayerError(InvalidArgument):
    """A layer's content cannot be accepted (it points outside, or it is not a tar)."""


def chain_id(parent: str | None, diff_id: str) -> str:
    if parent is None:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


def chain_ids(diff_ids: list[str]) -> list[str]:
    out: list[str] = []
    for d in diff_ids:
        out.append(chain_id(out[-1] if out else None, d))
    return out


def short(digest: str) -> str:
    return digest[: len("sha256:") + 12] + ".." if digest.startswith("sha256:") else digest


class _HashingReader:
    """A read-only stream that hashes and counts what passes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.hash.update(data)
        self.size += len(data)
        return data

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


class _HashingWriter:
    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.hash.update(data)
        self.size += len(data)
        return len(data)


def open_uncompressed(blob: BinaryIO) -> BinaryIO:
    """The uncompressed tar stream of a layer blob that may be gzip-compressed."""
    head = blob.read(2)
    blob.seek(0)
    return gzip.GzipFile(fileobj=blob, mode="rb") if head == GZIP_MAGIC else blob


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


# -- applying --------------------------------------------------------------------------------


def clean_entry_name(name: str) -> str | None:
    """The entry's path relative to the layer root, or None for the root itself.

    Raises ValueError (with the reason) for absolute paths and `..` components.
    """
    if name.startswith("/"):
        raise ValueError("is an absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError("points outside the layer")
    return "/".join(parts) if parts else None


def apply_layer(blob: BinaryIO, dest: Path, *, label: str = "layer") -> tuple[str, int]:
    """Unpack a layer tar (gzip or not) into `dest`; return (diff ID, content size).

    The content size is docker's size of a layer (what `docker history` and `docker images`
    show, not the tar's padded length): overlay2's ApplyDiff returns `directory.Size` of the
    unpacked layer, which adds up the lstat sizes of everything but directories, a
    hard-linked inode once. So a regular file counts its bytes, a symlink the length of its
    target, and a directory, a hard link or a whiteout nothing; a layer that only makes a
    directory is 0 B.

    `label` names the layer in error messages (e.g. "layer sha256:ab12..").
    """
    dest = Path(dest)
    reader = _HashingReader(open_uncompressed(blob))
    unpacked: set[str] = set()
    dir_times: list[tuple[Path, int]] = []
    try:
        tar = tarfile.open(fileobj=reader, mode="r|", encoding="utf-8", errors="surrogateescape")
    except tarfile.TarError as err:
        raise LayerError(f"{label}: not a tar archive ({err}); refusing to unpack") from None
    except (EOFError, OSError) as err:
        raise LayerError(f"{label}: truncated or corrupt layer ({err}); refusing to unpack") from None
    content_size = 0
    try:
        for member in tar:
            if member.isreg():
                content_size += member.size
            elif member.issym():
                content_size += len(os.fsencode(member.linkname))
            _apply_entry(tar, member, dest, unpacked, dir_times, label)
        reader.drain()
    except tarfile.TarError as err:
        raise LayerError(f"{label}: broken tar archive ({err}); refusing to unpack") from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise LayerError(f"{label}: truncated or corrupt layer ({err}); refusing to unpack") from None
    # Directory times last: creating their children changed them.
    for path, mtime in reversed(dir_times):
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return "sha256:" + reader.hash.hexdigest(), content_size


def _refuse(label: str, name: str, why: str) -> LayerError:
    return LayerError(f"{label}: entry '{name}' {why}; refusing to unpack")


def _safe_parent(dest: Path, rel: str, label: str, raw_name: str) -> Path:
    """Make the parents of `rel` inside dest (as real directories) and return the entry's path."""
    parts = rel.split("/")
    cur = dest
    for part in parts[:-1]:
        cur = cur / part
        try:
            st = os.lstat(cur)
        except FileNotFoundError:
            os.mkdir(cur, 0o755)
            continue
        if stat.S_ISLNK(st.st_mode):
            raise _refuse(label, raw_name, f"passes through the symlink '{cur.relative_to(dest)}'")
        if not stat.S_ISDIR(st.st_mode):
            raise _refuse(label, raw_name, f"has the non-directory '{cur.relative_to(dest)}' as a parent")
    return cur / parts[-1]


def _through_symlink(dest: Path, rel: str) -> bool:
    """Whether a directory on the way to `rel` inside dest is a symlink (now, not when written)."""
    cur = dest
    for part in rel.split("/")[:-1]:
        cur = cur / part
        try:
            if not stat.S_ISDIR(os.lstat(cur).st_mode):
                return True
        except FileNotFoundError:
            return True
    return False


def _remove_existing(path: Path, keep_dir: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if keep_dir:
            return
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _apply_entry(tar, member: tarfile.TarInfo, dest: Path, unpacked: set, dir_times: list, label: str) -> None:
    raw = member.name
    try:
        rel = clean_entry_name(raw)
    except ValueError as why:
        raise _refuse(label, raw, str(why)) from None
    if rel is None:
        return  # the layer root: the snapshot directory already exists
    base = rel.rsplit("/", 1)[-1]
    target = _safe_parent(dest, rel, label, raw)

    if base == OPAQUE:
        os.setxattr(target.parent, OPAQUE_XATTR, b"y")
        return
    if base.startswith(WHITEOUT_PREFIX + WHITEOUT_PREFIX):
        return  # other aufs metadata (.wh..wh.plnk, .wh..wh.aufs): meaningless to overlayfs, as docker skips them
    if base.startswith(WHITEOUT_PREFIX):
        name = base[len(WHITEOUT_PREFIX) :]
        if name in ("", ".", ".."):
            raise _refuse(label, raw, "is a whiteout of no file")
        hidden = target.parent / name
        _remove_existing(hidden, keep_dir=False)
        os.mknod(hidden, 0o600 | stat.S_IFCHR, os.makedev(0, 0))
        unpacked.add(str(hidden.relative_to(dest)))
        return

    _remove_existing(target, keep_dir=member.isdir())
    try:
        if member.isdir():
            if not target.exists():
                os.mkdir(target, 0o700)
        elif member.isreg():
            src = tar.extractfile(member)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        elif member.issym():
            os.symlink(member.linkname, target)
        elif member.islnk():
            try:
                link_rel = clean_entry_name(member.linkname)
            except ValueError:
                link_rel = None
            if link_rel is None or link_rel not in unpacked or _through_symlink(dest, link_rel):
                raise _refuse(label, raw, f"is a hardlink to '{member.linkname}', which is not an entry of this layer")
            os.link(dest / link_rel, target, follow_symlinks=False)
            unpacked.add(rel)
            return  # a hardlink shares its source's inode: owner, mode and times are already set
        elif member.ischr() or member.isblk():
            kind = stat.S_IFCHR if member.ischr() else stat.S_IFBLK
            os.mknod(target, 0o600 | kind, os.makedev(member.devmajor, member.devminor))
        elif member.isfifo():
            os.mkfifo(target, 0o600)
        else:
            raise _refuse(label, raw, f"has the unsupported tar type {member.type!r}")
    except OSError as err:
        raise SystemFailure(f"{label}: cannot create '{raw}' in {dest}: {err.strerror}") from None

    unpacked.add(rel)
    os.lchown(target, member.uid, member.gid)
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PAX):
            name = key[len(XATTR_PAX) :]
            data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
            try:
                os.setxattr(target, name, data, follow_symlinks=False)
            except OSError as err:
                raise SystemFailure(f"{label}: cannot set xattr {name} on '{raw}': {err.strerror}") from None
    if not member.issym():
        # After chown, which clears setuid/setgid bits.
        os.chmod(target, member.mode & 0o7777)
    mtime = int(member.mtime)
    if member.isdir():
        dir_times.append((target, mtime))
    else:
        os.utime(target, (mtime, mtime), follow_symlinks=False)


# -- making ----------------------------------------------------------------------------------


def source_date_epoch() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidArgument(f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds") from None


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _xattrs(path: Path) -> dict[str, str]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return out
    for name in sorted(names):
        if name.startswith("trusted.overlay."):
            continue  # overlay's own bookkeeping, turned into whiteout entries instead
        try:
            value = os.getxattr(path, name, follow_symlinks=False)
        except OSError:
            continue
        out[XATTR_PAX + name] = value.decode("utf-8", "surrogateescape")
    return out


def _walk_sorted(root: Path):
    """Yield paths under root (not root itself), depth first, names sorted bytewise."""
    for name in sorted(os.listdir(root), key=os.fsencode):
        p = root / name
        yield p
        if stat.S_ISDIR(os.lstat(p).st_mode):
            yield from _walk_sorted(p)


def create_layer(src: Path, out: BinaryIO, *, epoch: int | None = None) -> tuple[str, int]:
    """Write `src` as an uncompressed layer tar to `out`; return (diff ID, size).

    Overlay whiteouts (0/0 character devices) become `.wh.NAME` entries and opaque directories
    get a `.wh..wh..opq` entry, so an overlay upper directory can be turned into a layer.
    `epoch` clamps every mtime to at most that value (SOURCE_DATE_EPOCH semantics).
    """
    src = Path(src)
    writer = _HashingWriter(out)
    seen_inodes: dict[tuple[int, int], str] = {}
    with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        for path in _walk_sorted(src):
            rel = str(path.relative_to(src))
            st = os.lstat(path)
            mtime = int(st.st_mtime) if epoch is None else min(int(st.st_mtime), epoch)
            parent_rel, _, base = rel.rpartition("/")
            prefix = parent_rel + "/" if parent_rel else ""
            if _is_whiteout(st):
                info = tarfile.TarInfo(prefix + WHITEOUT_PREFIX + base)
                info.mtime, info.mode = mtime, 0
                tar.addfile(info)
                continue
            info = tarfile.TarInfo(rel)
            info.uid, info.gid = st.st_uid, st.st_gid
            info.uname = info.gname = ""
            info.mode = stat.S_IMODE(st.st_mode)
            info.mtime = mtime
            info.pax_headers = _xattrs(path)
            fileobj = None
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
            elif stat.S_ISREG(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in seen_inodes:
                    info.type = tarfile.LNKTYPE
                    info.linkname = seen_inodes[key]
                else:
                    seen_inodes[key] = rel
                    info.type = tarfile.REGTYPE
                    info.size = st.st_size
                    fileobj = open(path, "rb")
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                info.type = tarfile.CHRTYPE if stat.S_ISCHR(st.st_mode) else tarfile.BLKTYPE
                info.devmajor, info.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
            elif stat.S_ISFIFO(st.st_mode):
                info.type = tarfile.FIFOTYPE
            else:
                continue  # sockets cannot live in a tar
            try:
                tar.addfile(info, fileobj)
            finally:
                if fileobj is not None:
                    fileobj.close()
            if stat.S_ISDIR(st.st_mode) and _opaque(path):
                whiteout = tarfile.TarInfo(rel + "/" + OPAQUE)
                whiteout.mtime, whiteout.mode = mtime, 0
                tar.addfile(whiteout)
    return "sha256:" + writer.hash.hexdigest(), writer.size


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def clamp_mtimes(root: Path, epoch: int) -> None:
    """Set every mtime under root that is later than `epoch` to `epoch` (reproducible trees)."""
    for path in [Path(root), *_walk_sorted(Path(root))]:
        st = os.lstat(path)
        if st.st_mtime > epoch:
            os.utime(path, (epoch, epoch), follow_symlinks=False)


# A container's changes, as `docker diff` reports them. Everything a container changed is in
# its overlay upper directory: a path no lower layer has was added (A); one a lower layer has
# was changed (C) (a directory is copied up whenever something inside it changes, and docker
# reports it as changed too); a 0/0 character device is a whiteout: the name was deleted (D);
# an opaque directory replaced a lower directory whole, so what it holds was added. "Was it
# below?" is answered by looking the path up in the lower directories, top first, stopping
# at a whiteout or an opaque parent, as overlayfs does.
KIND_CHANGED, KIND_ADDED, KIND_DELETED = 0, 1, 2
LETTERS = {KIND_CHANGED: "C", KIND_ADDED: "A", KIND_DELETED: "D"}


def in_lowers(lowers: list[Path], rel: str) -> bool:
    """Whether `rel` exists in the stack of lower dirs (top first), overlayfs's way."""
    parts = rel.split("/")
    for lower in lowers:
        # A whiteout or an opaque directory on the way in this layer hides the layers below.
        hidden = False
        for i in range(1, len(parts)):
            prefix = lower.joinpath(*parts[:i])
            try:
                st = os.lstat(prefix)
            except (FileNotFoundError, NotADirectoryError):
                break
            if _is_whiteout(st) or not stat.S_ISDIR(st.st_mode):
                return False
            if _opaque(prefix):
                hidden = True
        try:
            st = os.lstat(lower / rel)
        except (FileNotFoundError, NotADirectoryError):
            if hidden:
                return False
            continue
        return not _is_whiteout(st)
    return False


def compute_changes(upper: Path, lowers: list[Path]) -> list[dict]:
    """docker's GET /containers/{id}/changes: [{"Path": "/etc", "Kind": 0|1|2}], sorted by path."""
    upper = Path(upper)
    out: list[dict] = []

    def walk(rel_dir: str, parent_new: bool) -> None:
        base = upper / rel_dir if rel_dir else upper
        for name in sorted(os.listdir(base)):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            st = os.lstat(base / name)
            if _is_whiteout(st):
                if not parent_new and in_lowers(lowers, rel):
                    out.append({"Path": "/" + rel, "Kind": KIND_DELETED})
                continue
            existed = not parent_new and in_lowers(lowers, rel)
            out.append({"Path": "/" + rel, "Kind": KIND_CHANGED if existed else KIND_ADDED})
            if stat.S_ISDIR(st.st_mode):
                walk(rel, parent_new or not existed or _opaque(base / name))

    walk("", False)
    return out


def format_changes(changes: list[dict]) -> list[str]:
    return [f"{LETTERS[c['Kind']]} {c['Path']}" for c in changes]
