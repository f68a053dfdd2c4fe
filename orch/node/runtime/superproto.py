"""The node supervisor's wire protocol: JSON messages with file descriptors attached.

The supervisor listens on ORCH_RUN/supervisor.sock, an AF_UNIX SOCK_SEQPACKET socket: the
kernel keeps message boundaries, so one `send` is one message and needs no framing, and a
message can carry descriptors (SCM_RIGHTS) such as the user's terminal or a pty master.

Requests are `{"op": ..., ...}`; the supervisor answers each with `{"ok": true, ...}` or
`{"ok": false, "kind": <orch.errors kind>, "message": ...}`. Operations:

- `start {id, config, attach?, tty_size?}` + fds: start a container. `attach` names which fds
  come with the message, in order: any of "stdin", "stdout", "stderr" (or "tty"). An attached
  client stays connected; it gets `{"event": "exit", ...}` on the same connection when the
  container exits and may send `resize {rows, cols}` and `signal {signal}` meanwhile.
- `exec {id, exec_id, process, attach?, tty_size?}` + fds: a new process in a running container.
- `kill {id, signal, config?}`, `resize {id | exec_id, rows, cols}`, `list {}`. A SIGKILL for a
  container the supervisor does not track reaches every process of its cgroup (`config` names it).
- `adopt {id, config, pid, pid_start, started_at, log, pipes}` + fds: watch a container a
  previous supervisor started (supervisor.py); NotFound when nothing of it runs.
- `subscribe {}`: the connection then receives events `started` (with copies of the
  container's pipes, `pipes` naming them) and `exited`, and at once a `pipes` event per
  running container (agent/pipes.py).

This module is imported by the CLI's hot path (`orch run`), so it uses only the standard
library and stays small.
"""

import array
import json
import os
import socket

from orch.errors import OrchError, Unavailable, from_kind

MAX_MESSAGE = 256 * 1024
MAX_FDS = 8


def encode(msg: dict) -> bytes:
    return json.dumps(msg, separators=(",", ":")).encode()


def decode(data: bytes) -> dict:
    return json.loads(data)


def send(sock: socket.socket, msg: dict, fds: tuple[int, ...] | list[int] = ()) -> None:
    data = encode(msg)
    if fds:
        socket.send_fds(sock, [data], list(fds))
    else:
        sock.send(data)


def recv(sock: socket.socket) -> tuple[dict | None, list[int]]:
    """One message and the descriptors it carried; (None, []) when the peer has gone."""
    data, fds = recv_raw(sock)
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return decode(data), fds


def recv_raw(sock: socket.socket) -> tuple[bytes, list[int]]:
    """recvmsg with MSG_CMSG_CLOEXEC: received descriptors must never leak into a container
    that the supervisor forks later (socket.recv_fds does not pass that flag)."""
    data, ancdata, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_LEN(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC)
    return data, fds_of(ancdata)


def fds_of(ancdata) -> list[int]:
    """The descriptors an SCM_RIGHTS message carried (recvmsg's ancillary data; a trio
    socket's recvmsg gives the same)."""
    fds = array.array("i")
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
    return list(fds)


def raise_for(answer: dict | None, op: str) -> dict:
    """Turn an error answer into the matching OrchError; return a good answer unchanged."""
    if answer is None:
        raise Unavailable(f"the node supervisor closed the connection during '{op}'; see ORCH_ROOT/supervisor.log")
    if not answer.get("ok", False):
        raise from_kind(answer.get("kind", "system"), answer.get("message", f"supervisor failed '{op}'"))
    return answer


def raise_for_program(answer: dict | None, op: str) -> dict:
    """raise_for, for a start or an exec whose caller reports the program's fate: the error
    carries docker's exit code (127 not found, 126 not executable, 125 anything else)."""
    try:
        return raise_for(answer, op)
    except OrchError as err:
        err.exit_code = (answer or {}).get("exit_code", 125)
        raise


def connect(path: str, timeout: float | None = None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except OSError as err:
        s.close()
        raise Unavailable(f"cannot reach the node supervisor at {path} ({err.strerror}); start the agent with 'orch agent --detach'") from None
    return s


def call(path: str, msg: dict, fds=(), timeout: float | None = 30.0) -> dict:
    """One request on a fresh connection and its answer (for blocking callers)."""
    s = connect(path, timeout)
    try:
        send(s, msg, fds)
        answer, extra = recv(s)
        for fd in extra:
            os.close(fd)
        return raise_for(answer, msg.get("op", "?"))
    except OSError as err:
        raise Unavailable(f"the node supervisor did not answer '{msg.get('op')}' ({err})") from None
    finally:
        s.close()
