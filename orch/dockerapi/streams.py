"""A process's stdio on docker's hijacked connections: attach, and exec's start.

docker's protocol (moby api/server/router/container/container_routes.go, pkg/stdcopy): the
client sends `Upgrade: tcp`, the server answers `101 UPGRADED`, and the connection carries
the process's stdin from the client and its output to the client: raw for a process with a
terminal; without one, stdout and stderr in frames of an 8-byte header ([stream, 0, 0, 0,
size as big-endian uint32]) and the bytes. The client half-closes its side when its stdin
ends; the server closes the connection when the process has ended and its output is out.

How orch carries it. The supervisor parents every container and exec, and takes the
descriptors a client gives it (node.start_attached, node.exec_attached: SCM_RIGHTS). Here the
client is a connection the agent serves, so the agent gives the supervisor its own ends of
pipes (or, for a terminal, one end of a socket pair) and copies between them and the
connection: a `Hub` per run of a process, to which any number of `Session`s (attached
connections) belong, as dockerd broadcasts a container's output to every attached client.

- docker's client attaches BEFORE it starts a container (`docker run`, `start -a`, compose's
  `up`): the attach waits in `pending` until POST /start, which starts the container with the
  hub's pipes and hands the waiting sessions to the hub. It is in `pending` before its 101 goes
  out, since the client starts the container as soon as it reads it; with logs=1 the log is
  replayed first, and the hub's output to the session waits for it.
- an attach to a container that runs already joins its hub if it has one, else the
  supervisor's attach (node.attach_running) gives the session's ends the output from now on
  and feeds its input to the held stdin pipe or pty, as `docker attach` does.
- an exec started attached is a hub with one session; its exit code is kept for GET
  /exec/{id}/json.

Detach keys (ctrl-p ctrl-q unless the client names others) end a session and leave the
process running, as dockerd does.
"""

from __future__ import annotations

import os
import socket

import trio

from orch.dockerapi.server import Hijacked
from orch.node.runtime import superproto as proto

STREAMS = {"stdin": 0, "stdout": 1, "stderr": 2}
FRAME_MAX = 1 << 20
# After a process exits, how long its output pipes may stay open (a child it left behind
# holds them) before the session ends anyway.
DRAIN_AFTER_EXIT = 2.0
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p, ctrl-q


def frame(stream: str, data: bytes) -> bytes:
    """docker's multiplexed frame(s) of `data` on `stream` (stdcopy)."""
    out = bytearray()
    for i in range(0, len(data), FRAME_MAX):
        chunk = data[i:i + FRAME_MAX]
        out += bytes((STREAMS[stream], 0, 0, 0)) + len(chunk).to_bytes(4, "big") + chunk
    return bytes(out)


def parse_detach_keys(text: str | None) -> bytes:
    """docker's --detach-keys ("ctrl-p,ctrl-q", "ctrl-@", "a,b") as bytes; "" disables them."""
    if text is None:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for key in filter(None, (k.strip() for k in text.split(","))):
        if key.lower().startswith("ctrl-") and len(key) == 6:
            c = key[5].lower()
            codes = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}
            if "a" <= c <= "z":
                out.append(ord(c) - ord("a") + 1)
            elif c in codes:
                out.append(codes[c])
            else:
                raise ValueError(key)
        elif len(key) == 1:
            out.append(ord(key))
        else:
            raise ValueError(key)
    return bytes(out)


class Session:
    """One attached connection: which streams it takes, whether it feeds stdin."""

    def __init__(self, conn: Hijacked, *, tty: bool, stdout: bool, stderr: bool, stdin: bool, detach_keys: bytes = DEFAULT_DETACH_KEYS):
        self.conn = conn
        self.tty = tty
        self.wants = {"stdout": stdout, "stderr": stderr}
        self.stdin = stdin
        self.detach_keys = detach_keys
        self._matched = 0  # how much of the detach sequence the last bytes matched
        self.done = trio.Event()
        self._sending = trio.Lock()  # stdout and stderr come from two tasks

    async def send(self, stream: str, data: bytes) -> None:
        """Raises trio.BrokenResourceError when the client is gone."""
        if not self.wants.get(stream) or not data:
            return
        async with self._sending:
            await self.send_locked(stream, data)

    async def send_locked(self, stream: str, data: bytes) -> None:
        """`send` for the task that holds `_sending` already (an attach replaying the log
        while a hub's output waits)."""
        if self.wants.get(stream) and data:
            await self.conn.send(data if self.tty else frame(stream, data))

    def split_detach(self, data: bytes) -> tuple[bytes, bool]:
        """(what to pass on, whether the detach sequence ended here). Bytes that may begin the
        sequence are held back until it is complete or broken, as dockerd's escape proxy does;
        what follows the sequence is dropped with the session."""
        keys = self.detach_keys
        if not keys:
            return data, False
        out = bytearray()
        for b in data:
            if b == keys[self._matched]:
                self._matched += 1
                if self._matched == len(keys):
                    self._matched = 0
                    return bytes(out), True
                continue
            if self._matched:
                out += keys[:self._matched]  # held back, but not the sequence after all
                self._matched = 0
                if b == keys[0]:
                    self._matched = 1
                    continue
            out.append(b)
        return bytes(out), False

    async def close(self) -> None:
        if not self.done.is_set():
            self.done.set()
            with trio.CancelScope(shield=True):
                async with self._sending:
                    await self.conn.send_eof()


class Hub:
    """One run of a process (a container's start, an exec): the agent's ends of its stdio and
    the sessions attached to it."""

    def __init__(self, *, tty: bool, stdin_once: bool, keep_stdin: bool):
        self.tty = tty
        self.stdin_once = stdin_once  # the first session's end of stdin closes the process's
        self.keep_stdin = keep_stdin  # a process that has a stdin of ours at all
        self.sessions: list[Session] = []
        self.outputs: list[tuple[str, trio.abc.ReceiveStream]] = []
        self.stdin: trio.abc.SendStream | None = None
        self.exit_code: int | None = None
        self.exited = trio.Event()
        self.finished = trio.Event()
        self._theirs: list = []
        self._nursery: trio.Nursery | None = None
        self.on_exit = None  # called with the exit code before the sessions end (an exec's inspect)

    # -- the process's ends ----------------------------------------------------------------------
    def make_ends(self, *, exec_: bool) -> tuple[list[str], list[int]]:
        """Make the pipes (or socket pair); return the roles and fds to give the supervisor."""
        if self.tty:
            mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            theirs.setblocking(False)  # the supervisor writes to it without blocking its loop
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(mine))
            self.outputs = [("stdout", stream)]
            self.stdin = stream
            self._theirs = [theirs]
            return ["tty"], [theirs.fileno()]
        roles, fds = [], []
        if self.keep_stdin:
            r, w = os.pipe2(os.O_CLOEXEC)
            self.stdin = trio.lowlevel.FdStream(w)
            roles.append("stdin")
            fds.append(r)
        for name in ("stdout", "stderr"):
            r, w = os.pipe2(os.O_CLOEXEC)
            self.outputs.append((name, trio.lowlevel.FdStream(r)))
            roles.append(name)
            fds.append(w)
        self._theirs = fds
        return roles, fds

    def release_theirs(self) -> None:
        """The supervisor holds its own copies now (or the start failed): close ours."""
        for x in self._theirs:
            try:
                x.close() if hasattr(x, "close") else os.close(x)
            except OSError:
                pass
        self._theirs = []

    async def close_ends(self) -> None:
        with trio.CancelScope(shield=True):
            for _, stream in self.outputs:
                await stream.aclose()
            if self.stdin is not None and not self.tty:
                await self.stdin.aclose()

    # -- running -----------------------------------------------------------------------------
    def add(self, session: Session) -> None:
        self.sessions.append(session)
        if self._nursery is not None and session.stdin:
            self._nursery.start_soon(self._feed, session)

    async def run(self, sup) -> None:
        """Copy until the process has exited and its output is drained, then end every
        session. `sup` is the supervisor connection its exit comes on."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                for session in self.sessions:
                    if session.stdin:
                        nursery.start_soon(self._feed, session)
                async with trio.open_nursery() as pumps:
                    for name, stream in self.outputs:
                        pumps.start_soon(self._pump, name, stream)
                    self.exit_code = await _wait_exit(sup)
                    self.exited.set()
                    pumps.cancel_scope.deadline = trio.current_time() + DRAIN_AFTER_EXIT
                nursery.cancel_scope.cancel()
        finally:
            sup.close()
            self.exited.set()
            if self.on_exit is not None:
                self.on_exit(self.exit_code)
            for session in list(self.sessions):
                await session.close()
            await self.close_ends()
            self.finished.set()

    async def _pump(self, name: str, stream) -> None:
        while True:
            try:
                data = await stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                return
            if not data:
                return
            for session in list(self.sessions):
                try:
                    await session.send(name, data)
                except (trio.BrokenResourceError, OSError):
                    await self.drop(session)

    async def _feed(self, session: Session) -> None:
        """The session's stdin into the process's."""
        while True:
            data = await session.conn.receive()
            if not data:
                break
            data, detached = session.split_detach(data)
            if data and self.stdin is not None:
                try:
                    await self.stdin.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    break
            if detached:
                await self.drop(session)
                return
        if self.stdin_once and self.stdin is not None and not self.tty:
            with trio.CancelScope(shield=True):
                await self.stdin.aclose()  # the process reads the end of its input

    async def drop(self, session: Session) -> None:
        if session in self.sessions:
            self.sessions.remove(session)
        await session.close()


async def _wait_exit(sup) -> int | None:
    """The exit code the supervisor reports on `sup`; None if it went away first, or if the
    session detached (an attach to a running container: its "detached" answer)."""
    while True:
        data = await sup.recv(proto.MAX_MESSAGE)
        if not data:
            return None
        event = proto.decode(data)
        if event.get("event") == "exit":
            return int(event["exit_code"])
        if event.get("event") == "detached":
            return None


async def join_running(node, rec: dict, session: Session, tty_size=None) -> None:
    """An attach to a running container that has no hub here (started by `orch run -d`, a
    restart policy, or before the agent restarted): the supervisor's attach joins the
    session's ends to the container's output and stdin from now on. The supervisor watches
    for the detach keys (its "detached" answer ends the session), so the session passes them on."""
    keys, session.detach_keys = session.detach_keys, b""
    tty = bool(rec["Config"].get("Tty"))
    hub = Hub(tty=tty, stdin_once=False, keep_stdin=session.stdin)
    hub.add(session)
    roles, fds = hub.make_ends(exec_=False)
    try:
        sup = await node.attach_running(rec, roles, fds, tty_size, keys)
    except BaseException:
        hub.release_theirs()
        await hub.close_ends()
        await session.close()
        raise
    hub.release_theirs()
    await hub.run(sup)


async def replay_log(node, rec: dict, session: Session) -> None:
    """attach?logs=1: what the container wrote so far. The caller holds the session's
    `_sending`, so a start's output waits until the log is out."""
    from orch.node.agent.logstream import entries

    async for entry in entries(node, rec):
        await session.send_locked(entry.get("stream", "stdout"), entry.get("log", "").encode())
