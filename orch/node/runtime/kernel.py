"""The kernel behind one small door: `Syscalls`, its real implementation, and a recording fake.

The container init (init.py) and exec (spawn.py) do every kernel operation through a
`Syscalls` object, so the whole sequence can be run against `RecordingSyscalls` in a unit test
and compared, call by call, with the expected list (youki's `syscall/syscall.rs` and
`syscall/test.rs` have the same shape). Mount flags travel as tuples of names ("MS_BIND",
"MS_REC"), not bits: the recording reads like the code, and a kernel error can name them.

`LinuxSyscalls` uses `os` where Python has the call and libc's `syscall(2)` through ctypes
where it has not (mount, umount2, pivot_root, the new mount API, capset, prctl, seccomp).
Those numbers are x86-64's: `LinuxSyscalls` refuses, with one line, to run on another
architecture rather than make a wrong call.
"""

import ctypes
import errno
import fcntl
import os
import resource  # imported here, not in setrlimit: after pivot_root the host's modules are gone
import signal
import socket
import stat as stat_module
import struct
import termios

from orch.errors import SystemFailure

MOUNT_FLAGS = {
    "MS_RDONLY": 1,
    "MS_NOSUID": 2,
    "MS_NODEV": 4,
    "MS_NOEXEC": 8,
    "MS_REMOUNT": 32,
    "MS_NOATIME": 1024,
    "MS_NODIRATIME": 2048,
    "MS_BIND": 4096,
    "MS_MOVE": 8192,
    "MS_REC": 16384,
    "MS_UNBINDABLE": 1 << 17,
    "MS_PRIVATE": 1 << 18,
    "MS_SLAVE": 1 << 19,
    "MS_SHARED": 1 << 20,
    "MS_RELATIME": 1 << 21,
    "MS_STRICTATIME": 1 << 24,
}
MNT_DETACH = 2

# Namespace flags for unshare(2) and setns(2), and their names under /proc/PID/ns.
CLONE_FLAGS = {
    "mount": 0x00020000,
    "cgroup": 0x02000000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "user": 0x10000000,
    "pid": 0x20000000,
    "net": 0x40000000,
}
NS_FILES = {"mount": "mnt", "cgroup": "cgroup", "uts": "uts", "ipc": "ipc", "user": "user", "pid": "pid", "net": "net"}

# x86-64 system call numbers that Python's os module does not wrap.
SYS_CAPGET = 125
SYS_CAPSET = 126
SYS_PIVOT_ROOT = 155
SYS_MOVE_MOUNT = 429
SYS_FSOPEN = 430
SYS_FSCONFIG = 431
SYS_FSMOUNT = 432
SYS_SECCOMP = 317
SYSCALL_ARCH = "x86_64"
FSOPEN_CLOEXEC = 1
FSMOUNT_CLOEXEC = 1
FSCONFIG_SET_FLAG = 0
FSCONFIG_SET_STRING = 1
FSCONFIG_CMD_CREATE = 6
MOVE_MOUNT_F_EMPTY_PATH = 4
SECCOMP_SET_MODE_FILTER = 1

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_RAISE = 2
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
TIOCSPTLCK = 0x40045431
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
TIOCGPTN = 0x80045430


class _SockFprog(ctypes.Structure):
    """struct sock_fprog: the length in instructions and a pointer to them."""

    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def flag_bits(names) -> int:
    bits = 0
    for name in names:
        bits |= MOUNT_FLAGS[name]
    return bits


def split_overlay_options(options) -> tuple[list[str], str, str, list[str]]:
    """Split overlay mount options into (lowerdirs top first, upperdir, workdir, the rest).

    Lower dirs may come as one `lowerdir=a:b:c` (the mount(2) form) or as repeated
    `lowerdir+=a` entries (the new mount API form); both mean the same stack.
    """
    lowers: list[str] = []
    upper = work = ""
    rest: list[str] = []
    for option in options:
        if option.startswith("lowerdir+="):
            lowers.append(option[len("lowerdir+="):])
        elif option.startswith("lowerdir="):
            lowers.extend(p for p in option[len("lowerdir="):].split(":") if p)
        elif option.startswith("upperdir="):
            upper = option[len("upperdir="):]
        elif option.startswith("workdir="):
            work = option[len("workdir="):]
        else:
            rest.append(option)
    return lowers, upper, work, rest


class Syscalls:
    """The operations the container init and exec need. Paths are absolute."""

    def mount(self, source: str, target: str, fstype: str, flags: tuple[str, ...] = (), data: str = "") -> None:
        raise NotImplementedError

    def mount_overlay(self, lowerdirs, upperdir: str, workdir: str, target: str, extra=()) -> None:
        raise NotImplementedError

    def umount2(self, target: str, flags: int = 0) -> None:
        raise NotImplementedError

    def seccomp_load(self, program: bytes, flags: int = 0) -> None:
        """Install a seccomp BPF program (an array of struct sock_filter) on this thread."""
        raise NotImplementedError

    def pivot_root(self, new_root: str, put_old: str) -> None:
        raise NotImplementedError

    def unshare(self, namespaces: tuple[str, ...]) -> None:
        raise NotImplementedError

    def setns(self, fd: int, namespace: str) -> None:
        raise NotImplementedError

    def sethostname(self, name: str) -> None:
        raise NotImplementedError

    def chdir(self, path: str) -> None:
        raise NotImplementedError

    def mkdir(self, path: str, mode: int = 0o755) -> None:
        """Create a directory and its parents; an existing one is fine."""
        raise NotImplementedError

    def touch(self, path: str) -> None:
        """Create an empty file (a bind-mount target for a file); an existing one is fine."""
        raise NotImplementedError

    def mknod(self, path: str, mode: int, major: int, minor: int) -> None:
        raise NotImplementedError

    def symlink(self, target: str, path: str) -> None:
        raise NotImplementedError

    def write_file(self, path: str, data: str) -> None:
        raise NotImplementedError

    def lstat_kind(self, path: str) -> str:
        """"dir", "file", "missing", or "link:<target>" for a symbolic link."""
        raise NotImplementedError

    def drop_bounding(self, caps: tuple[int, ...]) -> None:
        raise NotImplementedError

    def capset(self, effective: int, permitted: int, inheritable: int) -> None:
        raise NotImplementedError

    def raise_ambient(self, caps: tuple[int, ...]) -> None:
        raise NotImplementedError

    def setrlimit(self, name: str, soft: int, hard: int) -> None:
        """Set RLIMIT_<NAME> ("nofile"); -1 is unlimited."""
        raise NotImplementedError

    def set_no_new_privs(self) -> None:
        raise NotImplementedError

    def setgroups(self, groups: tuple[int, ...]) -> None:
        raise NotImplementedError

    def setgid(self, gid: int) -> None:
        raise NotImplementedError

    def setuid(self, uid: int) -> None:
        raise NotImplementedError

    def read_text(self, path: str) -> str | None:
        """A small file's text, or None when it does not exist (for /etc/passwd lookups)."""
        raise NotImplementedError

    def is_dir(self, path: str) -> bool:
        """Whether a host path is a directory, following symbolic links (a bind source)."""
        raise NotImplementedError

    def executable_status(self, path: str) -> str:
        """"ok", "missing", "denied" (no x bit for us) or "dir", following symbolic links."""
        raise NotImplementedError

    def setsid(self) -> None:
        raise NotImplementedError

    def setup_stdio(self, stdin: int, stdout: int, stderr: int) -> None:
        """Make the three fds the process's 0, 1 and 2 (inheritable across execve)."""
        raise NotImplementedError

    def setup_terminal(self, console_socket: int, uid: int) -> str:
        """Open a pty in the container's /dev/pts, make its slave our controlling terminal on
        0, 1 and 2, send the master over `console_socket`; return the slave's path."""
        raise NotImplementedError

    def close_fds(self, keep_above_stdio: int) -> None:
        """Close every fd above 2 but `keep_above_stdio` (the CLOEXEC error pipe)."""
        raise NotImplementedError

    def execve(self, path: str, args, env) -> None:
        raise NotImplementedError

    def loopback_up(self) -> None:
        """Set the network namespace's `lo` up (a new namespace starts with it down)."""
        raise NotImplementedError


class LinuxSyscalls(Syscalls):
    """The real thing. Each failure raises SystemFailure naming the operation and its arguments."""

    def __init__(self):
        machine = os.uname().machine
        if machine != SYSCALL_ARCH:
            raise SystemFailure(f"the container runtime knows the system call numbers of {SYSCALL_ARCH} only and this machine "
                                f"is {machine}; orch cannot run containers here yet")
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.syscall.restype = ctypes.c_long

    def _check(self, result: int, what: str) -> int:
        if result < 0:
            err = ctypes.get_errno()
            raise SystemFailure(f"{what}: {os.strerror(err)}") from OSError(err, os.strerror(err))
        return result

    def _syscall(self, number: int, *args, what: str) -> int:
        return self._check(self.libc.syscall(ctypes.c_long(number), *args), what)

    def mount(self, source, target, fstype, flags=(), data=""):
        result = self.libc.mount(
            (source or "none").encode(), target.encode(), fstype.encode() if fstype else None,
            ctypes.c_ulong(flag_bits(flags)), data.encode() if data else None,
        )
        names = "|".join(flags) or "0"
        self._check(result, f"mount {fstype or 'none'} {source or ''} on {target} ({names}{', ' + data if data else ''})")

    def mount_overlay(self, lowerdirs, upperdir, workdir, target, extra=()):
        # The new mount API takes one `lowerdir+` per layer, so the option string's one-page
        # limit (~120-200 layers with mount(2)) does not apply; the kernel allows 500.
        what = f"mount overlay on {target} ({len(lowerdirs)} lower dirs)"
        fs = self.libc.syscall(ctypes.c_long(SYS_FSOPEN), b"overlay", ctypes.c_uint(FSOPEN_CLOEXEC))
        if fs < 0:
            if ctypes.get_errno() != errno.ENOSYS:
                self._check(fs, what + ": fsopen")
            return self._mount_overlay_legacy(lowerdirs, upperdir, workdir, target, extra)
        try:
            def config(key: str, value: str | None):
                cmd = FSCONFIG_SET_STRING if value is not None else FSCONFIG_SET_FLAG
                self._syscall(SYS_FSCONFIG, ctypes.c_int(fs), ctypes.c_uint(cmd), key.encode(),
                              value.encode() if value is not None else None, ctypes.c_int(0),
                              what=f"{what}: fsconfig {key}={value}")
            # Kernels before 6.8 know the new mount API but not `lowerdir+`: they say EINVAL
            # to the first one, and the whole stack then goes through mount(2).
            if lowerdirs:
                first = self.libc.syscall(ctypes.c_long(SYS_FSCONFIG), ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_SET_STRING),
                                          b"lowerdir+", lowerdirs[0].encode(), ctypes.c_int(0))
                if first < 0:
                    if ctypes.get_errno() != errno.EINVAL:
                        self._check(first, f"{what}: fsconfig lowerdir+={lowerdirs[0]}")
                    return self._mount_overlay_legacy(lowerdirs, upperdir, workdir, target, extra)
            for lower in lowerdirs[1:]:
                config("lowerdir+", lower)
            if upperdir:
                config("upperdir", upperdir)
                config("workdir", workdir)
            for option in extra:
                key, sep, value = option.partition("=")
                config(key, value if sep else None)
            self._syscall(SYS_FSCONFIG, ctypes.c_int(fs), ctypes.c_uint(FSCONFIG_CMD_CREATE), None, None,
                          ctypes.c_int(0), what=f"{what}: fsconfig create")
            mnt = self._syscall(SYS_FSMOUNT, ctypes.c_int(fs), ctypes.c_uint(FSMOUNT_CLOEXEC), ctypes.c_uint(0),
                                what=f"{what}: fsmount")
            try:
                self._syscall(SYS_MOVE_MOUNT, ctypes.c_int(mnt), b"", ctypes.c_int(-100), target.encode(),
                              ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH), what=f"{what}: move_mount")
            finally:
                os.close(mnt)
        finally:
            os.close(fs)

    def _mount_overlay_legacy(self, lowerdirs, upperdir, workdir, target, extra):
        data = "lowerdir=" + ":".join(lowerdirs)
        if upperdir:
            data += f",upperdir={upperdir},workdir={workdir}"
        data = ",".join([data, *extra])
        self.mount("overlay", target, "overlay", (), data)

    def umount2(self, target, flags=0):
        self._check(self.libc.umount2(target.encode(), ctypes.c_int(flags)), f"umount {target}")

    def seccomp_load(self, program, flags=0):
        # struct sock_fprog { unsigned short len; struct sock_filter *filter; }; 8 bytes an instruction.
        if not program or len(program) % 8:
            raise SystemFailure(f"seccomp: a BPF program of {len(program)} bytes is not a list of 8-byte instructions")
        buffer = ctypes.create_string_buffer(program, len(program))
        prog = _SockFprog(len(program) // 8, ctypes.addressof(buffer))
        self._syscall(SYS_SECCOMP, ctypes.c_uint(SECCOMP_SET_MODE_FILTER), ctypes.c_uint(flags), ctypes.byref(prog),
                      what=f"seccomp(SECCOMP_SET_MODE_FILTER) of {len(program) // 8} instructions")

    def pivot_root(self, new_root, put_old):
        self._syscall(SYS_PIVOT_ROOT, new_root.encode(), put_old.encode(), what=f"pivot_root {new_root} {put_old}")

    def unshare(self, namespaces):
        flags = 0
        for name in namespaces:
            flags |= CLONE_FLAGS[name]
        try:
            os.unshare(flags)
        except OSError as e:
            raise SystemFailure(f"unshare {','.join(namespaces)}: {e.strerror}") from e

    def setns(self, fd, namespace):
        try:
            os.setns(fd, CLONE_FLAGS[namespace])
        except OSError as e:
            raise SystemFailure(f"setns {namespace}: {e.strerror}") from e

    def sethostname(self, name):
        data = name.encode()
        self._check(self.libc.sethostname(data, ctypes.c_size_t(len(data))), f"sethostname {name!r}")

    def chdir(self, path):
        _os_call(os.chdir, f"chdir {path}", path)

    def mkdir(self, path, mode=0o755):
        # Most targets (/proc, /dev, /sys) exist in the image: one mkdir call, not makedirs'
        # walk, on the hot path.
        try:
            os.mkdir(path, mode)
        except FileExistsError:
            pass
        except FileNotFoundError:
            _os_call(os.makedirs, f"mkdir {path}", path, mode, exist_ok=True)
        except OSError as e:
            raise SystemFailure(f"mkdir {path}: {e.strerror}") from e

    def touch(self, path):
        try:
            # Read-only: opening an overlay's lower file for writing copies it up into the
            # container's upper dir, and a mount target must not show in `orch diff`.
            os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644))
        except IsADirectoryError:
            pass
        except OSError as e:
            raise SystemFailure(f"create {path}: {e.strerror}") from e

    def mknod(self, path, mode, major, minor):
        _os_call(os.mknod, f"mknod {path} {major}:{minor}", path, mode, os.makedev(major, minor))
        # mknod honours the umask; device nodes want their exact mode.
        _os_call(os.chmod, f"chmod {path}", path, stat_module.S_IMODE(mode))

    def symlink(self, target, path):
        _os_call(os.symlink, f"symlink {path} -> {target}", target, path)

    def write_file(self, path, data):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise SystemFailure(f"write {data!r} to {path}: {e.strerror}") from e

    def lstat_kind(self, path):
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "missing"
        except NotADirectoryError:
            return "missing"
        if stat_module.S_ISLNK(st.st_mode):
            return "link:" + os.readlink(path)
        if stat_module.S_ISDIR(st.st_mode):
            return "dir"
        return "file"

    def drop_bounding(self, caps):
        for cap in caps:
            self._check(self.libc.prctl(PR_CAPBSET_DROP, ctypes.c_ulong(cap), 0, 0, 0), f"drop capability {cap} from the bounding set")

    def capset(self, effective, permitted, inheritable):
        header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
        data = (ctypes.c_uint32 * 6)(
            effective & 0xFFFFFFFF, permitted & 0xFFFFFFFF, inheritable & 0xFFFFFFFF,
            effective >> 32, permitted >> 32, inheritable >> 32,
        )
        self._syscall(SYS_CAPSET, header, data, what=f"capset effective={effective:#x} permitted={permitted:#x}")

    def raise_ambient(self, caps):
        for cap in caps:
            self._check(self.libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, ctypes.c_ulong(cap), 0, 0),
                        f"raise ambient capability {cap}")

    def setrlimit(self, name, soft, hard):
        number = getattr(resource, "RLIMIT_" + name.upper())
        try:
            resource.setrlimit(number, (soft, hard))
        except (ValueError, OSError) as e:
            # Python reports EPERM as ValueError("not allowed to raise maximum limit").
            node_hard = resource.getrlimit(number)[1]
            if node_hard != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > node_hard):
                raise SystemFailure(f"setrlimit {name} soft={soft} hard={hard}: the node's hard limit is {node_hard} and raising it "
                                    f"needs CAP_SYS_RESOURCE, which this node does not hold; use a hard limit of at most {node_hard}") from e
            raise SystemFailure(f"setrlimit {name} soft={soft} hard={hard}: {getattr(e, 'strerror', None) or e}") from e

    def set_no_new_privs(self):
        self._check(self.libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl PR_SET_NO_NEW_PRIVS")

    def setgroups(self, groups):
        _os_call(os.setgroups, f"setgroups {list(groups)}", list(groups))

    def setgid(self, gid):
        _os_call(os.setresgid, f"setgid {gid}", gid, gid, gid)

    def setuid(self, uid):
        _os_call(os.setresuid, f"setuid {uid}", uid, uid, uid)

    def read_text(self, path):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return f.read()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def is_dir(self, path):
        return os.path.isdir(path)

    def executable_status(self, path):
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return "missing"
        except PermissionError:
            return "denied"
        if stat_module.S_ISDIR(st.st_mode):
            return "dir"
        return "ok" if os.access(path, os.X_OK) else "denied"

    def setsid(self):
        _os_call(os.setsid, "setsid")

    def setup_stdio(self, stdin, stdout, stderr):
        # Move the three out of the way first: one of them may already be 0, 1 or 2 and
        # would be clobbered by an earlier dup2.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (stdin, stdout, stderr)]
        for target, fd in enumerate(high):
            os.dup2(fd, target, inheritable=True)
            os.close(fd)

    def setup_terminal(self, console_socket, uid):
        master = _os_call(os.open, "open /dev/ptmx", "/dev/ptmx", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
        try:
            fcntl.ioctl(master, TIOCSPTLCK, struct.pack("i", 0))
            number = struct.unpack("I", fcntl.ioctl(master, TIOCGPTN, b"\0\0\0\0"))[0]
            path = f"/dev/pts/{number}"
            slave = _os_call(os.open, f"open {path}", path, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
            # The slave belongs to the user the program runs as, as a login's tty would.
            os.fchown(slave, uid, -1)
            fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
            send_fd(console_socket, master)
        finally:
            os.close(master)
        for target in (0, 1, 2):
            os.dup2(slave, target, inheritable=True)
        os.close(slave)
        return path

    def loopback_up(self):
        # SIOCGIFFLAGS / SIOCSIFFLAGS on a struct ifreq: 16 bytes of name, then the flags.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        try:
            ifreq = fcntl.ioctl(sock, SIOCGIFFLAGS, struct.pack("16sH22x", b"lo", 0))
            flags = struct.unpack("16sH22x", ifreq)[1]
            fcntl.ioctl(sock, SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | IFF_UP))
        except OSError as e:
            raise SystemFailure(f"set the loopback interface up: {e.strerror}") from e
        finally:
            sock.close()

    def close_fds(self, keep_above_stdio):
        os.closerange(3, keep_above_stdio)
        os.closerange(keep_above_stdio + 1, 1 << 20)

    def execve(self, path, args, env):
        # The program must not inherit the caller's signal dispositions: Python ignores
        # SIGPIPE (and an ignored signal stays ignored across execve), and the supervisor
        # blocks or handles others. Reset them all and unblock, as subprocess's
        # restore_signals and runc do.
        for sig in signal.valid_signals():
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                try:
                    signal.signal(sig, signal.SIG_DFL)
                except (OSError, ValueError):
                    pass
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        os.execve(path, list(args), dict(e.split("=", 1) for e in env if "=" in e))


def _os_call(fn, what, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except OSError as e:
        raise SystemFailure(f"{what}: {e.strerror}") from e


def capget_effective() -> int:
    """The calling process's effective capability mask (used by tests and diagnostics)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def send_fd(sock_fd: int, fd: int, message: bytes = b"pty") -> None:
    """Send one file descriptor over a connected AF_UNIX socket with SCM_RIGHTS."""
    sock = socket.socket(fileno=os.dup(sock_fd))
    try:
        socket.send_fds(sock, [message], [fd])
    finally:
        sock.close()


class RecordingSyscalls(Syscalls):
    """Records every call as a tuple, for tests of the init sequence as values.

    `files` answers `lstat_kind` and `read_text`: path -> "dir" | "file" | "link:<target>", or
    path -> str content for read_text. Paths not listed are "missing". Calls that create files
    (mkdir, touch, mknod, symlink) add them, so later lookups see them, as they would for real.
    """

    def __init__(self, files: dict | None = None, contents: dict | None = None):
        self.calls: list[tuple] = []
        self.files = dict(files or {})
        self.contents = dict(contents or {})

    def _record(self, *call):
        self.calls.append(call)

    def mount(self, source, target, fstype, flags=(), data=""):
        self._record("mount", source, target, fstype, tuple(flags), data)

    def mount_overlay(self, lowerdirs, upperdir, workdir, target, extra=()):
        self._record("mount_overlay", tuple(lowerdirs), upperdir, workdir, target, tuple(extra))

    def umount2(self, target, flags=0):
        self._record("umount2", target, flags)

    def seccomp_load(self, program, flags=0):
        self._record("seccomp_load", len(program) // 8, flags)

    def pivot_root(self, new_root, put_old):
        self._record("pivot_root", new_root, put_old)

    def unshare(self, namespaces):
        self._record("unshare", tuple(namespaces))

    def setns(self, fd, namespace):
        self._record("setns", namespace)

    def sethostname(self, name):
        self._record("sethostname", name)

    def chdir(self, path):
        self._record("chdir", path)

    def mkdir(self, path, mode=0o755):
        self._record("mkdir", path, mode)
        self.files.setdefault(path, "dir")

    def touch(self, path):
        self._record("touch", path)
        self.files.setdefault(path, "file")

    def mknod(self, path, mode, major, minor):
        self._record("mknod", path, mode, major, minor)
        self.files[path] = "file"

    def symlink(self, target, path):
        self._record("symlink", target, path)
        self.files[path] = "link:" + target

    def write_file(self, path, data):
        self._record("write_file", path, data)

    def lstat_kind(self, path):
        return self.files.get(path, "missing")

    def drop_bounding(self, caps):
        self._record("drop_bounding", tuple(caps))

    def capset(self, effective, permitted, inheritable):
        self._record("capset", effective, permitted, inheritable)

    def raise_ambient(self, caps):
        self._record("raise_ambient", tuple(caps))

    def setrlimit(self, name, soft, hard):
        self._record("setrlimit", name, soft, hard)

    def set_no_new_privs(self):
        self._record("set_no_new_privs")

    def setgroups(self, groups):
        self._record("setgroups", tuple(groups))

    def setgid(self, gid):
        self._record("setgid", gid)

    def setuid(self, uid):
        self._record("setuid", uid)

    def read_text(self, path):
        return self.contents.get(path)

    def is_dir(self, path):
        return self.files.get(path) == "dir"

    def executable_status(self, path):
        kind = self.files.get(path, "missing")
        return {"file": "ok", "dir": "dir", "noexec": "denied"}.get(kind, "missing")

    def setsid(self):
        self._record("setsid")

    def setup_stdio(self, stdin, stdout, stderr):
        self._record("setup_stdio", stdin, stdout, stderr)

    def setup_terminal(self, console_socket, uid):
        self._record("setup_terminal", console_socket, uid)
        return "/dev/pts/0"

    def loopback_up(self):
        self._record("loopback_up")

    def close_fds(self, keep_above_stdio):
        self._record("close_fds", keep_above_stdio)

    def execve(self, path, args, env):
        self._record("execve", path, tuple(args), tuple(env))
