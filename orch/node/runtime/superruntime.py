"""What the supervisor runs containers with: the real runtime, or plain host processes.

Both have the same small surface, which is all the supervisor's loop needs:
`load(config_path)`, `terminal(config)`, `start(config, stdin, stdout, stderr, console)`,
`exec_in(pid1, config, process_json, ...)`, `oom_killed(config)`, `cleanup(config)`,
`start_time(pid)`, `adopt(config, pid, pid_start)` (a running pid 1 a previous supervisor
started, as (pid, pidfd, start time)) and `kill_cgroup(config)`.
`start` and `exec_in` return a pid only once the program has been exec'd; with `console` (a
connected unix socket fd) they send a pty master over it, as runc's --console-socket does.
"""

import os
import signal
import socket
import sys
import time

from orch.errors import NotFound, OrchError


def start_time(pid: int) -> int | None:
    """A process's start time in clock ticks after boot (field 22 of /proc/PID/stat): with
    the pid, it names one process for good, as a pid alone does not once it is reused."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count from the last ")".
    return int(stat[stat.rindex(b")") + 2:].split()[19])


def pin(pid: int, expected_start: int | None, still_ours) -> tuple[int, int] | None:
    """(pidfd, start time) for `pid` if it is the process we mean: its start time matches
    (when one was recorded) and, checked after the pidfd pins it, `still_ours(pid)` holds."""
    start = start_time(pid)
    if start is None or (expected_start is not None and start != expected_start):
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    if start_time(pid) == start and still_ours(pid):
        return pidfd, start
    os.close(pidfd)
    return None


class HostRuntime:
    """Plain host processes, for tests of the loop: `config` is a JSON file with "args",
    optional "env", "cwd", "terminal"; no namespaces, no cgroup."""

    def load(self, path):
        import json

        with open(path) as f:
            return json.load(f)

    def terminal(self, config):
        return bool(config.get("terminal"))

    def start(self, config, stdin=None, stdout=None, stderr=None, console=None):
        return self._fork(config["args"], config.get("env"), config.get("cwd"), stdin, stdout, stderr, console)

    def exec_in(self, pid1, config, process, stdin=None, stdout=None, stderr=None, console=None):
        return self._fork(process["args"], process.get("env"), process.get("cwd"), stdin, stdout, stderr, console)

    def oom_killed(self, config):
        return False

    def cleanup(self, config):
        pass

    def start_time(self, pid):
        return start_time(pid)

    def adopt(self, config, pid, pid_start):
        pinned = pin(pid, pid_start, lambda _: True) if pid else None
        if pinned is None:
            raise NotFound(f"process {pid} is gone")
        return pid, pinned[0], pinned[1]

    def kill_cgroup(self, config):
        return False

    @staticmethod
    def _fork(args, env, cwd, stdin, stdout, stderr, console):
        master = slave = None
        if console is not None:
            master, slave = os.openpty()
            stdin = stdout = stderr = slave
        # A close-on-exec pipe tells the parent when the child has exec'd, so that start()
        # returns, like the real runtime's, only once the program runs.
        ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
        pid = os.fork()
        if pid == 0:  # the child: only async-signal-safe work, then execve
            os.close(ready_r)
            try:
                if console is not None:
                    os.setsid()
                    import fcntl
                    import termios

                    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
                null = os.open("/dev/null", os.O_RDWR)
                for i, fd in enumerate((stdin, stdout, stderr)):
                    os.dup2(null if fd is None else fd, i)
                if cwd:
                    os.chdir(cwd)
                os.execvpe(args[0], args, dict(e.split("=", 1) for e in env) if env else os.environ)
            except BaseException:
                os._exit(127)
        os.close(ready_w)
        os.read(ready_r, 1)
        os.close(ready_r)
        if console is not None:
            socket.send_fds(socket.socket(fileno=os.dup(console)), [b"m"], [master])
            os.close(master)
            os.close(slave)
        return pid


class KernelRuntime:
    """The real thing: the config, spawn and cgroups modules, imported once, up front."""

    def __init__(self):
        from orch.node.runtime import cgroups, config, spawn

        self.config_mod, self.spawn_mod = config, spawn
        self.cgroups = cgroups.Cgroups()

    def load(self, path):
        with open(path) as f:
            import json

            return self.config_mod.ContainerConfig.from_json(json.load(f))

    def terminal(self, config):
        return bool(config.process.terminal)

    def start(self, config, stdin=None, stdout=None, stderr=None, console=None):
        return self.spawn_mod.start(config, self.spawn_mod.Stdio(stdin, stdout, stderr, console), self.cgroups)

    def exec_in(self, pid1, config, process, stdin=None, stdout=None, stderr=None, console=None):
        proc = self.config_mod.Process.from_json(process)
        return self.spawn_mod.exec_in(pid1, config, proc, self.spawn_mod.Stdio(stdin, stdout, stderr, console), self.cgroups)

    def oom_killed(self, config):
        try:
            return bool(self.cgroups.oom_killed(config.cgroup_path))
        except OSError:
            return False

    def warm(self):
        """At the supervisor's start: its own leaf in a hybrid host's v2 hierarchy, which its
        containers inherit (Cgroups.settle); and docker's seccomp profile compiled for the
        default capabilities, so that the node's first container does not wait for it (~20 ms)."""
        from orch import paths
        from orch.node.runtime import seccompbpf as seccomp
        from orch.node.runtime.cgroups import node_cgroup_parent

        try:
            self.cgroups.settle(f"{node_cgroup_parent(paths.root())}/supervisor")
        except OrchError as err:
            print(f"supervisor: {err}", file=sys.stderr, flush=True)

        try:
            seccomp.program_for(seccomp.DEFAULT, self.config_mod.DEFAULT_CAPABILITIES)
        except OrchError as err:
            print(f"supervisor: seccomp: {err}", file=sys.stderr, flush=True)

    def start_time(self, pid):
        return start_time(pid)

    def adopt(self, config, pid, pid_start):
        """The container's pid 1, found through its cgroup: the recorded pid if it is still
        there with its recorded start time, else the process whose pid in its own namespace
        is 1. A container whose cgroup is empty has its cgroup removed and is NotFound."""
        path = config.cgroup_path
        procs = self.cgroups.pids(path)
        if not procs:
            self.cleanup(config)
            raise NotFound(f"container {config.id[:12]} has no process left in its cgroup {path}")
        candidates = [pid] if pid in procs else [p for p in procs if _innermost_pid(p) == 1]
        for candidate in candidates:
            pinned = pin(candidate, pid_start if candidate == pid else None, lambda p: p in self.cgroups.pids(path))
            if pinned is not None:
                return candidate, pinned[0], pinned[1]
        raise NotFound(f"container {config.id[:12]}: processes {procs[:5]} remain in its cgroup {path} but none is its pid 1; "
                       "remove it with 'orch rm -f', which kills them")

    def kill_cgroup(self, config):
        """SIGKILL every process in the container's cgroup (freeze, kill, thaw; cgroup.kill on
        v2), then remove the group. Whether there was any."""
        if not self.cgroups.pids(config.cgroup_path):
            return False
        self.cleanup(config)
        return True

    def cleanup(self, config):
        # Usually the group is empty: pid 1's death ended its pid namespace, and with it
        # every process in it. Then the directories just go.
        try:
            self.cgroups.remove(config.cgroup_path, timeout=0)
            return
        except OrchError:
            pass
        # Stragglers (an exec'd process in a container without its own pid namespace) would
        # keep the cgroup busy; kill them, then remove it, retrying briefly.
        for _ in range(50):
            try:
                self.cgroups.kill_all(config.cgroup_path, signal.SIGKILL)
                self.cgroups.remove(config.cgroup_path)
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.01)
        print(f"supervisor: cannot remove cgroup {config.cgroup_path}", file=sys.stderr, flush=True)


def _innermost_pid(pid: int) -> int | None:
    """The pid of `pid` in its own pid namespace (the last NSpid field of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        return None
    return None
