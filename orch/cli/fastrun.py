"""`orch run`, every attached session (`exec`, `start -a`) and `orch build`: the client half of
run.sock and build.sock.

Everything here is built into the interpreter (posix through os, _socket, marshal, _signal,
select, time), so the client costs Python's own start and little more: argparse, json and socket would
add about 15 ms (they import re and enum). The node agent, which has all of that imported
already, parses `orch run`'s command line with the same parser `orch create` uses, creates and
starts the container, and answers on the same connection; see orch/node/agent/runsock.py for the
protocol. `exec` and `start -a` send a request the CLI built instead of an argv; `orch build`
sends its argv to build.sock (orch/node/agent/building.py), so a cached rebuild costs this
process no imports either.

Our stdin, stdout and stderr travel with the request. What the agent hands on to the supervisor
(a terminal for -t, stdout and stderr that the supervisor writes the container's output to)
never reaches the program itself. What the program would hold (its stdin; an exec's stdout and
stderr) is passed straight when it is a pipe or a file, but a terminal is relayed through a
pipe of ours (the agent asks for it with "relay"): a program must not keep reading what the
user types after it returned, nor change the terminal's settings.

ORCH_TRACE=1 prints milliseconds since this process was exec'd at each step, to stderr.
"""

import marshal
import os
import sys

import _socket

MAX_MESSAGE = 1 << 20
STDIO = (0, 1, 2)


def run(prog: str, argv: list[str]) -> int:
    return session({"op": "run", "argv": argv})


def build(prog: str, argv: list[str]) -> int:
    """`orch build`: the same client on the agent's build.sock, which parses and builds and
    sends the output back."""
    return session({"argv": argv}, socket_name="build.sock")


def session(request: dict, *, socket_name: str = "run.sock") -> int:
    """Send `request` with our stdio to the agent's `socket_name`; serve the session; return
    the exit code."""
    trace = _Trace() if os.environ.get("ORCH_TRACE") else None
    for fd in STDIO:  # a closed one would be taken by our socket, and sent as the container's
        try:
            os.fstat(fd)
        except OSError:
            os.open("/dev/null", os.O_RDWR)  # the lowest free number: this one
    sock = _connect(socket_name)
    signals = _catch_signals()  # from the start: a Ctrl-C right after the program's first output counts
    try:
        cwd = os.getcwd()
    except OSError:  # removed under our feet: relative --env-file paths then start at /
        cwd = "/"
    request = dict(request, cwd=cwd, env=dict(os.environ), ttys=[os.isatty(fd) for fd in STDIO], trace=bool(trace))
    _send_fds(sock, request, STDIO)
    trace and trace("sent")
    restore = None
    relay = None
    import select

    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(signals, select.POLLIN)
    try:
        while True:
            ready = dict(poller.poll())
            if signals in ready:
                _forward(sock, signals)
            if relay is not None:
                relay.pump(ready, poller)
            if sock.fileno() not in ready:
                continue
            data = sock.recv(MAX_MESSAGE)
            if not data:
                _write(2, "orch: the node agent went away before the container exited; see ORCH_ROOT/agent.log\n")
                return 125
            msg = marshal.loads(data)
            if "out" in msg:
                _write(1, msg["out"])
            if "err" in msg:
                _write(2, msg["err"])
            if "trace" in msg:
                _write(2, f"orch-trace agent: {msg['trace']} ms\n")
            if "relay" in msg:
                relay = _Relay(sock, msg["relay"], poller)
            if msg.get("attach") == "tty":
                restore = _raw_mode(sock)
            if msg.get("started"):
                trace and trace("started")
            if "exit" in msg:
                trace and trace("exited")
                if relay is not None:
                    relay.finish()
                return int(msg["exit"])
    finally:
        if restore is not None:
            restore()
        sock.close()


def _connect(name: str):
    from orch.paths import run_file

    path = run_file(name)
    for attempt in (1, 2):
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC)
        try:
            sock.connect(path)
            return sock
        except OSError as err:
            sock.close()
            if attempt == 2:
                from orch.errors import Unavailable

                raise Unavailable(f"cannot reach the node agent's socket {path} ({err.strerror}); an agent older than this orch "
                                  f"has none: stop it (kill $(cat {os.path.dirname(path)}/agent.pid)) and run again") from None
        # No agent answers: start one (or say how), with the full client's code, then retry.
        from orch.cli._agent import client

        client()


def _send_fds(sock, msg: dict, fds) -> None:
    data = b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds)
    sock.sendmsg([marshal.dumps(msg)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, data)])


class _Relay:
    """Our terminals, relayed through pipes for the roles the agent named ("relay": [0, 1, 2]):
    the program gets the read end of a pipe we copy our stdin into, the write end of pipes we
    copy to our stdout and stderr. The pipes' other ends go back to the agent ("relayed")."""

    def __init__(self, sock, fds, poller):
        import select

        self.poller, self.POLLIN, self.POLLOUT = poller, select.POLLIN, select.POLLOUT
        self.copies: dict[int, int] = {}  # fd we read -> fd we write
        self.pending: dict[int, bytes] = {}  # fd we write -> bytes it did not take yet
        theirs = []
        for fd in fds:
            r, w = os.pipe2(os.O_CLOEXEC)
            if fd == 0:
                os.set_blocking(w, False)  # a program that does not read must not stop this loop
                self.copies[0] = w
                theirs.append(r)
            else:
                self.copies[r] = fd
                theirs.append(w)
        _send_fds(sock, {"relayed": list(fds)}, theirs)
        for fd in theirs:
            os.close(fd)
        for fd in self.copies:
            poller.register(fd, select.POLLIN)

    def pump(self, ready: dict, poller) -> None:
        for src, dst in list(self.copies.items()):
            if src in ready:
                self._copy(src, dst)
        for dst in list(self.pending):
            if dst in ready and ready[dst] & self.POLLOUT:
                self._flush(dst)

    def _copy(self, src: int, dst: int) -> None:
        try:
            data = os.read(src, 65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # our stdin ended (^D), or every writer of an output pipe is gone
            self._stop(src)
            return
        if src == 0:
            self.pending[dst] = data
            self.poller.unregister(0)  # until the program took these bytes
            self._flush(dst)
        else:
            _write(dst, data)

    def _flush(self, dst: int) -> None:
        data = self.pending.pop(dst)
        try:
            data = data[os.write(dst, data):]
        except BlockingIOError:
            pass
        except OSError:  # the program closed its stdin
            self._stop(0)
            return
        if data:
            self.pending[dst] = data
            self.poller.register(dst, self.POLLOUT)
            return
        try:
            self.poller.unregister(dst)
        except KeyError:
            pass
        if 0 in self.copies:
            self.poller.register(0, self.POLLIN)

    def _stop(self, src: int) -> None:
        dst = self.copies.pop(src, None)
        try:
            self.poller.unregister(src)
        except KeyError:
            pass
        if src == 0 and dst is not None:
            self.pending.pop(dst, None)
            try:
                self.poller.unregister(dst)
            except KeyError:
                pass
            os.close(dst)  # the program reads end-of-file
        elif src != 0:
            os.close(src)

    def finish(self) -> None:
        """The program exited: copy what it wrote before it did, then let go of the pipes, so
        that nothing it left behind can read from or write to us any more."""
        for src, dst in list(self.copies.items()):
            if src != 0:
                os.set_blocking(src, False)
                while True:
                    try:
                        data = os.read(src, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    _write(dst, data)
            self._stop(src)


def _raw_mode(sock):
    """-t: our terminal goes raw and its size follows ours; answer the agent with "go".

    TCSADRAIN, not tty.setraw's default TCSAFLUSH: what the user typed ahead stays in the
    terminal's queue and reaches the container (docker keeps it too)."""
    import termios
    import tty

    import _signal

    old = termios.tcgetattr(0)
    tty.setraw(0, termios.TCSADRAIN)
    _signal.signal(_signal.SIGWINCH, _noted)  # the main loop sends the new size (_forward)
    sock.send(marshal.dumps({"go": True, "tty_size": _size()}))
    return lambda: termios.tcsetattr(0, termios.TCSADRAIN, old)


def _size() -> list[int]:
    s = os.get_terminal_size(0)
    return [s.lines, s.columns]


def _catch_signals() -> int:
    """Ctrl-C and friends go to the agent, which passes them to the program (docker's
    --sig-proxy, without -t) or, when they are not for the program, answers with exit 128+N.

    The kernel writes each caught signal's number to a pipe (signal.set_wakeup_fd) that the
    main loop polls beside the socket. A Python handler that sent the message itself would
    lose a signal that lands just before the loop blocks in recv: the handler then waits for
    the next message, which may never come. Returns the pipe's read end."""
    import _signal

    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    _signal.set_wakeup_fd(w)
    for sig in (_signal.SIGINT, _signal.SIGTERM, _signal.SIGHUP, _signal.SIGQUIT):
        _signal.signal(sig, _noted)
    return r


def _noted(signum, frame) -> None:
    """The handler of the signals the loop forwards: their numbers are in the wakeup pipe."""


def _forward(sock, signals: int) -> None:
    import _signal

    try:
        numbers = os.read(signals, 64)
    except BlockingIOError:
        return
    for signum in numbers:
        if signum == _signal.SIGWINCH:
            sock.send(marshal.dumps({"resize": _size()}))
        else:
            sock.send(marshal.dumps({"signal": signum}))


def _write(fd: int, text) -> None:
    data = text.encode() if isinstance(text, str) else text
    while data:
        data = data[os.write(fd, data):]


class _Trace:
    """Milliseconds since exec (this process's start time from /proc, in clock ticks)."""

    def __init__(self):
        import time

        self.clock = time.perf_counter
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        self.base = (uptime - start_ticks / os.sysconf("SC_CLK_TCK")) * 1000 - self.clock() * 1000
        self("begin")

    def __call__(self, what: str) -> None:
        _write(2, f"orch-trace {what} {self.base + self.clock() * 1000:.1f} ms\n")
