"""The container init: what the forked child does between fork and execve, as one straight script.

Everything goes through a `Syscalls` object, so a unit test runs this very code against
`RecordingSyscalls` and compares the ordered list of calls with the expected one. spawn.py
runs it for real in the forked process that is pid 1 of the container's new pid namespace;
by then the intermediate process has joined the cgroup and unshared the namespaces.

The order matters, and each step says why. The sequence follows runc's `rootfs_linux.go` and
youki's `process/init/process.rs` in spirit; the code is orch's own.
"""

import posixpath
from dataclasses import replace

from orch.errors import SystemFailure
from orch.node.runtime import security
from orch.node.runtime.config import ContainerConfig, Process
from orch.node.runtime.kernel import MNT_DETACH, Syscalls, split_overlay_options
from orch.node.runtime.mount import CgroupView, Mount
from orch.node.runtime.users import resolve_user

# The order exec_in joins a running container's namespaces (youki's ORDERED_NAMESPACES, less
# the user namespace orch does not use). The mount namespace comes last: setns into it changes
# our root and cwd; pid only affects children, which is why exec forks after the setns calls.
ORDERED_NAMESPACES = ("pid", "uts", "ipc", "net", "cgroup", "mount")

# Where docker bind-mounts its tiny init (tini) for `--init`.
INIT_PATH = "/sbin/docker-init"

# Device nodes of a minimal /dev: (name, major, minor). All are character devices, mode 0666.
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
DEV_SYMLINKS = (
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
)
S_IFCHR = 0o020000

# Docker's option words for mounts, as mount(2) flags; the rest is fs-specific data.
OPTION_FLAGS = {
    "ro": "MS_RDONLY", "nosuid": "MS_NOSUID", "nodev": "MS_NODEV", "noexec": "MS_NOEXEC",
    "noatime": "MS_NOATIME", "nodiratime": "MS_NODIRATIME", "relatime": "MS_RELATIME",
    "strictatime": "MS_STRICTATIME",
}
PROPAGATION_FLAGS = {
    "private": ("MS_PRIVATE",), "rprivate": ("MS_PRIVATE", "MS_REC"),
    "slave": ("MS_SLAVE",), "rslave": ("MS_SLAVE", "MS_REC"),
    "shared": ("MS_SHARED",), "rshared": ("MS_SHARED", "MS_REC"),
}


class StartError(SystemFailure):
    """A container (or exec) failed before its program ran; `exit_code` is docker's:
    127 the program was not found, 126 it cannot be executed, 125 anything else."""

    def __init__(self, message: str, exit_code: int = 125):
        super().__init__(message)
        self.exit_code = exit_code


def resolve_in_root(root: str, path: str, lstat_kind) -> str:
    """The host path of `path` inside `root`, following symbolic links as the container would.

    Links are resolved component by component, and an absolute link or a ".." restarts from,
    or stops at, the container's root: a link in an image can never send a mount target to the
    host (runc uses filepath-securejoin for the same reason). Missing components are kept as
    they are, so the caller can create them.
    """
    parts = [p for p in path.split("/") if p]
    resolved: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            if resolved:
                resolved.pop()
            continue
        kind = lstat_kind(root + "/" + "/".join(resolved + [part]))
        if kind.startswith("link:"):
            hops += 1
            if hops > 40:
                raise StartError(f"resolve {path} inside {root}: too many levels of symbolic links")
            target = kind[len("link:"):]
            if target.startswith("/"):
                resolved = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        resolved.append(part)
    return root.rstrip("/") + "/" + "/".join(resolved) if resolved else root.rstrip("/")


def split_mount_options(options) -> tuple[tuple[str, ...], tuple[str, ...], str]:
    """(mount flags, propagation flags, data) from docker-style options ("ro", "rprivate", "size=64m")."""
    flags: list[str] = []
    propagation: tuple[str, ...] = ()
    data: list[str] = []
    for option in options:
        if option in OPTION_FLAGS:
            flags.append(OPTION_FLAGS[option])
        elif option in PROPAGATION_FLAGS:
            propagation = PROPAGATION_FLAGS[option]
        elif option in ("bind", "rbind", "rw"):
            continue
        else:
            data.append(option)
    return tuple(flags), propagation, ",".join(data)


def mount_rootfs(sys: Syscalls, config: ContainerConfig) -> None:
    """Mount the image's file system on config.rootfs (the store's overlay, or a bind)."""
    root = config.rootfs
    sys.mkdir(root)
    for m in config.rootfs_mounts:
        if m.type == "overlay":
            lowers, upper, work, rest = split_overlay_options(m.options)
            # The new mount API: one `lowerdir+` per layer, so 200+ layers still mount.
            sys.mount_overlay(lowers, upper, work, root, tuple(rest))
        else:
            flags, _, data = split_mount_options(m.options)
            sys.mount(m.source, root, m.type, ("MS_BIND", "MS_REC") if m.type == "bind" else flags, data)
    if not config.rootfs_mounts:
        # pivot_root wants the new root to be a mount point: a plain directory is bound onto itself.
        sys.mount(root, root, "bind", ("MS_BIND", "MS_REC"))


def mount_system(sys: Syscalls, config: ContainerConfig, cgroup_view: CgroupView) -> None:
    """/proc, a minimal /dev, /sys with the container's cgroups: the kernel interfaces a program expects."""
    root = config.rootfs
    # A new proc instance: it shows the new pid namespace, so `ps` sees only the container.
    sys.mkdir(root + "/proc")
    sys.mount("proc", root + "/proc", "proc", ("MS_NOSUID", "MS_NOEXEC", "MS_NODEV"))

    # /dev is a small tmpfs with device nodes made here, never the host's /dev.
    dev = root + "/dev"
    sys.mkdir(dev)
    sys.mount("tmpfs", dev, "tmpfs", ("MS_NOSUID", "MS_STRICTATIME"), "mode=755,size=65536k")
    for name, major, minor in DEVICES:
        sys.mknod(f"{dev}/{name}", S_IFCHR | 0o666, major, minor)
    for target, name in DEV_SYMLINKS:
        sys.symlink(target, f"{dev}/{name}")
    # Our own devpts instance: ptys made in the container are invisible to the host and to
    # other containers; /dev/ptmx points at its ptmx.
    sys.mkdir(dev + "/pts")
    sys.mount("devpts", dev + "/pts", "devpts", ("MS_NOSUID", "MS_NOEXEC"), "newinstance,ptmxmode=0666,mode=0620,gid=5")
    sys.mkdir(dev + "/shm")
    sys.mount("shm", dev + "/shm", "tmpfs", ("MS_NOSUID", "MS_NOEXEC", "MS_NODEV"), "mode=1777,size=65536k")
    sys.mkdir(dev + "/mqueue")
    sys.mount("mqueue", dev + "/mqueue", "mqueue", ("MS_NOSUID", "MS_NOEXEC", "MS_NODEV"))

    # /sys: a new sysfs instance in every mode, never a bind of the host's, whose submounts
    # (the host's cgroup hierarchies, with their release_agent files) would come along. A new
    # instance shows the devices of the network namespace we are in, the host's with
    # `--network host`, which is what docker shows there too.
    # Every mount under /sys is read-only: the new sysfs has no submount but the ones made
    # here, and each is made read-only (mount_cgroups). mount_setattr(AT_RECURSIVE) would say
    # the same in one call, but it costs ~160 us here even for a single mount, against ~12 us
    # for the one remount below; the isolation tests check every /sys mount of a container.
    sys.mkdir(root + "/sys")
    sys.mount("sysfs", root + "/sys", "sysfs", ("MS_NOSUID", "MS_NOEXEC", "MS_NODEV", "MS_RDONLY"))
    mount_cgroups(sys, root, cgroup_view if "cgroup" in config.namespaces else CgroupView.empty())


def mount_cgroups(sys: Syscalls, root: str, view: CgroupView) -> None:
    """The container's own cgroups at /sys/fs/cgroup, read-only (docker's `cgroupns=private`):
    the container is in a cgroup namespace whose root is its own group, so a cgroup file
    system mounted now shows that group as its root, and nothing above or beside it. On v1 a
    tmpfs holds one mount per hierarchy the container joined (cgroups.py joins every one the
    node has, so no hierarchy's root, nor its release_agent, can be mounted from inside); it
    turns read-only once its directories and links are made."""
    flags = ("MS_NOSUID", "MS_NOEXEC", "MS_NODEV")
    holder = None
    for m in view.mounts:
        target = root + m.target
        sys.mkdir(target)
        if m.type == "tmpfs":
            holder = target
            sys.mount(m.source, target, m.type, flags, ",".join(m.options))
        else:
            # MS_RDONLY makes this mount read-only; the hierarchy's superblock stays as the host has it.
            sys.mount(m.source, target, m.type, (*flags, "MS_RDONLY"), ",".join(m.options))
    for link, target in view.links:
        sys.symlink(target, root + link)
    if holder is not None:
        sys.mount(holder, holder, "tmpfs", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY", *flags))


def mount_user_mounts(sys: Syscalls, config: ContainerConfig, init_binary: str | None) -> None:
    """Binds, tmpfs and volumes the user asked for; targets resolved inside the root."""
    root = config.rootfs
    mounts = list(config.mounts)
    if config.init and init_binary:
        mounts.append(_init_mount(init_binary))
    # Parents before children, so /data/x is not hidden by a later mount on /data (docker
    # sorts by the number of path components the same way).
    mounts.sort(key=lambda m: len([p for p in m.target.split("/") if p]))
    for m in mounts:
        target = resolve_in_root(root, m.target, sys.lstat_kind)
        flags, propagation, data = split_mount_options(m.options)
        if m.type == "bind":
            if sys.is_dir(m.source):
                sys.mkdir(target)
            else:
                sys.mkdir(posixpath.dirname(target))
                sys.touch(target)
            recursive = ("MS_REC",) if "bind" not in m.options else ()
            sys.mount(m.source, target, "bind", ("MS_BIND", *recursive))
            # MS_BIND ignores the other flags; a remount applies ro/nosuid/... to the new mount.
            if flags:
                sys.mount(m.source, target, "bind", ("MS_BIND", "MS_REMOUNT", *flags))
        else:
            sys.mkdir(target)
            sys.mount(m.source or m.type, target, m.type, flags, data)
        if propagation:
            sys.mount("", target, "", propagation)


def _init_mount(init_binary: str) -> Mount:
    return Mount("bind", init_binary, INIT_PATH, ("bind", "ro"))


def pivot(sys: Syscalls, root: str) -> None:
    """Make `root` the container's /, and drop every view of the host's file system.

    pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then
    removes it (runc's trick: no put_old directory needed in the image). The old root is made
    a slave first so the detach cannot propagate to the host.
    """
    sys.chdir(root)
    sys.pivot_root(".", ".")
    sys.mount("", ".", "", ("MS_SLAVE", "MS_REC"))
    sys.umount2(".", MNT_DETACH)
    sys.chdir("/")


def harden(sys: Syscalls, config: ContainerConfig) -> None:
    """Hostname, sysctls, then docker's masked and read-only paths, then a read-only root."""
    if "uts" in config.namespaces and config.hostname:
        sys.sethostname(config.hostname)
    # Sysctls are written before /proc/sys becomes read-only below.
    security.apply_sysctls(sys, config.sysctls)
    for path in config.masked_paths:
        kind = sys.lstat_kind(path)
        if kind == "missing":
            continue
        if kind == "dir":
            sys.mount("tmpfs", path, "tmpfs", ("MS_RDONLY",))
        else:
            sys.mount("/dev/null", path, "bind", ("MS_BIND",))
    for path in config.readonly_paths:
        if sys.lstat_kind(path) == "missing":
            continue
        sys.mount(path, path, "bind", ("MS_BIND", "MS_REC"))
        sys.mount(path, path, "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY", "MS_NOSUID", "MS_NOEXEC", "MS_NODEV"))
    if config.readonly_rootfs:
        security.apply_readonly_rootfs(sys)


def find_executable(sys: Syscalls, name: str, env) -> str:
    """Go's exec.LookPath, inside the container: a name with a "/" is used as is, else PATH."""
    if "/" in name:
        status = sys.executable_status(name)
        if status == "ok":
            return name
        if status == "missing":
            raise StartError(f'exec: "{name}": stat {name}: no such file or directory', 127)
        raise StartError(f'exec: "{name}": permission denied', 126)
    path = next((e[5:] for e in env if e.startswith("PATH=")), "")
    for directory in path.split(":"):
        candidate = posixpath.join(directory or ".", name)
        if sys.executable_status(candidate) == "ok":
            return candidate
    raise StartError(f'exec: "{name}": executable file not found in $PATH', 127)


def exec_process(sys: Syscalls, process: Process, stdio: tuple[int, int, int], console_socket: int | None,
                 error_fd: int, last_cap: int, bind_console: bool = False, seccomp: tuple[bytes, int] | None = None) -> None:
    """Become the container's program: user, terminal, capabilities, seccomp, then execve.

    Shared by the container's pid 1 and by exec_in; the mount namespace is already the
    container's, so /etc/passwd and PATH are looked up inside it. `seccomp` is the compiled
    filter (seccomp.program_for) and its flags, or None for an unconfined process.
    """
    user = resolve_user(process.user, process.additional_groups, sys.read_text("/etc/passwd"), sys.read_text("/etc/group"))
    env = list(process.env)
    if not any(e.startswith("HOME=") for e in env):
        env.append("HOME=" + user.home)
    # A new session: the program does not get the caller's terminal signals, and with a pty
    # it can take the pty as its controlling terminal.
    sys.setsid()
    if process.terminal:
        if console_socket is None:
            raise StartError("terminal requested but no console socket given")
        slave = sys.setup_terminal(console_socket, user.uid)
        if bind_console:
            # The container's /dev/console is its terminal, as runc makes it.
            sys.touch("/dev/console")
            sys.mount(slave, "/dev/console", "bind", ("MS_BIND",))
    else:
        sys.setup_stdio(*stdio)

    # Limits while we are still root with every capability the node has (security.py).
    security.apply_rlimits(sys, process.rlimits)

    def switch_user():
        sys.setgroups(user.groups)
        sys.setgid(user.gid)
        sys.setuid(user.uid)

    # Capabilities (security.py): the bounding set limits what any descendant can ever regain
    # (even via a setuid binary); then the user; then docker's sets for that user.
    sets = security.compute_capability_sets(process.capabilities, uid=user.uid, last_cap=last_cap)
    # Seccomp, in runc's two orders: without no_new_privs the kernel takes a filter only from
    # a process holding CAP_SYS_ADMIN, so it goes in before the capabilities are dropped (and
    # the profile allows what follows: prctl, setgroups, setresuid, capset, close_range);
    # with no_new_privs, as late as possible, so the program's own syscalls are all it sees.
    early = seccomp is not None and not process.no_new_privileges
    if early:
        sys.seccomp_load(*seccomp)
    security.apply_capabilities(sys, sets, last_cap, switch_user)
    if process.no_new_privileges:
        sys.set_no_new_privs()

    sys.close_fds(error_fd)
    sys.chdir(process.cwd)
    path = find_executable(sys, process.args[0], env)
    if seccomp is not None and not early:
        sys.seccomp_load(*seccomp)
    sys.execve(path, process.args, env)


def run(sys: Syscalls, config: ContainerConfig, stdio: tuple[int, int, int], console_socket: int | None,
        error_fd: int, last_cap: int, init_binary: str | None = None, *, cgroup_view: CgroupView | None = None,
        seccomp: tuple[bytes, int] | None = None) -> None:
    """pid 1's whole sequence, from a fresh mount namespace to execve of the program.

    `cgroup_view` is what to mount at /sys/fs/cgroup (Cgroups.view()); `seccomp` the compiled
    filter (seccomp.program_for), None for an unconfined container."""
    # 1. Nothing we mount may propagate back to the host: the new mount namespace starts as a
    #    copy of the host's, with the host's shared peer groups; make it a slave recursively.
    sys.mount("", "/", "", ("MS_SLAVE", "MS_REC"))
    # 2. The root file system, then the kernel's interfaces, then the user's mounts, all on
    #    host paths under config.rootfs, still before pivot_root.
    mount_rootfs(sys, config)
    mount_system(sys, config, cgroup_view or CgroupView.empty())
    mount_user_mounts(sys, config, init_binary)
    # docker creates a missing working directory; resolved inside the root like a mount target.
    if config.process.cwd.strip("/"):
        sys.mkdir(resolve_in_root(config.rootfs, config.process.cwd, sys.lstat_kind))
    # 3. Enter the root: after this, nothing of the host's file system is reachable.
    pivot(sys, config.rootfs)
    # 4. A network namespace of our own starts with `lo` down; docker's `--network none` has
    #    it up. A prepared one (netns_path) is the network code's to configure.
    if "net" in config.namespaces and not config.netns_path:
        sys.loopback_up()
    # 5. Hostname, sysctls, masked and read-only paths.
    harden(sys, config)
    process = config.process
    if config.init:
        # tini as pid 1 forwards signals to the program and reaps orphans (docker --init).
        process = replace(process, args=(INIT_PATH, "--", *process.args))
    exec_process(sys, process, stdio, console_socket, error_fd, last_cap, bind_console=True, seccomp=seccomp)
