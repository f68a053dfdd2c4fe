"""A container's files as tar archives: `cp` both ways and `export`, in a short-lived worker
process (`python -m orch.node.runtime.fsworker SPEC`) that sees the container's file system
as the container does, and nothing of the host's.

Why a process of its own: the agent is multi-threaded, and neither setns(CLONE_NEWNS) nor a
private mount namespace is possible there; and a path must be resolved inside the container
(a symbolic link in it pointing at /etc must mean the container's /etc, never the host's).
So the worker first enters the container's root, then reads or writes with plain paths:

- a running container (cp): setns into its mount namespace, through /proc/<pid> opened once
  and checked against the start time the agent recorded (a recycled pid is refused). setns
  makes the namespace's root, the container's pivoted root, this process's root: volumes,
  binds and the /etc files are there as the container sees them. The kernel's own mounts
  (/proc, /sys, /dev, cgroups) are not archived, as dockerd does not mount them for `cp`.
- a stopped container (cp): a private mount namespace, the container's overlay and its
  volumes and binds mounted as its init would mount them (init.mount_rootfs,
  mount_user_mounts), then chroot. Its mounts vanish with the process.
- export: a private mount namespace with a read-only overlay of the container's upper dir over
  the image's layers (no volumes, as docker's export has none), then chroot; a running
  container's upper dir is only read, as one more lower layer.

Once inside, the worker imports nothing more (an import would read Python files from the
container's root: a meta path finder refuses them), and never calls the C library's user
lookups (getpwuid would load NSS modules named by the container's /etc/nsswitch.conf into
this root process: docker's CVE-2019-14271). Owner names in archives come from the
container's /etc/passwd and /etc/group, parsed as text.

Protocol: SPEC is JSON {"op": "stat"|"get"|"put"|"export", "config", "pid", "pid_start",
"path", "copy_uid_gid", "no_overwrite_dir_non_dir"}. The worker writes one JSON line to
stdout first: {"stat": {...}} (docker's X-Docker-Container-Path-Stat) or {"error": {"kind",
"message"}}; `get` and `export` then write the tar stream; `put` reads the tar stream from
stdin and ends with one more line, {"ok": true} or {"error": ...}.
"""

import base64
import json
import os
import posixpath
import shutil
import stat
import sys
import tarfile
import time

# Go's os.FileMode bits, which docker's path stat carries (api/types ContainerPathStat).
GO_DIR, GO_SYMLINK, GO_DEVICE, GO_PIPE, GO_SOCKET = 1 << 31, 1 << 27, 1 << 26, 1 << 25, 1 << 24
GO_SETUID, GO_SETGID, GO_CHARDEV, GO_STICKY = 1 << 23, 1 << 22, 1 << 21, 1 << 20
# Go's archive/tar ends a stream after its two zero blocks; Python's pads it to 20 blocks (GNU
# tar's -b20). docker's clients count the bytes ("Successfully copied 2.05kB"): end as Go does.
tarfile.RECORDSIZE = tarfile.BLOCKSIZE
# Mounts of the kernel's own file systems in a running container: never archived.
KERNEL_FS = frozenset({"proc", "sysfs", "devpts", "mqueue", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs"})


class Failure(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind, self.message = kind, message


# -- docker's path rules (pure) --------------------------------------------------------------
def go_mode(mode: int) -> int:
    """A stat mode as Go's os.FileMode (permission bits plus Go's type and special bits)."""
    out = mode & 0o777
    kind = stat.S_IFMT(mode)
    out |= {stat.S_IFDIR: GO_DIR, stat.S_IFLNK: GO_SYMLINK, stat.S_IFIFO: GO_PIPE, stat.S_IFSOCK: GO_SOCKET,
            stat.S_IFBLK: GO_DEVICE, stat.S_IFCHR: GO_DEVICE | GO_CHARDEV}.get(kind, 0)
    if mode & stat.S_ISUID:
        out |= GO_SETUID
    if mode & stat.S_ISGID:
        out |= GO_SETGID
    if mode & stat.S_ISVTX:
        out |= GO_STICKY
    return out


def preserve_trailing(cleaned: str, original: str) -> str:
    """moby archive.PreserveTrailingDotOrSeparator."""
    if original.endswith("/.") and not cleaned.endswith("/."):
        return cleaned.rstrip("/") + "/."
    if original.endswith("/") and not cleaned.endswith("/"):
        return cleaned + "/"
    return cleaned


def go_base(path: str) -> str:
    """Go's filepath.Base: the last element, trailing slashes dropped; "/" for the root."""
    stripped = path.rstrip("/")
    if not stripped:
        return "/" if path else "."
    return stripped.rsplit("/", 1)[-1]


def absolute(path: str) -> str:
    """The path as the container's absolute one, its trailing "/" or "/." kept (moby
    container.ResolvePath's absPath)."""
    return preserve_trailing(posixpath.normpath("/" + path), path)


def rfc3339_nano(ns: int) -> str:
    """Go's time.Time JSON of a time in nanoseconds (RFC 3339, trailing zeros of the fraction
    cut, UTC)."""
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ns // 1_000_000_000)) + (f".{frac}" if frac else "") + "Z"


# -- inside the container's root ----------------------------------------------------------------
def resolve(path: str) -> tuple[str, str]:
    """(resolvedPath, absPath): the parent resolved through symbolic links (inside this
    root), the last element as given, so a link at the end is the link itself."""
    abs_path = absolute(path)
    head, _, base = abs_path.rpartition("/")
    parent = os.path.realpath(head or "/")
    return (parent.rstrip("/") + "/" + base if base else parent.rstrip("/") + "/"), abs_path


def path_stat(resolved: str, abs_path: str) -> dict:
    try:
        st = os.lstat(resolved)
    except FileNotFoundError:
        raise Failure("not-found", "") from None
    except NotADirectoryError:
        raise Failure("not-found", "") from None
    link = ""
    if stat.S_ISLNK(st.st_mode):
        link = os.path.realpath(resolved)
    return {"name": go_base(abs_path), "size": st.st_size, "mode": go_mode(st.st_mode),
            "mtime": rfc3339_nano(st.st_mtime_ns), "linkTarget": link}


def _table(text: str, id_field: int) -> dict[int, str]:
    names = {}
    for line in (text or "").splitlines():
        parts = line.split(":")
        if len(parts) > id_field and parts[id_field].isdigit():
            names.setdefault(int(parts[id_field]), parts[0])
    return names


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


class Names:
    """uid/gid -> name from the container's own /etc/passwd and /etc/group (text, no NSS)."""

    def __init__(self):
        self.users, self.groups = _table(_read("/etc/passwd"), 2), _table(_read("/etc/group"), 2)

    def apply(self, info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uname = self.users.get(info.uid, "")
        info.gname = self.groups.get(info.gid, "")
        return info


def write_tar(out, entries, skip: set[str]) -> None:
    """Stream (path, archive name) pairs as a tar, directories recursively (sorted, hard links
    once), never descending into `skip` (kernel mounts)."""
    names = Names()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for path, name in entries:
            _add(tar, path, name, names, skip)


def _add(tar: tarfile.TarFile, path: str, name: str, names: Names, skip: set[str]) -> None:
    """`path` as `name` ("d", ".", "/" or "" for the root of an export, whose entries are
    bare names), and below it."""
    info = tar.gettarinfo(path, arcname=name)  # (the name that hard links to this inode name)
    if info is None:  # a socket: tar has no such entry
        return
    if name.startswith("/") and info.islnk():
        info.linkname = "/" + info.linkname  # gettarinfo strips the root's "/"; the entries keep it
    info.name = name + ("/" if info.isdir() and not name.endswith("/") else "")
    info.mtime = int(info.mtime)  # whole seconds, as docker's archives (a fraction costs a PAX header)
    names.apply(info)
    if info.isreg():
        try:
            with open(path, "rb") as f:
                tar.addfile(info, f)
        except OSError as err:
            print(f"fsworker: {path}: {err.strerror}", file=sys.stderr)
        return
    tar.addfile(info)
    if info.isdir() and path not in skip:
        try:
            children = sorted(os.listdir(path))
        except OSError:
            return
        for child in children:
            _add(tar, posixpath.join(path, child), name + child if name in ("", "/") else name + "/" + child, names, skip)


def extract_tar(stream, dest: str, *, no_overwrite_dir_non_dir: bool, owner: tuple[int, int] | None) -> None:
    """docker's Untar into `dest` (a directory inside this root): names may not climb out of
    `dest`, an entry replaces what is there unless a directory meets a non-directory (with
    no_overwrite_dir_non_dir), modes and times are the archive's, owners too unless `owner`
    (docker cp -a with a container user) says whose the files become."""
    dest = dest.rstrip("/") or "/"

    def within(name: str) -> str:
        rel = posixpath.normpath(name.lstrip("/"))
        if rel == ".." or rel.startswith("../"):
            raise Failure("invalid-argument", f"invalid archive entry {name!r}: it would be extracted outside {dest}")
        return rel

    def checked(member: tarfile.TarInfo, path: str) -> tarfile.TarInfo:
        rel = within(member.name)
        target = posixpath.join(dest, rel) if rel != "." else dest
        if member.islnk():
            within(member.linkname)
        try:
            st = os.lstat(target)
        except FileNotFoundError:
            st = None
        if st is not None and rel != ".":
            if stat.S_ISDIR(st.st_mode) and not member.isdir():
                if no_overwrite_dir_non_dir:
                    raise Failure("invalid-argument", f"cannot overwrite directory {target!r} with non-directory {member.name!r}")
                _remove(target)
            elif not stat.S_ISDIR(st.st_mode) and member.isdir():
                if no_overwrite_dir_non_dir:
                    raise Failure("invalid-argument", f"cannot overwrite non-directory {target!r} with directory {member.name!r}")
                os.unlink(target)
            elif not member.isdir():
                os.unlink(target)  # a file, or a link that must not be written through
        member = member.replace(name=rel, deep=False)
        if owner is not None:
            member.uid, member.gid = owner
        return member

    with tarfile.open(fileobj=stream, mode="r|") as tar:
        tar.extractall(dest, numeric_owner=True, filter=checked)


def _remove(path: str) -> None:
    shutil.rmtree(path)


# -- entering the container's root -------------------------------------------------------------
class _NoImports:
    """A meta path finder that refuses every import once inside the container's root."""

    @staticmethod
    def find_spec(name, path=None, target=None):
        raise ImportError(f"fsworker: no import of {name} inside the container's root")


def _kernel_mounts(pid: int) -> set[str]:
    """The container's mount points of the kernel's own file systems, and its /dev, from its
    pid 1's mountinfo (paths as the container sees them)."""
    skip = set()
    try:
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                fstype = line.split(" - ", 1)[1].split()[0]
                point = fields[4].replace("\\040", " ")
                if fstype in KERNEL_FS or point == "/dev" or point.startswith("/dev/"):
                    skip.add(point)
    except (OSError, IndexError):
        pass
    return skip


def enter(spec: dict) -> set[str]:
    """Make this process's root the container's (see the module's docstring); return the
    mount points not to archive."""
    from orch.node.runtime.config import ContainerConfig
    from orch.node.runtime.init import mount_rootfs, mount_user_mounts
    from orch.node.runtime.kernel import LinuxSyscalls, split_overlay_options

    with open(spec["config"]) as f:
        config = ContainerConfig.from_json(json.load(f))
    sys_ = LinuxSyscalls()
    pid = int(spec.get("pid") or 0)
    skip: set[str] = set()
    if pid and spec["op"] != "export":
        proc = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with open(f"/proc/{pid}/stat") as f:
                started = int(f.read().rsplit(")", 1)[1].split()[19])
            if spec.get("pid_start") and started != int(spec["pid_start"]):
                raise Failure("conflict", "the container's process is gone (its pid was reused); try again")
            skip = _kernel_mounts(pid)
            ns = os.open("ns/mnt", os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc)
        finally:
            os.close(proc)
        sys_.setns(ns, "mount")
        os.close(ns)
        os.chdir("/")
    else:
        sys_.unshare(("mount",))
        sys_.mount("", "/", "", ("MS_REC", "MS_PRIVATE"))
        if spec["op"] == "export":
            overlay = next((m for m in config.rootfs_mounts if m.type == "overlay"), None)
            if overlay is None:
                raise Failure("system", "the container has no overlay root to export")
            lowers, upper, _, rest = split_overlay_options(overlay.options)
            os.makedirs(config.rootfs, exist_ok=True)
            # Read-only: the upper dir is one more lower layer; whiteouts and opaque
            # directories in it hide what they hide, as in the container.
            sys_.mount_overlay([upper, *lowers], "", "", config.rootfs, tuple(rest))
        else:
            mount_rootfs(sys_, config)
            mount_user_mounts(sys_, config, None)
        os.chroot(config.rootfs)
        os.chdir("/")
    tarfile.pwd = None  # never the C library's user lookups from here on (NSS)
    tarfile.grp = None
    sys.meta_path.insert(0, _NoImports)
    return skip


# -- the operations ---------------------------------------------------------------------------------
_sent = []  # whether the first line went out: after it, an error can only cut the stream short


def _header(out, value: dict) -> None:
    out.write(json.dumps(value).encode() + b"\n")
    out.flush()
    _sent.append(True)


def run(spec: dict, out, inp) -> None:
    op = spec["op"]
    skip = enter(spec)
    if op == "export":
        _header(out, {"ok": True})
        write_tar(out, [("/" + n, n) for n in sorted(os.listdir("/"))], skip)
        return
    path = spec["path"]
    resolved, abs_path = resolve(path)
    try:
        info = path_stat(resolved, abs_path)
    except Failure:
        raise Failure("not-found", f"Could not find the file {path} in container {spec.get('name', '')}") from None
    if op == "stat":
        _header(out, {"stat": info})
        return
    if op == "get":
        _header(out, {"stat": info})
        source = posixpath.normpath(resolved) if resolved != "/" else "/"
        rebase = go_base(abs_path)
        if source == "/":
            entries = [("/", "/" if rebase == "/" else rebase)]
        else:
            entries = [(source, rebase)]
        write_tar(out, entries, skip)
        return
    if op == "put":
        # The destination's last element is followed too: an archive goes into the directory
        # a link names (moby containerExtractToDir).
        dest = os.path.realpath(abs_path)
        if not os.path.isdir(dest):
            raise Failure("invalid-argument", "extraction point is not a directory")
        _header(out, {"stat": info})
        owner = None
        if spec.get("copy_uid_gid") and spec.get("user"):
            from orch.node.runtime.users import resolve_user  # imported before entering (main)

            user = resolve_user(spec["user"], (), _read("/etc/passwd"), _read("/etc/group"))
            owner = (user.uid, user.gid)
        extract_tar(inp, dest, no_overwrite_dir_non_dir=bool(spec.get("no_overwrite_dir_non_dir")),
                    owner=owner)
        _header(out, {"ok": True})
        return
    raise Failure("invalid-argument", f"unknown operation {op!r}")


def main(argv: list[str]) -> int:
    out, inp = sys.stdout.buffer, sys.stdin.buffer
    op = ""
    try:
        spec = json.loads(argv[0])
        op = spec.get("op", "")
        from orch.node.runtime import users  # noqa: F401 (put with -a needs it inside the root)

        run(spec, out, inp)
        out.flush()
        return 0
    except Failure as err:
        _error(out, op, err.kind, err.message)
    except tarfile.TarError as err:
        _error(out, op, "invalid-argument", f"the archive cannot be read: {err}")
    except OSError as err:
        _error(out, op, "system", f"{err.strerror}: {err.filename}" if err.filename else str(err))
    except Exception as err:  # one line, never a traceback (its source lines would come from the container's root)
        _error(out, op, "system", f"{type(err).__name__}: {err}")
    return 1


def _error(out, op: str, kind: str, message: str) -> None:
    """The error line; in the middle of an archive (get, export) the stream just ends, and the
    message goes to the agent's log."""
    if _sent and op != "put":
        print(f"fsworker: {message}", file=sys.stderr)
        return
    try:
        _header(out, {"error": {"kind": kind, "message": message}})
    except OSError:
        pass


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stdout.flush()
    os._exit(code)
