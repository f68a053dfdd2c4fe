"""The files a COPY or ADD reads, and how they land in the image.

A *source root* is where sources are looked up: the build context (a directory on the node,
filtered by its `.dockerignore`) or, for `COPY --from`, the root file system of an earlier
stage or an image. The rules:

- Sources are relative to the root (a leading `/` too) and may hold globs (`*`, `?`, `[a-z]`,
  matched one path component at a time as Go's filepath.Match does). A source that matches
  nothing is an error naming it.
- **The context is never left.** A source named through a symbolic link is followed (docker
  copies what the link points at), but a link whose target lies outside the context is
  refused with a one-line error: the context is what the user chose to hand to the build, not
  the rest of the node. Links *inside* a copied directory are copied as links, never followed.
  In a stage's root file system, links are resolved as that root's own processes would see
  them (an absolute link starts again at that root), so they cannot leave it either.
- Files excluded by `.dockerignore` are invisible: not matched by globs, not copied, not
  hashed for the cache.
- Ownership: files from the context become root's (0:0) as in docker; files from a stage keep
  their owners; `--chown` sets both; `--chmod` sets the mode of every copied entry.
- The destination is resolved inside the image's root the same way (a link in the image
  cannot send a COPY to the host), and docker's rules decide its shape: a destination ending
  in `/`, or one that is an existing directory, receives sources by their base name; a
  directory source copies its *contents*; several sources need a directory destination.
- `ADD` of a local tar archive (plain, gzip, bzip2 or xz) extracts it, with the same entry
  checks as a layer (no absolute paths, no `..`, no writing through links); `ADD` of a URL is
  refused: orch builds only from what is on the node.
"""

import bz2
import gzip
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from orch.build.cache import SourceEntry, file_digest
from orch.build.dockerignore import Matcher, parse_dockerignore
from orch.errors import NotFound, UserError

GLOB_CHARS = "*?["
MAX_LINK_HOPS = 40


class ContextError(UserError):
    """A source that cannot be copied (missing, outside the context, excluded)."""


@dataclass(frozen=True)
class SourceRoot:
    path: Path
    matcher: Matcher | None = None  # the context's .dockerignore; None for a stage's root
    is_context: bool = True  # refuse links that leave it (context) or resolve them inside (stage)

    def excluded(self, rel: str) -> bool:
        return self.matcher is not None and rel not in ("", ".") and self.matcher.excludes(rel)


def open_context(path: Path | str) -> SourceRoot:
    """The build context at `path`, with its `.dockerignore` when there is one."""
    root = Path(path)
    if not root.is_dir():
        raise NotFound(f"build context {root} is not a directory; give the directory that holds your files")
    ignore = root / ".dockerignore"
    matcher = None
    if ignore.is_file():
        matcher = parse_dockerignore(ignore.read_bytes().decode("utf-8", "replace"), filename=str(ignore))
    return SourceRoot(root.resolve(), matcher, True)


@dataclass(frozen=True)
class Source:
    rel: str  # the path inside the root after following links, "" for the root itself
    host: Path  # where it is on the node
    name: str  # the base name it is copied under (the name as written, not the link's target)


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def resolve_in(root: SourceRoot, path: str, *, what: str, follow_last: bool = True) -> str:
    """`path` inside `root` with its links followed, as a relative path ("" for the root).

    In the context a link that leaves it raises ContextError; in a stage's root a link is
    resolved inside that root (an absolute target restarts at the root, `..` stops there).
    Missing components are kept as they are.
    """
    parts = _components(path)
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            if not done and root.is_context:
                raise ContextError(f"{what}: '{path}' points outside the build context; only files inside it can be copied")
            if done:
                done.pop()
            continue
        here = root.path.joinpath(*done, part)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            done.append(part)
            continue
        if stat.S_ISLNK(st.st_mode) and (parts or follow_last):
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise ContextError(f"{what}: '{path}': too many levels of symbolic links")
            target = os.readlink(here)
            if target.startswith("/"):
                if root.is_context:
                    raise ContextError(f"{what}: '{'/'.join(done + [part])}' is a symbolic link to '{target}', outside the build context; "
                                       "copy the file into the context instead")
                done = []
            elif root.is_context:
                # A relative link may climb, but not above the context's root.
                depth = len(done)
                for t in _components(target):
                    depth = depth - 1 if t == ".." else depth + 1
                    if depth < 0:
                        raise ContextError(f"{what}: '{'/'.join(done + [part])}' is a symbolic link to '{target}', outside the build context; "
                                           "copy the file into the context instead")
            parts = _components(target) + parts
            continue
        done.append(part)
    return "/".join(done)


def _match_component(pattern: str, name: str) -> bool:
    import fnmatch

    # Go's filepath.Match: `*` and `?` never match `/`, which holds here since we match one
    # component at a time; fnmatchcase is case-sensitive as Go is.
    return fnmatch.fnmatchcase(name, pattern)


def _glob(root: SourceRoot, pattern: str) -> list[str]:
    """Relative paths (not following links) under root whose components match `pattern`'s."""
    pats = _components(pattern)
    found: list[str] = []

    def walk(rel: list[str], depth: int):
        if depth == len(pats):
            found.append("/".join(rel))
            return
        here = root.path.joinpath(*rel)
        try:
            names = sorted(os.listdir(here))
        except (NotADirectoryError, FileNotFoundError):
            return
        for name in names:
            if _match_component(pats[depth], name):
                child = rel + [name]
                if root.excluded("/".join(child)) and not (root.matcher and root.matcher.has_exceptions):
                    continue
                walk(child, depth + 1)

    walk([], 0)
    return [r for r in found if not root.excluded(r)]


def resolve_sources(root: SourceRoot, patterns: list[str], *, what: str) -> list[Source]:
    """The sources a COPY/ADD names, in order; each pattern must match something."""
    out: list[Source] = []
    for pattern in patterns:
        if any(c in pattern for c in GLOB_CHARS):
            matches = _glob(root, pattern)
            if not matches:
                raise ContextError(f"{what}: no source files were specified: '{pattern}' matches nothing in the "
                                   f"{'build context' if root.is_context else 'stage'}" + (" (or .dockerignore excludes it)" if root.matcher else ""))
        else:
            matches = ["/".join(_components(pattern))]
        for rel in matches:
            real = resolve_in(root, rel, what=what)
            host = root.path / real if real else root.path
            if root.excluded(rel) or root.excluded(real) or not os.path.lexists(host):
                where = "build context" if root.is_context else "stage's file system"
                hint = "; .dockerignore may exclude it" if root.matcher else ""
                raise ContextError(f"{what}: '{pattern}' not found in the {where}{hint}")
            name = rel.rsplit("/", 1)[-1] if rel else ""
            out.append(Source(real, host, name))
    return out


def _walk(root: SourceRoot, src: Source):
    """(relative path under the source, host path, lstat) for the source and, for a
    directory, everything below it that .dockerignore keeps. Links are not followed. Host
    paths are strings and directories are read with scandir: a rebuild walks every file of
    the context, and pathlib's objects cost more than the system calls."""
    top = str(src.host)
    st = os.stat(top)  # the source itself was resolved through its links already
    yield "", top, st
    if not stat.S_ISDIR(st.st_mode):
        return
    stack = [""]
    while stack:
        sub = stack.pop()
        base = f"{top}/{sub}" if sub else top
        with os.scandir(base) as entries:
            found = sorted(entries, key=lambda e: e.name)
        for entry in found:
            rel = f"{sub}/{entry.name}" if sub else entry.name
            ctx_rel = f"{src.rel}/{rel}" if src.rel else rel
            est = entry.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(est.st_mode)
            if root.excluded(ctx_rel):
                if is_dir and root.matcher is not None and root.matcher.has_exceptions:
                    stack.append(rel)  # an exception may re-include something inside
                continue
            yield rel, entry.path, est
            if is_dir:
                stack.append(rel)


def _kind(st: os.stat_result) -> str:
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "dir"
    if stat.S_ISLNK(st.st_mode):
        return "symlink"
    return "other"


def source_entries(root: SourceRoot, sources: list[Source], digests=None) -> list[SourceEntry]:
    """What the cache hashes for these sources: names, kinds, modes, owners, contents.
    `digests` (a cache.StatDigests) answers for files whose stat did not change."""
    out = []
    for i, src in enumerate(sources):
        for rel, host, st in _walk(root, src):
            kind = _kind(st)
            if kind == "file":
                content = digests.digest(host, st) if digests is not None else file_digest(host)
            else:
                content = os.readlink(host) if kind == "symlink" else ""
            out.append(SourceEntry(f"{i}:{src.name}/{rel}", kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, content))
    return out


# -- writing into the image's root -----------------------------------------------------------


@dataclass(frozen=True)
class Ownership:
    uid: int | None = None  # None: keep (stage sources) or root (context sources)
    gid: int | None = None
    mode: int | None = None  # --chmod


def destination(dest: str, workdir: str) -> tuple[str, bool]:
    """(absolute destination path inside the image, whether it names a directory by a slash)."""
    as_dir = dest.endswith("/") or dest in (".", "..") or dest.endswith("/.")
    if not dest.startswith("/"):
        dest = (workdir.rstrip("/") or "") + "/" + dest
    return "/" + "/".join(_components(dest)), as_dir


def _image_path(image_root: Path, path: str) -> Path:
    """A path inside the image, links resolved inside it (never towards the host)."""
    rel = resolve_in(SourceRoot(image_root, None, False), path, what="destination")
    return image_root / rel if rel else image_root


def _mkdirs(image_root: Path, path: str, own: Ownership) -> Path:
    """mkdir -p inside the image root (links resolved inside it); return the host path."""
    target = _image_path(image_root, path)
    if not target.exists():
        # Each missing component is made separately so that a link planted on the way is
        # resolved by _image_path again rather than followed by os.makedirs.
        parts = _components(path)
        for i in range(1, len(parts) + 1):
            p = _image_path(image_root, "/".join(parts[:i]))
            if not os.path.lexists(p):
                os.mkdir(p, 0o755)
                os.chown(p, own.uid or 0, own.gid or 0)
    return target


def copy_sources(root: SourceRoot, sources: list[Source], image_root: Path, dest: str, workdir: str, own: Ownership, *,
                 what: str, extract: bool = False) -> None:
    """Copy `sources` into the image mounted at `image_root` with docker's destination rules."""
    path, as_dir = destination(dest, workdir)
    if len(sources) > 1 and not as_dir:
        raise ContextError(f"{what}: when copying more than one source, the destination must be a directory and end with a /")
    existing = _image_path(image_root, path)
    into_dir = as_dir or existing.is_dir()
    # Files hard-linked to each other among the sources stay linked in the image, as docker's
    # and buildkit's copies keep them (one inode, counted once in the layer's size).
    links: dict[tuple[int, int], Path] = {}
    for src in sources:
        st = os.stat(src.host)
        if stat.S_ISDIR(st.st_mode):
            target = _mkdirs(image_root, path, own)
            if not target.is_dir():
                raise ContextError(f"{what}: cannot copy the directory '{src.name or '.'}' to '{path}': it exists in the image and is not a directory")
            _copy_tree(root, src, target, own, links)
        elif extract and _archive_opener(src.host) is not None:
            target = _mkdirs(image_root, path, own)
            _extract(src.host, target, own, what)
        else:
            if into_dir:
                parent = _mkdirs(image_root, path, own)
                target = parent / src.name
            else:
                parent_path = path.rsplit("/", 1)[0] or "/"
                _mkdirs(image_root, parent_path, own)
                target = _image_path(image_root, path)
            _copy_entry(src.host, target, st, own, root.is_context, links)


def _copy_tree(root: SourceRoot, src: Source, target: Path, own: Ownership, links: dict) -> None:
    first = True
    for rel, host, st in _walk(root, src):
        if first:
            first = False  # the source dir itself: its contents go into target
            continue
        dst = target / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        _copy_entry(host, dst, st, own, root.is_context, links)


def _copy_entry(host: Path, dst: Path, st: os.stat_result, own: Ownership, from_context: bool, links: dict | None = None) -> None:
    try:
        dst_st = os.lstat(dst)
    except FileNotFoundError:
        dst_st = None
    if dst_st is not None and not (stat.S_ISDIR(dst_st.st_mode) and stat.S_ISDIR(st.st_mode)):
        if stat.S_ISDIR(dst_st.st_mode):
            shutil.rmtree(dst)
        else:
            os.unlink(dst)
    mode = stat.S_IMODE(st.st_mode)
    if links is not None and stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
        first = links.get((st.st_dev, st.st_ino))
        if first is not None:
            try:
                os.link(first, dst)  # its owner, mode and times are the first copy's
                return
            except OSError:
                pass  # the first copy was replaced by a later source: copy this one too
        links[(st.st_dev, st.st_ino)] = dst
    if stat.S_ISDIR(st.st_mode):
        if dst_st is None or not stat.S_ISDIR(dst_st.st_mode):
            os.mkdir(dst, 0o700)
    elif stat.S_ISREG(st.st_mode):
        fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with open(host, "rb") as fin, os.fdopen(fd, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    elif stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(host), dst)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dst, 0o600)
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        os.mknod(dst, 0o600 | stat.S_IFMT(st.st_mode), st.st_rdev)
    else:
        return  # sockets are not copied
    uid = own.uid if own.uid is not None else (0 if from_context else st.st_uid)
    gid = own.gid if own.gid is not None else (0 if from_context else st.st_gid)
    os.lchown(dst, uid, gid)
    if not stat.S_ISLNK(st.st_mode):
        os.chmod(dst, own.mode if own.mode is not None else mode)  # after chown, which drops setuid bits
    os.utime(dst, ns=(st.st_mtime_ns, st.st_mtime_ns), follow_symlinks=False)


# -- ADD of a local archive ------------------------------------------------------------------


def _archive_opener(path: Path):
    """A function opening the archive's uncompressed tar stream, or None if it is no tar."""
    with open(path, "rb") as f:
        head = f.read(6)
    if head[:2] == b"\x1f\x8b":
        opener = gzip.open
    elif head[:3] == b"BZh":
        opener = bz2.open
    elif head[:6] == b"\xfd7zXZ\x00":
        opener = lzma.open
    else:
        opener = open
    try:
        with opener(path, "rb") as f:
            tarfile.open(fileobj=f, mode="r|").next()
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError):
        return None
    return lambda: opener(path, "rb")


def _extract(path: Path, target: Path, own: Ownership, what: str) -> None:
    """Unpack a local archive into `target` with the layer code's entry checks."""
    from orch.node.runtime.layers import LayerError, apply_layer

    opener = _archive_opener(path)
    staging = Path(tempfile.mkdtemp(prefix="orch-add-"))
    try:
        with opener() as stream:
            try:
                apply_layer(stream, staging, label=f"{what}: archive {path.name}")
            except LayerError as err:
                raise ContextError(str(err)) from None
        for base, dirs, files in os.walk(staging):
            for name in sorted(dirs) + sorted(files):
                host = Path(base) / name
                rel = host.relative_to(staging)
                st = os.lstat(host)
                dst = target / rel
                if stat.S_ISDIR(st.st_mode) and dst.is_dir() and not dst.is_symlink():
                    continue
                _copy_entry(host, dst, st, own, from_context=False)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
