"""What the supervisor runs containers with: the real runtime, or plain host processes.

Both have the same small surface, which is all the supervisor's loop needs:
`load(config_path)`, `terminal(config)`, `start(config, stdin, stdout, stderr, console)`,
`exec_in(pid1, config, process_json, ...)`, `oom_killed(config)`, `cleanup(config)`.
`start` and `exec_in` return a pid only once the program has been exec'd; with `console` (a
connected unix socket fd) they send a pty master over it, as runc's --console-socket does.
"""

import os
import signal
import socket
import sys
import time

from orch.errors import OrchError


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
