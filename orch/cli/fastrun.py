"""`orch run` (and `orch build`): the client half of the commands people time.

Everything here is built into the interpreter (posix through os, _socket, marshal, _signal,
select, time), so the client costs Python's own start and little more: argparse, json and socket would
add about 15 ms (they import re and enum). The node agent, which has all of that imported
already, parses the command line with the same parser `orch create` uses, creates and starts
the container, and answers on the same connection; see orch/node/agent/runsock.py for the
protocol. Our stdin, stdout and stderr travel with the request, so the program's output goes
straight from the container to our terminal (and to its log), never through this process.

ORCH_TRACE=1 prints milliseconds since this process was exec'd at each step, to stderr.
"""

import marshal
import os
import sys

import _socket

MAX_MESSAGE = 1 << 20
STDIO = (0, 1, 2)


def build(prog: str, argv: list[str]) -> int:
    """`orch build`: the same client on the agent's build.sock; the agent parses and builds
    (orch/node/agent/building.py) and sends the output back, so a cached rebuild costs this
    process no imports."""
    return run(prog, argv, socket_name="build.sock")


def run(prog: str, argv: list[str], *, socket_name: str = "run.sock") -> int:
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
    request = {"argv": argv, "cwd": cwd, "env": dict(os.environ), "tty_in": os.isatty(0), "trace": bool(trace)}
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in STDIO)
    sock.sendmsg([marshal.dumps(request)], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
    trace and trace("sent")
    restore = None
    import select

    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(signals, select.POLLIN)
    try:
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if signals in ready:
                _forward(sock, signals)
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
            if msg.get("attach") == "tty":
                restore = _raw_mode(sock)
            if msg.get("started"):
                trace and trace("started")
            if "exit" in msg:
                trace and trace("exited")
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


def _raw_mode(sock):
    """-t: our terminal goes raw and its size follows ours; answer the agent with "go"."""
    import termios
    import tty

    import _signal

    old = termios.tcgetattr(0)
    tty.setraw(0)
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


def _write(fd: int, text: str) -> None:
    data = text.encode()
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
