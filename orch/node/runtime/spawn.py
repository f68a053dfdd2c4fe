"""Start a container, or a new process in a running one: fork, set up, execve, report.

`start(config, stdio) -> host pid` and `exec_in(pid1, config, process, stdio) -> host pid`.
Both are called from a single-threaded process (the node supervisor, a fork server: this
module and the init code are imported once, so a container costs two forks and no
interpreter start) that is a child subreaper and reaps the returned pid itself.

The process tree of a start is one fork (a fork of a Python process costs about 1 ms here,
so the hot path has one):

    caller: unshare(CLONE_NEWPID) ── fork ──▶ pid 1: join cgroup, unshare the other
            setns(own pid namespace)           namespaces, init.run, execve

unshare(CLONE_NEWPID) changes only where the caller's *next children* go, so the caller (the
supervisor, single-threaded) unshares, forks pid 1 straight into the new namespace, and at
once points its children back at its own pid namespace with setns, a cheap pointer swap.
The child joins its cgroup before it unshares the cgroup namespace, so the group is its root.

exec_in keeps an intermediate process: it must setns into the container's mount namespace,
which the caller itself must never do.

exec_in's process is a child of the caller too, not of pid 1, though it lives in pid 1's pid
namespace. The kernel completes pid 1's death only once every process of the namespace is
reaped, so the caller must keep reaping all its children (waitpid(-1) in its subreaper loop);
waiting for pid 1 alone while an exec'd process is a zombie would wait forever.

Failures before execve travel back over an O_CLOEXEC error pipe: a successful execve closes
the pipe with nothing written, so an empty read means the program runs. Otherwise the child
writes one JSON line {"message", "exit_code"} and exits; start() raises StartError with it.
"""

import gc
import json
import os
from dataclasses import dataclass

from orch.errors import Conflict, InvalidArgument, OrchError
from orch.node.runtime import init
from orch.node.runtime import seccompbpf as seccomp
from orch.node.runtime.cgroups import Cgroups
from orch.node.runtime.config import ContainerConfig, Process, check_sysctls
from orch.node.runtime.init import ORDERED_NAMESPACES, StartError
from orch.node.runtime.kernel import NS_FILES, LinuxSyscalls

# `init: true` (docker's --init): like docker, bind-mount a tiny init at /sbin/docker-init and
# run it as pid 1 with the program as its child; it forwards signals and reaps orphans. The
# init is Debian's tini, static build (package `tini`, /usr/bin/tini-static), so it works in
# any image, even one without a libc. Measured here: 700 kB RSS, 56 kB of it anonymous, beside
# a Python init's ~8 MB; no Python interpreter stays per container.
INIT_BINARIES = ("/usr/bin/tini-static", "/usr/libexec/docker/docker-init", "/usr/bin/docker-init")


@dataclass
class Stdio:
    stdin: int | None = None
    stdout: int | None = None
    stderr: int | None = None
    console_socket: int | None = None


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    global _last_cap
    if _last_cap is None:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            _last_cap = int(f.read())
    return _last_cap


_kernel_namespaces: frozenset | None = None


def kernel_namespaces() -> frozenset:
    """The namespace types this kernel has (a file per type in /proc/self/ns)."""
    global _kernel_namespaces
    if _kernel_namespaces is None:
        present = set(os.listdir("/proc/self/ns"))
        _kernel_namespaces = frozenset(ns for ns, name in NS_FILES.items() if name in present)
    return _kernel_namespaces


def find_init_binary() -> str:
    for path in INIT_BINARIES:
        if os.path.exists(path):
            return path
    raise StartError("init: true needs a static tini on the node: apt-get install tini (it provides /usr/bin/tini-static)")


def start(config: ContainerConfig, stdio: Stdio, cgroups: Cgroups | None = None) -> int:
    """Create and start the container; return the host pid of its pid 1 once execve succeeded."""
    check_sysctls(config)
    _check_terminal(config.process, stdio)
    cgroups = cgroups or Cgroups()
    init_binary = find_init_binary() if config.init else None
    cap = last_cap()
    kernel_namespaces()  # read once here, not in every child
    # Compiled once per profile and capability set, then reused (seccomp.py).
    program = seccomp.program_for(config.seccomp, config.process.capabilities)
    cgroups.view()  # computed here once, not in every child
    check_not_running(config, cgroups)
    try:
        cgroups.create(config.cgroup_path, config.resources)  # a limit the kernel refuses leaves dirs made
        return _fork_pid1(config, cgroups, stdio, cap, init_binary, program)
    except BaseException:
        cgroups.remove(config.cgroup_path)
        raise


def check_not_running(config: ContainerConfig, cgroups: Cgroups) -> None:
    """Refuse to start a container whose cgroup still holds processes: a supervisor that was
    killed left them running, and a second copy beside them (two writers on one volume) is
    the one thing a restart must never make."""
    left = cgroups.pids(config.cgroup_path)
    if left:
        raise Conflict(f"container {config.id[:12]} still has {len(left)} live process(es) in its cgroup {config.cgroup_path} "
                       f"(pids {', '.join(map(str, left[:5]))}); it was not started again. Stop it with 'orch rm -f' or 'orch kill'")


_own_pid_namespace: int | None = None


def _fork_pid1(config: ContainerConfig, cgroups: Cgroups, stdio: Stdio, cap: int, init_binary: str | None, program) -> int:
    """Fork the container's pid 1 (into a new pid namespace when the config has one) and wait
    for its execve or its error; return its host pid."""
    global _own_pid_namespace
    what = f"start container {config.id}"
    new_pid_ns = "pid" in config.namespaces
    if new_pid_ns and _own_pid_namespace is None:
        _own_pid_namespace = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    fds = tuple(devnull if fd is None else fd for fd in (stdio.stdin, stdio.stdout, stdio.stderr))
    sys = LinuxSyscalls()
    try:
        if new_pid_ns:
            sys.unshare(("pid",))
        try:
            pid = os.fork()
            if pid == 0:  # pid 1; never returns (execve, or os._exit after reporting)
                os.close(error_r)
                _be_child(lambda: _pid1(sys, config, cgroups, fds, stdio.console_socket, error_w, cap, init_binary, program), error_w)
        finally:
            if new_pid_ns:
                sys.setns(_own_pid_namespace, "pid")  # our later children stay in our namespace
    except BaseException:
        os.close(error_r)
        raise
    finally:
        os.close(error_w)
        os.close(devnull)
    try:
        error = _read_all(error_r)  # empty: execve closed the pipe (O_CLOEXEC); the program runs
    finally:
        os.close(error_r)
    if error:
        _reap(pid)
        raise _start_error(error, what)
    return pid


def _pid1(sys, config, cgroups, fds, console_socket, error_fd, cap, init_binary, program) -> None:
    """In the forked pid 1: the cgroup (so every process the container will ever have is
    accounted), then the namespaces other than pid, then the init sequence to execve."""
    cgroups.join(config.cgroup_path)
    # With netns_path we join a prepared network namespace instead of making one; a namespace
    # type this kernel lacks (cgroup before 4.6) is left out, as runc does.
    fresh = tuple(ns for ns in config.namespaces
                  if ns != "pid" and not (ns == "net" and config.netns_path) and ns in kernel_namespaces())
    sys.unshare(fresh)
    if config.netns_path:
        fd = os.open(config.netns_path, os.O_RDONLY | os.O_CLOEXEC)
        sys.setns(fd, "net")
        os.close(fd)
    init.run(sys, config, fds, console_socket, error_fd, cap, init_binary, cgroup_view=cgroups.view(), seccomp=program)


def exec_in(pid1: int, config: ContainerConfig, process: Process, stdio: Stdio, cgroups: Cgroups | None = None) -> int:
    """Run `process` in the namespaces and cgroup of the container whose pid 1 is `pid1`."""
    _check_terminal(process, stdio)
    cgroups = cgroups or Cgroups()
    # Joining a frozen cgroup would freeze the new process before it could report back.
    if cgroups.is_frozen(config.cgroup_path):
        raise Conflict(f"container {config.id} is paused; unpause it before exec")
    cap = last_cap()
    program = seccomp.program_for(config.seccomp, process.capabilities)
    namespaces = [ns for ns in ORDERED_NAMESPACES if ns in config.namespaces or (ns == "net" and config.netns_path)]
    ns_fds = []
    try:
        for ns in namespaces:
            try:
                ns_fds.append((ns, os.open(f"/proc/{pid1}/ns/{NS_FILES[ns]}", os.O_RDONLY | os.O_CLOEXEC)))
            except OSError as e:
                raise StartError(f"exec in container {config.id}: open the {ns} namespace of pid {pid1}: {e.strerror}; is the container running?") from e
        return _fork_and_wait(
            lambda error_fd, fds: _exec_child(config, process, cgroups, ns_fds, fds, stdio.console_socket, error_fd, cap, program),
            stdio, f"exec in container {config.id}",
        )
    finally:
        for _, fd in ns_fds:
            os.close(fd)


def _check_terminal(process: Process, stdio: Stdio) -> None:
    if process.terminal and stdio.console_socket is None:
        raise InvalidArgument("a terminal was requested but no console socket was given to receive the pty")


def _fork_and_wait(child, stdio: Stdio, what: str) -> int:
    """Fork the intermediate, run `child` in it, and wait for pid 1's execve or its error."""
    error_r, error_w = os.pipe2(os.O_CLOEXEC)
    pid_r, pid_w = os.pipe2(os.O_CLOEXEC)
    devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
    fds = tuple(devnull if fd is None else fd for fd in (stdio.stdin, stdio.stdout, stdio.stderr))
    intermediate = os.fork()
    if intermediate == 0:
        # The intermediate and pid 1 never return into the caller's code: any failure is
        # reported over the error pipe and ends the process with os._exit.
        code = 125
        try:
            os.close(error_r)
            os.close(pid_r)
            grandchild = child(error_w, fds)
            os.write(pid_w, str(grandchild).encode())
            code = 0
        except BaseException as e:  # noqa: BLE001 - everything must reach the parent
            _report(error_w, e)
        finally:
            os._exit(code)
    os.close(error_w)
    os.close(pid_w)
    os.close(devnull)
    try:
        # One short write by the intermediate just before it exits; pid 1 holds a copy of
        # the write end until its execve, so this must not wait for EOF.
        pid_text = os.read(pid_r, 64)
        try:
            _, status = os.waitpid(intermediate, 0)
        except ChildProcessError:
            status = 0  # a SIGCHLD handler of the caller's reaped it first; the pipes still tell
        error = _read_all(error_r)
    finally:
        os.close(pid_r)
        os.close(error_r)
    pid = int(pid_text) if pid_text else 0
    if error:
        if pid:
            _reap(pid)
        raise _start_error(error, what)
    if not pid:
        raise StartError(f"{what}: the setup process died ({_describe(status)}) before starting the program")
    return pid


def _start_error(error: bytes, what: str) -> StartError:
    """The StartError a child reported over the error pipe (one JSON line, see _report)."""
    try:
        data = json.loads(error)
        return StartError(f"{what}: {data['message']}", int(data.get("exit_code", 125)))
    except (ValueError, KeyError):
        return StartError(f"{what}: {error.decode(errors='replace').strip()}")


def _exec_child(config, process, cgroups, ns_fds, fds, console_socket, error_fd, cap, program) -> int:
    """In the intermediate of an exec: cgroup, then the container's namespaces, then fork."""
    cgroups.join(config.cgroup_path)
    sys = LinuxSyscalls()
    for ns, fd in ns_fds:
        sys.setns(fd, ns)
    pid = os.fork()
    if pid == 0:
        _be_child(lambda: init.exec_process(sys, process, fds, console_socket, error_fd, cap, seccomp=program), error_fd)
    return pid


def _be_child(body, error_fd: int) -> None:
    # No garbage collection between fork and execve: a collection walks every object the
    # supervisor has, and each page it touches is copied (copy on write) for nothing.
    gc.disable()
    code = 125
    try:
        body()  # ends in execve; returning means something is wrong
        raise StartError("execve returned")
    except BaseException as e:  # noqa: BLE001
        code = _report(error_fd, e)
    finally:
        os._exit(code)


def _report(error_fd: int, e: BaseException) -> int:
    if isinstance(e, StartError):
        message, code = e.message, e.exit_code
    elif isinstance(e, OrchError):
        message, code = e.message, 125
    elif isinstance(e, OSError):
        code = 127 if e.errno == 2 else 126 if e.errno in (1, 8, 13) else 125
        message = f"{e.strerror}{': ' + e.filename if e.filename else ''}"
    else:
        message, code = f"{type(e).__name__}: {e}", 125
    try:
        os.write(error_fd, json.dumps({"message": message, "exit_code": code}).encode())
    except OSError:
        pass
    return code


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # not our child: the caller is not a subreaper, and init will reap it


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"
