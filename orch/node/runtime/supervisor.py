"""The node supervisor: one long-lived, single-threaded process that parents every container.

Why a separate process: exit codes go to a process's parent, and log pipes die with their
reader. If the agent (a trio process with worker threads) were the parent, `kill -9` of the
agent would lose both, and forking a multi-threaded process is unsafe. So the agent starts
this supervisor once per node (setsid, so it outlives agent restarts); it is a child subreaper
(PR_SET_CHILD_SUBREAPER) and a fork server: the runtime's spawn code is imported once, and
each container costs a fork, not an interpreter start. Its children `execve` the user's
program, so no Python stays behind per container; what the supervisor keeps per container is
a small record and two pipes (or a pty master).

The loop is `selectors` over: the listening socket, client connections (SEQPACKET, JSON and
SCM_RIGHTS, see superproto.py), the containers' output pipes or pty masters, attached
clients' terminals, and a self-pipe woken by SIGCHLD. It writes each container's log in
docker's json-file format (rotated, see containerlog.py) and tees it to attached clients. When
a container's pid 1 is reaped it drains the pipes, writes ORCH_ROOT/containers/<id>/exit.json
atomically, removes the cgroup, and only then tells attached clients and subscribers.

The kernel side (config loading, spawn, exec, cgroups) is behind a small runtime object
(superruntime.py) so the loop can be tested with plain host processes (`HostRuntime`).

A supervisor that dies (`kill -9`) leaves its containers running: their pid 1 is reparented to
the host's init, which gets their exit status. The next supervisor adopts them when the agent
asks (`adopt`): it finds pid 1 in the container's cgroup, checks its start time against the
one recorded at start, and watches it with a pidfd, which polls readable when the process
exits. Not being its parent, it cannot learn the exit status: it reports 255, as dockerd does
for a status containerd could not get. The output pipes would die with the supervisor (and a
container writing to a pipe without a reader gets SIGPIPE), so the supervisor hands the agent
a copy of each container's read ends, pty master and held stdin with the `started` event (and
again to an agent that subscribes later); the agent gives them back with `adopt`. Output
written meanwhile waits in the pipe (64 KiB, then the writer blocks, as docker's containers
block on their fifo while dockerd is away); output a client was attached to is not replayed.
"""

import os
import selectors
import signal
import socket
import stat
import sys
import time

from orch import paths
from orch.errors import Conflict, InvalidArgument, NotFound, OrchError, SystemFailure
from orch.atomic import write_json_atomic
from orch.node.runtime import superproto as proto
from orch.node.runtime.containerlog import LogWriter, rfc3339_nano

TIOCSWINSZ = 0x5414


class Target:
    """A running process the supervisor parents: a container's pid 1 or an exec'd process."""

    __slots__ = ("id", "pid", "config", "dir", "started_at", "log", "outputs", "master", "clients", "tty_in", "exec_of", "execs", "held",
                 "pidfd", "pid_start")

    def __init__(self, id, pid, config, dir, log, exec_of=None):
        self.id, self.pid, self.config, self.dir, self.log, self.exec_of = id, pid, config, dir, log, exec_of
        self.started_at = rfc3339_nano()
        self.pidfd: int | None = None  # an adopted pid 1, which is not our child
        self.pid_start: int | None = None  # its start time in clock ticks after boot (/proc/PID/stat)
        self.outputs: dict[int, str] = {}  # our read end -> "stdout" | "stderr"
        self.master: int | None = None  # pty master, for terminal processes
        self.clients: list["Conn"] = []  # attached connections, told the exit code
        self.tty_in: int | None = None  # the attached client's terminal we read from
        self.execs: set[str] = set()
        self.held: list[int] = []


class Conn:
    __slots__ = ("sock", "fds", "target", "subscribed", "input", "escape")

    def __init__(self, sock):
        self.sock = sock
        self.fds: dict[str, int] = {}  # attached client fds by role: stdin/stdout/stderr/tty
        self.target: Target | None = None
        self.subscribed = False
        self.input: int | None = None  # an `attach` client's input, read and scanned for its detach keys
        self.escape = None


class Supervisor:
    def __init__(self, runtime, sock_path: str):
        self.runtime = runtime
        self.sock_path = sock_path
        self.sel = selectors.DefaultSelector()
        self.targets: dict[str, Target] = {}  # container id or exec id -> Target
        self.by_pid: dict[int, Target] = {}
        self.subscribers: list[Conn] = []
        self.running = True

    # -- set-up ---------------------------------------------------------------------------
    def listen(self) -> None:
        if os.path.exists(self.sock_path):
            os.unlink(self.sock_path)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        # Bound under another name and renamed once listening: a client that sees the socket
        # can connect (a bound socket refuses connections until listen).
        tmp = f"{self.sock_path}.{os.getpid()}"
        old = os.umask(0o077)
        try:
            self.listener.bind(tmp)
        finally:
            os.umask(old)
        os.chmod(tmp, 0o600)
        self.listener.listen(64)
        os.rename(tmp, self.sock_path)
        self.listener.setblocking(False)
        self.sel.register(self.listener, selectors.EVENT_READ, ("listen", None))
        # SIGCHLD wakes the loop through a self-pipe; the handler itself does nothing, so
        # no waitpid can run while the spawn code waits for its own intermediate children.
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "running", False))
        # Python starts with SIGPIPE and SIGXFSZ ignored, and an ignored signal stays ignored
        # across fork and execve: containers would inherit it (`yes | head` would never end
        # by SIGPIPE). A handler that does nothing has the same effect here (EPIPE) and, like
        # every handled signal, is reset to the default by execve.
        for sig in (signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, _ignore)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", None))

    def serve_forever(self) -> None:
        while self.running:
            for key, _ in self.sel.select(timeout=5.0):
                kind, obj = key.data
                try:
                    getattr(self, f"on_{kind}")(key.fileobj, obj)
                except Exception as err:  # one bad client or pipe must never stop the node
                    print(f"supervisor: {kind}: {type(err).__name__}: {err}", file=sys.stderr, flush=True)
            self.reap()

    # -- events from the loop -------------------------------------------------------------
    def on_listen(self, sock, _):
        try:
            conn_sock, _ = sock.accept()
        except BlockingIOError:
            return
        # Blocking with a deadline: a client (or a stalled agent) that stops reading is dropped
        # after 5 s instead of stopping the node; the agent re-adopts when it reconnects.
        conn_sock.settimeout(5.0)
        self.sel.register(conn_sock, selectors.EVENT_READ, ("conn", Conn(conn_sock)))

    def on_wake(self, fd, _):
        try:
            while os.read(fd, 4096):
                pass
        except BlockingIOError:
            pass
        self.reap()

    def on_conn(self, sock, conn: Conn):
        try:
            msg, fds = proto.recv(sock)
        except OSError:
            msg, fds = None, []
        if msg is None:
            return self.drop(conn)
        op = msg.get("op", "")
        handler = getattr(self, f"op_{op}", None)
        then = None
        try:
            if handler is None:
                raise InvalidArgument(f"unknown supervisor operation '{op}'")
            answer = handler(conn, msg, fds) or {}
            then = answer.pop("_then", None)  # work that must follow the answer on this connection
            answer["ok"] = True
        except OrchError as err:
            for fd in fds:
                _close(fd)
            answer = {"ok": False, "kind": err.kind, "message": str(err)}
            if getattr(err, "exit_code", None) is not None:
                answer["exit_code"] = err.exit_code
        self.reply(conn, answer)
        if then is not None:
            then()

    def on_output(self, fd, target: Target):
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return
        except OSError:  # EIO from a pty master when the last slave closed
            data = b""
        if not data:
            self.close_output(target, fd)
            return
        self.deliver(target, target.outputs.get(fd, "stdout"), data)

    def on_tty_in(self, fd, target: Target):
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data or target.master is None:
            self.stop_tty_in(target)
            return
        _write_all(target.master, data)

    def on_attach_in(self, fd, conn: Conn):
        """Input of a client attached to a running container (op_attach): to its pty or its
        held stdin, until the client's detach keys, which detach it (the container runs on)."""
        target = conn.target
        try:
            data = os.read(fd, 65536)
        except OSError:
            data = b""
        if not data or target is None:
            self.stop_input(conn)
            return
        data, detached = conn.escape.feed(data)
        if data:
            if target.master is not None:
                _write_all(target.master, data)
            elif target.held and not _write_client(target.held[0], data):
                print(f"supervisor: {target.id[:12]} does not read its stdin; input dropped", file=sys.stderr, flush=True)
        if detached:
            self.stop_input(conn)
            if conn in target.clients:
                target.clients.remove(conn)
            for out in conn.fds.values():
                _close(out)
            conn.fds, conn.target = {}, None
            self.reply(conn, {"event": "detached", "id": target.id})

    def stop_input(self, conn: Conn) -> None:
        if conn.input is None:
            return
        try:
            self.sel.unregister(conn.input)
        except (KeyError, ValueError):
            pass
        _close(conn.input)
        conn.input = None

    def stop_tty_in(self, target: Target) -> None:
        if target.tty_in is None:
            return
        try:
            self.sel.unregister(target.tty_in)
        except (KeyError, ValueError):
            pass
        _close(target.tty_in)
        target.tty_in = None

    # -- operations -------------------------------------------------------------------------
    def op_list(self, conn, msg, fds):
        return {"containers": [{"id": t.id, "pid": t.pid, "started_at": t.started_at, "pid_start": t.pid_start}
                               for t in self.targets.values() if t.exec_of is None]}

    def op_subscribe(self, conn, msg, fds):
        conn.subscribed = True
        self.subscribers.append(conn)

        def share_pipes():
            # A subscriber that came later (a restarted agent) gets its copies of the pipes.
            for target in list(self.targets.values()):
                if target.exec_of is None:
                    roles, shared = pipes_of(target)
                    if shared:
                        self.reply(conn, {"event": "pipes", "id": target.id, "pipes": roles}, shared)
        return {"_then": share_pipes}

    def op_adopt(self, conn, msg, fds):
        """Watch a container a previous supervisor started (see the module's docstring):
        {id, config, pid, pid_start, started_at, log, pipes} with the agent's copies of its
        pipes. NotFound when nothing of it runs any more (its cgroup is then removed)."""
        cid = msg["id"]
        given = self.take_fds(conn, msg.get("pipes") or [], fds)
        if cid in self.targets:
            for fd in given.values():
                _close(fd)
            return {"pid": self.targets[cid].pid}
        config = self.runtime.load(msg["config"])
        try:
            pid, pidfd, pid_start = self.runtime.adopt(config, msg.get("pid") or 0, msg.get("pid_start"))
        except OrchError:
            for fd in given.values():
                _close(fd)
            raise
        cdir = os.path.dirname(msg["config"])
        log_opts = msg.get("log") or {}
        log = LogWriter(os.path.join(cdir, "container.log"), log_opts.get("max_size", 10 * 1024 * 1024), log_opts.get("max_file", 3))
        target = Target(cid, pid, config, cdir, log)
        target.started_at = msg.get("started_at") or target.started_at
        target.pidfd, target.pid_start = pidfd, pid_start
        for role, fd in given.items():
            if role in ("stdout", "stderr", "master"):
                os.set_blocking(fd, False)
                target.outputs[fd] = "stderr" if role == "stderr" else "stdout"
                if role == "master":
                    target.master = fd
                self.sel.register(fd, selectors.EVENT_READ, ("output", target))
            else:
                target.held.append(fd)
        self.sel.register(pidfd, selectors.EVENT_READ, ("pidfd", target))
        self.targets[cid] = target
        self.by_pid[pid] = target
        return {"pid": pid, "pid_start": pid_start}

    def on_pidfd(self, fd, target: Target):
        """An adopted pid 1 exited. Its parent (the host's init) reaped it; its status is
        unknown here, reported as 255 (dockerd's UnknownExitStatus)."""
        if self.by_pid.get(target.pid) is target:
            del self.by_pid[target.pid]
            self.finish(target, 255, error="the container exited while adopted by a restarted supervisor, which is not its "
                                            "parent: its exit status is unknown (255, as docker reports it)")

    def op_start(self, conn, msg, fds):
        cid = msg["id"]
        if cid in self.targets:
            raise Conflict(f"container {cid[:12]} is already running")
        config = self.runtime.load(msg["config"])
        cdir = os.path.dirname(msg["config"])
        _unlink(os.path.join(cdir, "exit.json"))
        log_opts = msg.get("log") or {}
        log = LogWriter(os.path.join(cdir, "container.log"), log_opts.get("max_size", 10 * 1024 * 1024), log_opts.get("max_file", 3))
        attach = self.take_fds(conn, msg.get("attach") or [], fds)
        try:
            target = self.spawn(cid, config, cdir, log, attach, msg.get("tty_size"), lambda stdio: self.runtime.start(config, **stdio),
                                open_stdin=bool(msg.get("open_stdin")))
        except OrchError as err:
            log.close()
            self.broadcast({"event": "start_failed", "id": cid, "message": str(err), "exit_code": getattr(err, "exit_code", 125) or 125})
            raise
        if attach:
            self.attach(conn, target, attach)
        target.pid_start = self.runtime.start_time(target.pid)
        # The agent keeps a copy of the pipes, so that they outlive this process (module docstring).
        roles, shared = pipes_of(target)
        self.broadcast({"event": "started", "id": cid, "pid": target.pid, "started_at": target.started_at,
                        "pid_start": target.pid_start, "pipes": roles}, shared)
        return {"pid": target.pid}

    def op_exec(self, conn, msg, fds):
        container = self.targets.get(msg["id"])
        if container is None or container.exec_of is not None:
            for fd in fds:
                _close(fd)
            raise Conflict(f"container {msg['id'][:12]} is not running; start it first")
        attach = self.take_fds(conn, msg.get("attach") or [], fds)
        process = msg["process"]
        exec_id = msg.get("exec_id") or os.urandom(16).hex()
        runtime = self.runtime
        target = self.spawn(
            exec_id, container.config, None, None, attach, msg.get("tty_size"),
            lambda stdio: runtime.exec_in(container.pid, container.config, process, **stdio),
            exec_of=container, terminal=bool(process.get("terminal")),
        )
        container.execs.add(exec_id)
        if attach or not msg.get("detach"):
            self.attach(conn, target, attach)
        return {"pid": target.pid, "exec_id": exec_id}

    def op_kill(self, conn, msg, fds):
        target = self.targets.get(msg["id"])
        if target is None:
            # Not ours (an adoption that found no pid 1), yet its cgroup may hold processes:
            # SIGKILL with the config kills every one of them (rm -f).
            sig = int(msg.get("signal", signal.SIGKILL))
            if msg.get("config") and sig == signal.SIGKILL and self.runtime.kill_cgroup(self.runtime.load(msg["config"])):
                return {}
            raise Conflict(f"container {msg['id'][:12]} is not running")
        try:
            os.kill(target.pid, int(msg.get("signal", signal.SIGKILL)))
        except ProcessLookupError:
            pass
        return {}

    def op_attach(self, conn, msg, fds):
        """docker attach: a client joins a running container's stdio. Its "stdout"/"stderr"
        (or "tty") descriptors get the output from now on, as a starting client's do; its
        input ("tty" or "stdin") goes to the pty or the held stdin, scanned for
        `detach_keys` (a list of byte values); `tty_size` resizes the pty."""
        from orch.node.runtime.escape import Escape

        target = self.targets.get(msg["id"])
        if target is None or target.exec_of is not None:
            for fd in fds:
                _close(fd)
            raise Conflict(f"container {msg['id'][:12]} is not running; start it first")
        given = self.take_fds(conn, msg.get("attach") or [], fds)
        conn.target = target
        target.clients.append(conn)
        keep, source = {}, None
        for role, fd in given.items():
            if role == "tty" and target.master is not None:
                source = fd
                keep["tty"] = reopen_nonblocking(os.dup(fd))
            elif role == "stdin" and target.master is None and target.held:
                source = fd
                os.set_blocking(target.held[0], False)  # our end: a container that does not read must not stop this loop
            elif role in ("stdout", "stderr"):
                keep[role] = reopen_nonblocking(fd)
            else:
                _close(fd)
        conn.fds = keep
        if source is not None:
            conn.input, conn.escape = source, Escape(bytes(msg.get("detach_keys") or (16, 17)))
            self.sel.register(source, selectors.EVENT_READ, ("attach_in", conn))
        if msg.get("tty_size") and target.master is not None:
            # One row and column more, then the size: the program gets a SIGWINCH even when
            # the size is the one it had, and redraws for the newcomer (docker's CLI does so).
            rows, cols = msg["tty_size"]
            _set_winsize(target.master, rows + 1, cols + 1)
            _set_winsize(target.master, rows, cols)
        return {"pid": target.pid}

    def op_resize(self, conn, msg, fds):
        target = self.targets.get(msg.get("id") or "") or conn.target
        if target is None or target.master is None:
            raise NotFound("no terminal to resize: the process is not running or has no tty")
        _set_winsize(target.master, msg["rows"], msg["cols"])
        return {}

    def op_signal(self, conn, msg, fds):
        """An attached client forwards a signal it received (Ctrl-C: sig-proxy, as docker)."""
        if conn.target is None:
            raise NotFound("this connection is not attached to a process")
        os.kill(conn.target.pid, int(msg["signal"]))
        return {}

    def op_ping(self, conn, msg, fds):
        return {"pid": os.getpid()}

    # -- helpers ----------------------------------------------------------------------------
    def take_fds(self, conn, roles, fds) -> dict[str, int]:
        if len(roles) != len(fds):
            for fd in fds:
                _close(fd)
            raise InvalidArgument(f"attach names {len(roles)} descriptors but the message carries {len(fds)}")
        return dict(zip(roles, fds))

    def spawn(self, tid, config, cdir, log, attach, tty_size, start, exec_of=None, terminal=None, open_stdin=False):
        """Start a process with pipes (or a pty) whose far ends are ours; return its Target."""
        terminal = self.runtime.terminal(config) if terminal is None else terminal
        ours, theirs = [], []
        try:
            if terminal:
                mine, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
                ours.append(mine)
                theirs.append(peer)
                stdio = {"stdin": None, "stdout": None, "stderr": None, "console": peer.fileno()}
            elif exec_of is not None:
                # exec output is not logged (as in docker): the client's own fds go straight in.
                stdio = {"stdin": attach.get("stdin"), "stdout": attach.get("stdout"), "stderr": attach.get("stderr"), "console": None}
            else:
                out_r, out_w = os.pipe2(os.O_CLOEXEC)
                err_r, err_w = os.pipe2(os.O_CLOEXEC)
                ours += [out_r, err_r]
                theirs += [out_w, err_w]
                stdin = attach.get("stdin")
                if stdin is None and open_stdin:
                    # docker run -di: stdin stays open (a pipe whose write end we hold) so that
                    # `sh` waits instead of reading end-of-file from /dev/null.
                    stdin, held = os.pipe2(os.O_CLOEXEC)
                    theirs.append(stdin)
                    ours.append(held)
                stdio = {"stdin": stdin, "stdout": out_w, "stderr": err_w, "console": None}
            pid = start(stdio)
        except BaseException:
            for x in ours + theirs:
                _close(x)
            for fd in attach.values():
                _close(fd)
            raise
        for x in theirs:
            _close(x)
        target = Target(tid, pid, config, cdir, log, exec_of)
        target.clients = []
        if terminal:
            mine = ours[0]
            mine.settimeout(10)
            try:
                _, got = proto.recv_raw(mine)
            finally:
                mine.close()
            if not got:
                os.kill(pid, signal.SIGKILL)
                raise SystemFailure(f"the init of {tid[:12]} sent no pty master on the console socket")
            target.master = got[0]
            for extra in got[1:]:
                _close(extra)
            os.set_blocking(target.master, False)
            target.outputs[target.master] = "stdout"
            self.sel.register(target.master, selectors.EVENT_READ, ("output", target))
            if tty_size:
                _set_winsize(target.master, tty_size[0], tty_size[1])
        elif exec_of is None:
            for fd, stream in zip(ours, ("stdout", "stderr")):
                os.set_blocking(fd, False)
                target.outputs[fd] = stream
                self.sel.register(fd, selectors.EVENT_READ, ("output", target))
            target.held = ours[2:]  # the write end of an open stdin, closed when it exits
        self.targets[tid] = target
        self.by_pid[pid] = target
        return target

    def attach(self, conn: Conn, target: Target, fds: dict[str, int]) -> None:
        """Keep what the client sent that we must copy to or from; close what the process
        already holds (its stdin, an exec's stdout and stderr)."""
        conn.target = target
        target.clients.append(conn)
        keep = {}
        for role, fd in fds.items():
            if role == "tty" and target.master is not None:
                target.tty_in = fd
                self.sel.register(fd, selectors.EVENT_READ, ("tty_in", target))
                keep["tty"] = reopen_nonblocking(os.dup(fd))
            elif role in ("stdout", "stderr") and target.exec_of is None and target.master is None:
                keep[role] = reopen_nonblocking(fd)
            else:
                _close(fd)
        conn.fds = keep

    def deliver(self, target: Target, stream: str, data: bytes) -> None:
        if target.log is not None:
            target.log.write(stream, data)
        for conn in list(target.clients):
            fd = conn.fds.get("tty") or conn.fds.get(stream)
            if fd is None:
                continue
            if not _write_client(fd, data):
                # A client that stopped reading is detached rather than stalling the node.
                conn.fds.pop("tty" if "tty" in conn.fds else stream, None)
                _close(fd)

    def close_output(self, target: Target, fd: int) -> None:
        stream = target.outputs.pop(fd, None)
        if stream is None:
            return
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        if fd == target.master:
            target.master = None
        _close(fd)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            target = self.by_pid.pop(pid, None)
            if target is not None:
                self.finish(target, os.waitstatus_to_exitcode(status))

    def finish(self, target: Target, code: int, error: str = "") -> None:
        """pid 1 (or an exec'd process) is gone: drain output, record the exit, clean up, tell."""
        exit_code = 128 - code if code < 0 else code
        if target.pidfd is not None:
            try:
                self.sel.unregister(target.pidfd)
            except (KeyError, ValueError):
                pass
            _close(target.pidfd)
            target.pidfd = None
        for fd in list(target.outputs):
            _drain(fd, lambda data, s=target.outputs[fd]: self.deliver(target, s, data))
            self.close_output(target, fd)
        self.stop_tty_in(target)
        for fd in target.held:
            _close(fd)
        target.held = []
        self.targets.pop(target.id, None)
        event = {"event": "exit", "id": target.id, "exit_code": exit_code, "started_at": target.started_at, "finished_at": rfc3339_nano(), "pid": target.pid}
        if error:
            event["error"] = error
        if target.exec_of is None:
            if target.log is not None:
                target.log.close()
            event["oom_killed"] = self.runtime.oom_killed(target.config)
            write_json_atomic(os.path.join(target.dir, "exit.json"), event, durable=False)
        else:
            target.exec_of.execs.discard(target.id)
            # Every exec's end, attached or not, for the agent's events (docker's exec_die).
            self.broadcast({"event": "exec_exited", "id": target.exec_of.id, "exec_id": target.id, "exit_code": exit_code})
        for conn in target.clients:
            self.reply(conn, event)
            self.stop_input(conn)
            for fd in conn.fds.values():
                _close(fd)
            conn.fds, conn.target = {}, None
        if target.exec_of is None:
            self.broadcast(dict(event, event="exited"))
            # The cgroup goes after the news: nobody waits on it, and this loop is single
            # threaded, so a start of the same container (a restart) still comes after it.
            self.runtime.cleanup(target.config)

    def broadcast(self, event: dict, fds=()) -> None:
        for conn in list(self.subscribers):
            self.reply(conn, event, fds)

    def reply(self, conn: Conn, msg: dict, fds=()) -> None:
        try:
            proto.send(conn.sock, msg, fds)
        except OSError:
            self.drop(conn)

    def drop(self, conn: Conn) -> None:
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        if conn in self.subscribers:
            self.subscribers.remove(conn)
        target = conn.target
        self.stop_input(conn)
        if target is not None and conn in target.clients:
            target.clients.remove(conn)
            if conn.escape is None:  # a starting client's terminal (an attached one's is its own input)
                self.stop_tty_in(target)
        for fd in conn.fds.values():
            _close(fd)
        conn.fds = {}
        conn.sock.close()


def pipes_of(target: Target) -> tuple[list[str], list[int]]:
    """The roles and fds of a container's pipes that must outlive this process: the output
    read ends (or the pty master) and the held write end of an open stdin."""
    roles, fds = [], []
    for fd, stream in target.outputs.items():
        roles.append("master" if fd == target.master else stream)
        fds.append(fd)
    for fd in target.held:
        roles.append("stdin")
        fds.append(fd)
    return roles, fds


def _ignore(signum, frame) -> None:
    pass


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    import fcntl
    import struct

    fcntl.ioctl(fd, TIOCSWINSZ, struct.pack("HHHH", int(rows), int(cols), 0, 0))


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            import select

            select.select([], [fd], [], 1.0)
        except OSError:
            return


def _write_client(fd: int, data: bytes) -> bool:
    """Write to an attached client's fd; give up (False) if it stays full for 2 seconds."""
    deadline = time.monotonic() + 2.0
    while data:
        try:
            data = data[os.write(fd, data) :]
        except BlockingIOError:
            import select

            if time.monotonic() > deadline:
                return False
            select.select([], [fd], [], 0.2)
        except OSError:
            return False
    return True


def reopen_nonblocking(fd: int) -> int:
    """A client's pipe or terminal, reopened as our own open file description so that
    O_NONBLOCK does not leak back to the user's shell; other kinds are kept as they are."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        try:
            new = os.open(f"/proc/self/fd/{fd}", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
        except OSError:
            return fd
        os.close(fd)
        return new
    return fd


def _drain(fd: int, sink) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        sink(data)


def _close(x) -> None:
    try:
        x.close() if hasattr(x, "close") else os.close(x)
    except OSError:
        pass


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _lock(path: str) -> bool:
    """Hold an exclusive flock for the life of this process (one supervisor per node)."""
    import fcntl

    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return False
    return True  # the fd stays open on purpose: the lock dies with the process


def set_child_subreaper() -> None:
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemFailure(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="orch supervisor", allow_abbrev=False)
    parser.add_argument("--socket", default=str(paths.supervisor_socket()))
    parser.add_argument("--host-runtime", action="store_true", help="plain host processes (tests)")
    args = parser.parse_args(argv)
    from orch.node.runtime.superruntime import HostRuntime, KernelRuntime

    runtime = HostRuntime() if args.host_runtime else KernelRuntime()
    set_child_subreaper()
    os.makedirs(os.path.dirname(args.socket), mode=0o700, exist_ok=True)
    if not _lock(args.socket + ".lock"):  # another supervisor serves this node: nothing to do
        return 0
    sup = Supervisor(runtime, args.socket)
    sup.listen()
    if hasattr(runtime, "warm"):
        runtime.warm()
    print(f"supervisor: pid {os.getpid()} serving {args.socket}", file=sys.stderr, flush=True)
    try:
        sup.serve_forever()
    finally:
        # Stopped on purpose (SIGTERM): the containers, if any, are left running, orphaned.
        if os.path.exists(args.socket):
            os.unlink(args.socket)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
