"""`orch cp` and `orch export`: files between a container and the host, as docker's CLI copies
them (cli/command/container/cp.go over moby's pkg/archive copy.go rules).

    orch cp [-a] [-L] [-q] CONTAINER:SRC DEST|-
    orch cp [-a] [-L] [-q] SRC|- CONTAINER:DEST
    orch export [-o FILE] CONTAINER

The agent does the container's side (GET/HEAD/PUT /containers/{id}/archive, a worker that
resolves every path inside the container); this module does the host's, with docker's rules:
a source directory copied to a missing destination becomes it, to an existing directory goes
into it, "SRC/." copies its contents; a file to a missing "DEST/" is "no such directory";
-L follows a symbolic link that is the source. Archives on the host are extracted as docker's
client extracts them: modes and times kept, owned by the user running the command (root
keeps root), nothing written outside the destination (no entry climbing out, no link leading
out, nothing written through a link), a directory never replaced by a file or the reverse.
-a keeps uid/gid going into the container (and gives the files to the container's user when
it has one, as dockerd does).
"""

import base64
import json
import os
import posixpath
import stat
import sys
import tarfile
import threading
from dataclasses import dataclass

from orch.api.args import Parser
from orch.client import quoted
from orch.errors import InvalidArgument, NotFound, UserError

GO_DIR, GO_SYMLINK, GO_DEVICE = 1 << 31, 1 << 27, 1 << 26
# End a tar after its two zero blocks, as Go's archive/tar does (Python pads to 20 blocks):
# the sizes printed are then docker's.
tarfile.RECORDSIZE = tarfile.BLOCKSIZE


class CopyError(UserError):
    """docker's archive errors, in its words ("no such directory", "cannot copy directory")."""


# -- Go's path functions and moby's copy rules (pure) ----------------------------------------------
def clean(path: str) -> str:
    """Go's filepath.Clean (one leading slash at most)."""
    if not path:
        return "."
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def base(path: str) -> str:
    """Go's filepath.Base."""
    if not path:
        return "."
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else "/"


def dirname(path: str) -> str:
    """Go's filepath.Dir."""
    head = path[: path.rfind("/") + 1] if "/" in path else ""
    return clean(head) if head else "."


def specifies_current_dir(path: str) -> bool:
    return base(path) == "."


def has_trailing_separator(path: str) -> bool:
    return path.endswith("/")


def asserts_directory(path: str) -> bool:
    return has_trailing_separator(path) or specifies_current_dir(path)


def split_path_dir_entry(path: str) -> tuple[str, str]:
    cleaned = clean(path)
    if specifies_current_dir(path):
        cleaned += "/."
    return dirname(cleaned), base(cleaned)


def rebase_name(path: str, resolved: str) -> tuple[str, str]:
    """moby GetRebaseName: (the resolved path with the original's trailing "/." or "/", the
    name entries must take when a link changed the last element, or "")."""
    if specifies_current_dir(path) and not specifies_current_dir(resolved):
        resolved += "/."
    if has_trailing_separator(path) and not has_trailing_separator(resolved):
        resolved += "/"
    return resolved, (base(path) if base(path) != base(resolved) else "")


@dataclass
class CopyInfo:
    path: str
    exists: bool = False
    is_dir: bool = False
    rebase: str = ""


def prepare_archive_copy(src: CopyInfo, dst: CopyInfo) -> tuple[str, tuple[str, str] | None]:
    """moby PrepareArchiveCopy: (the directory to extract into, the (old, new) base the
    archive's entries must be renamed by, or None)."""
    dst_dir, dst_base = split_path_dir_entry(dst.path)
    _, src_base = split_path_dir_entry(src.path)
    if src.rebase:
        src_base = src.rebase
    if dst.exists and dst.is_dir:
        return dst.path, None
    if dst.exists and src.is_dir:
        raise CopyError("cannot copy directory")
    if dst.exists or src.is_dir:
        return dst_dir, (src_base, dst_base)
    if asserts_directory(dst.path):
        raise CopyError("no such directory")
    return dst_dir, (src_base, dst_base)


def rename_entry(name: str, old: str, new: str) -> str:
    """moby RebaseArchiveEntries: the first `old` in an entry's name becomes `new`."""
    return name.replace(old, new, 1)


def local_abs(path: str) -> str:
    """docker's resolveLocalPath: absolute, its trailing "/" or "/." kept."""
    absolute = os.path.abspath(path)
    if path.endswith("/.") and not absolute.endswith("/."):
        return absolute.rstrip("/") + "/."
    if path.endswith("/") and not absolute.endswith("/"):
        return absolute + "/"
    return absolute


def split_cp_arg(arg: str) -> tuple[str, str]:
    """docker's splitCpArg: ("container", "path") or ("", local path)."""
    if arg.startswith("/"):
        return "", arg
    container, sep, path = arg.partition(":")
    if not sep or container.startswith("."):
        return "", arg
    return container, path


# -- the host's side (local files) --------------------------------------------------------------------
def copy_info_destination_path(path: str) -> CopyInfo:
    """moby CopyInfoDestinationPath: the destination, through links (at most 10), which need
    not exist if its parent directory does."""
    original = path
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    hops = 0
    while st is not None and stat.S_ISLNK(st.st_mode):
        hops += 1
        if hops > 10:
            raise CopyError(f"too many symlinks in {original}")
        target = os.readlink(path)
        path = target if target.startswith("/") else posixpath.join(split_path_dir_entry(path)[0], target)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            st = None
    if st is None:
        parent = split_path_dir_entry(path)[0]
        try:
            parent_st = os.stat(parent)
        except FileNotFoundError:
            raise CopyError("no such directory") from None
        if not stat.S_ISDIR(parent_st.st_mode):
            raise CopyError("not a directory")
        return CopyInfo(path)
    return CopyInfo(path, True, stat.S_ISDIR(st.st_mode))


def copy_info_source_path(path: str, follow_link: bool) -> CopyInfo:
    """moby CopyInfoSourcePath: links in the parent resolved, the last one only with -L."""
    if follow_link:
        resolved, rebase = rebase_name(path, os.path.realpath(path))
    else:
        head, tail = path[: path.rfind("/") + 1] or ".", path[path.rfind("/") + 1:]
        resolved = os.path.realpath(head).rstrip("/") + "/" + tail
        rebase = base(path) if has_trailing_separator(path) and base(path) != base(resolved) else ""
    try:
        st = os.lstat(resolved)
    except FileNotFoundError:
        raise CopyError(f"lstat {resolved.rstrip('/')}: no such file or directory") from None
    return CopyInfo(resolved, True, stat.S_ISDIR(st.st_mode), rebase)


def tar_chunks(src: CopyInfo, renames: list[tuple[str, str]]):
    """moby TarResource(src) with its rebase, then `renames` (PrepareArchiveCopy's), as bytes
    while they are made (a thread writes the tar into a pipe)."""
    source_dir, source_base = split_path_dir_entry(src.path)
    steps = ([(source_base, src.rebase)] if src.rebase else []) + renames
    r, w = os.pipe()
    failed: list[BaseException] = []

    def name_of(rel: str) -> str:
        for old, new in steps:
            rel = rename_entry(rel, old, new)
        return rel

    def write():
        try:
            with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                top = posixpath.join(source_dir, source_base)
                for dirpath, rel in _walk(top, source_base):
                    info = tar.gettarinfo(dirpath, arcname=name_of(rel))
                    if info is None:
                        continue
                    info.mtime = int(info.mtime)  # whole seconds, as docker's archives
                    if info.isreg():
                        with open(dirpath, "rb") as f:
                            tar.addfile(info, f)
                    else:
                        tar.addfile(info)
        except BaseException as err:  # noqa: BLE001 (raised again in the reading thread)
            failed.append(err)

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    with os.fdopen(r, "rb") as pipe:
        while chunk := pipe.read(1 << 16):
            yield chunk
    thread.join()
    if failed:
        raise failed[0]


def _walk(path: str, rel: str):
    """(path, archive name) of `path` and everything under it, sorted, without following links."""
    yield path, rel
    if os.path.isdir(path) and not os.path.islink(path):
        for child in sorted(os.listdir(path)):
            yield from _walk(posixpath.join(path, child), rel + "/" + child if rel != "." else "./" + child)


class ChunkReader:
    """A file-like view of an iterator of bytes, for tarfile's stream mode."""

    def __init__(self, chunks):
        self.chunks, self.buf, self.count = iter(chunks), b"", 0

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self.buf) < n:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.buf += chunk
        if n < 0:
            n = len(self.buf)
        data, self.buf = self.buf[:n], self.buf[n:]
        self.count += len(data)
        return data


def extract_on_host(stream, dest: str, renames: list[tuple[str, str]]) -> None:
    """docker's client Untar (NoLchown, NoOverwriteDirNonDir) into `dest`, safely."""
    dest_real = os.path.realpath(dest)

    def inside(path: str) -> bool:
        return path == dest_real or path.startswith(dest_real.rstrip("/") + "/")

    def checked(member: tarfile.TarInfo, _path: str) -> tarfile.TarInfo:
        name = member.name
        for old, new in renames:
            name = rename_entry(name, old, new)
        rel = posixpath.normpath(name.lstrip("/"))
        if rel == ".." or rel.startswith("../"):
            raise CopyError(f"invalid archive entry {member.name!r}: it would be written outside {dest}")
        target = posixpath.join(dest_real, rel) if rel != "." else dest_real
        # No entry may be written through a link that leads out (a container's archive is not trusted).
        if not inside(os.path.realpath(posixpath.dirname(target)) if rel != "." else dest_real):
            raise CopyError(f"invalid archive entry {member.name!r}: a link would take it outside {dest}")
        updates = {"name": rel, "uid": os.geteuid(), "gid": os.getegid()}  # docker's NoLchown: the files are ours
        if member.issym() and not inside(posixpath.normpath(posixpath.join(posixpath.dirname(target), member.linkname.lstrip("/")))):
            raise CopyError(f"invalid symlink {target!r} -> {member.linkname!r}")
        if member.islnk():
            link = member.linkname
            for old, new in renames:
                link = rename_entry(link, old, new)
            link = posixpath.normpath(link.lstrip("/"))
            if link == ".." or link.startswith("../") or not inside(os.path.realpath(posixpath.join(dest_real, link))):
                raise CopyError(f"invalid hardlink {target!r} -> {member.linkname!r}")
            updates["linkname"] = link
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and rel != ".":
            if stat.S_ISDIR(st.st_mode) and not member.isdir():
                raise CopyError(f"cannot overwrite directory {target!r} with non-directory {rel!r}")
            if not stat.S_ISDIR(st.st_mode) and member.isdir():
                raise CopyError(f"cannot overwrite non-directory {target!r} with directory {rel!r}")
            if not member.isdir():
                os.unlink(target)  # replaced, never written through
        return member.replace(**updates, deep=False)

    with tarfile.open(fileobj=stream, mode="r|") as tar:
        tar.extractall(dest_real, numeric_owner=True, filter=checked)


# -- the commands ------------------------------------------------------------------------------------------
def _agent():
    from orch.cli._agent import client

    return client()


def path_stat(client, container: str, path: str) -> dict:
    headers = client.head("HEAD", f"/containers/{quoted(container)}/archive?path={quoted(path)}")
    return json.loads(base64.b64decode(headers.get("x-docker-container-path-stat", "") or b"e30="))


def cp(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Copy files/folders between a container and the local filesystem")
    p.add_argument("-a", "--archive", action="store_true", help="archive mode (copy all uid/gid information)")
    p.add_argument("-L", "--follow-link", action="store_true", help="always follow symbol link in SRC_PATH")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress progress output during copy")
    p.add_argument("source")
    p.add_argument("destination")
    a = p.parse_args(argv)
    src_container, src_path = split_cp_arg(a.source)
    dst_container, dst_path = split_cp_arg(a.destination)
    if src_container and dst_container:
        raise InvalidArgument("copying between containers is not supported")
    if not src_container and not dst_container:
        raise InvalidArgument("must specify at least one container source")
    if not (src_path if src_container else dst_path):
        raise InvalidArgument("path in the container must not be empty ('CONTAINER:/some/path')")
    quiet = a.quiet or not sys.stdout.isatty()  # docker prints its progress line only to a terminal
    client = _agent()
    if src_container:
        return copy_from_container(client, src_container, src_path, dst_path, follow_link=a.follow_link, quiet=quiet)
    return copy_to_container(client, src_path, dst_container, dst_path, follow_link=a.follow_link, copy_uid_gid=a.archive,
                             quiet=quiet)


def copy_from_container(client, container: str, src: str, dst: str, *, follow_link: bool, quiet: bool) -> int:
    if dst != "-":
        dst = local_abs(dst)
    rebase = ""
    if follow_link:
        info = path_stat(client, container, src)
        if info.get("mode", 0) & GO_SYMLINK:
            target = info.get("linkTarget", "")
            if not target.startswith("/"):
                target = posixpath.join(split_path_dir_entry(src)[0], target)
            src, rebase = rebase_name(src, target)
    headers, chunks = client.open_stream("GET", f"/containers/{quoted(container)}/archive?path={quoted(src)}")
    if dst == "-":
        out = sys.stdout.buffer
        for chunk in chunks:
            out.write(chunk)
        out.flush()
        return 0
    info = json.loads(base64.b64decode(headers.get("x-docker-container-path-stat", "") or b"e30="))
    src_info = CopyInfo(src, True, bool(info.get("mode", 0) & GO_DIR), rebase)
    renames = [(split_path_dir_entry(src)[1], rebase)] if rebase else []
    dst_info = copy_info_destination_path(dst)
    dst_dir, rename = prepare_archive_copy(src_info, dst_info)
    if rename:
        renames.append(rename)
    stream = ChunkReader(chunks)
    extract_on_host(stream, dst_dir, renames)
    if not quiet:
        from orch.cli.format import human_size

        print(f"Successfully copied {human_size(stream.count)} to {dst}", file=sys.stderr)
    return 0


def copy_to_container(client, src: str, container: str, dst: str, *, follow_link: bool, copy_uid_gid: bool, quiet: bool) -> int:
    if src != "-":
        src = local_abs(src)
    dst_info = CopyInfo(dst)
    try:
        info = path_stat(client, container, dst)
        if info.get("mode", 0) & GO_SYMLINK:
            target = info.get("linkTarget", "")
            if not target.startswith("/"):
                target = posixpath.join(split_path_dir_entry(dst)[0], target)
            dst_info.path = target
            info = path_stat(client, container, target)
        mode = info.get("mode", 0)
        if mode & GO_DEVICE:
            raise CopyError(f'destination "{container}:{dst}" must be a directory or a regular file: got a device')
        dst_info.exists, dst_info.is_dir = True, bool(mode & GO_DIR)
    except NotFound:
        pass  # the parent may exist: the extraction says if it does not
    query = "noOverwriteDirNonDir=true" + ("&copyUIDGID=true" if copy_uid_gid else "")
    if src == "-":
        if not dst_info.is_dir:
            raise CopyError(f'destination "{container}:{dst}" must be a directory')
        chunks = iter(lambda: sys.stdin.buffer.read1(1 << 16), b"")
        target = dst_info.path
    else:
        src_info = copy_info_source_path(src, follow_link)
        target, rename = prepare_archive_copy(src_info, dst_info)
        chunks = tar_chunks(src_info, [rename] if rename else [])
    counted = _Counted(chunks)
    client.upload("PUT", f"/containers/{quoted(container)}/archive?path={quoted(target)}&{query}", counted)
    if not quiet:
        from orch.cli.format import human_size

        print(f"Successfully copied {human_size(counted.count)} to {container}:{dst}", file=sys.stderr)
    return 0


class _Counted:
    def __init__(self, chunks):
        self.chunks, self.count = chunks, 0

    def __iter__(self):
        for chunk in self.chunks:
            self.count += len(chunk)
            yield chunk


def export(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Export a container's filesystem as a tar archive")
    p.add_argument("-o", "--output", help="write to a file, instead of STDOUT")
    p.add_argument("container")
    a = p.parse_args(argv)
    if not a.output and sys.stdout.isatty():
        raise InvalidArgument("cowardly refusing to save to a terminal. Use the -o flag or redirect")
    _, chunks = _agent().open_stream("GET", f"/containers/{quoted(a.container)}/export")
    if a.output:
        tmp = a.output + ".orch-export"
        try:
            with open(tmp, "wb") as f:
                for chunk in chunks:
                    f.write(chunk)
            os.replace(tmp, a.output)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        return 0
    out = sys.stdout.buffer
    for chunk in chunks:
        out.write(chunk)
    out.flush()
    return 0

