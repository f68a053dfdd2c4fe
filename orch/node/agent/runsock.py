"""run.sock: the door for every session that carries a client's stdio, `orch run`, `orch exec`
and `orch start -a`. The agent parses, creates or prepares, hands the supervisor the client's
descriptors, and reports the exit.

Starting a container is the command people time. Python takes 11 ms to start here, and the
modules a full CLI needs (argparse, json, socket, pathlib, which pull in re and enum) about
15 ms more, so the `orch run` client (orch/cli/fastrun.py) imports only what is built into
the interpreter and sends its whole command line here, to a process that has everything
imported and warm. `exec` and `start -a` use the same client loop with a request the CLI
built. One SOCK_SEQPACKET connection on ORCH_RUN/run.sock (0600, root only) carries a session
from start to end:

    client -> agent   {"op": "run", "argv", "cwd", "env", "ttys": [bool x 3], "trace"}
                      | {"op": "exec", "ref", "exec": <ExecRequest>, ...} | {"op": "start", "ref", "interactive", ...}
                      with the client's fds 0, 1, 2
    agent  -> client  {"relay": [fd, ...]}            (no -t: the client's terminals among what the
    client -> agent   {"relayed": [fd, ...]} + fds     program itself would hold, stdin and an exec's
                                                       stdout/stderr, are replaced by pipes the client copies)
    agent  -> client  {"attach": "tty"}              (-t: the client makes its terminal raw)
    client -> agent   {"go": true, "tty_size": [rows, cols]}
    agent  -> client  {"started": true}               (the program runs)
    client -> agent   {"signal": N} | {"resize": [rows, cols]}   (any number, any time after the
                      request: the client forwards SIGINT, SIGTERM, SIGHUP and SIGQUIT from the start;
                      the agent passes them to the program without -t unless --sig-proxy=false,
                      and otherwise answers with exit 128+N, leaving the container running)
    agent  -> client  {"out": text} / {"err": text} / {"trace": text}, then {"exit": code} (last)

`orch build` speaks the same protocol on its own socket, ORCH_RUN/build.sock
(orch/node/agent/building.py: its output comes back as "out"/"err" messages, then "exit"); a
socket of its own, so that an agent older than the client cannot take a build's command line
for a run's. Messages are `marshal`ed dicts of plain values (built in, so free to import for
the client; both ends are the same installation, and only root can connect). `orch run`'s command line is
parsed by the very parser `orch create` uses (orch.api.runflags), so flags, help and one-line
misuse errors are the same; the client's environment and working directory come along for
`-e NAME` and `--env-file`.

What the supervisor gets: a terminal (-t), which it reads and writes for a container that has
a pty of its own; stdout and stderr of a container, which it writes the output to (and the log);
stdin, and an exec's stdout and stderr, which the program holds itself: those are never a
terminal (the relay above), so a program cannot read what the user types after it ended or
change the terminal's settings. This agent only relays signals and window sizes and waits for
the exit event on that supervisor connection. With `--rm` it answers once the container is
removed, as `docker run --rm` does.
"""

import marshal
import os
import sys
import time
import traceback

import trio

from orch.errors import Conflict, InvalidArgument, OrchError, Unavailable
from orch.node.agent import limits
from orch.node.runtime import superproto as proto

MAX_MESSAGE = 1 << 20
CLIENT_FDS = 3  # the client's stdin, stdout, stderr
ROLES = ("stdin", "stdout", "stderr")
# What connections can make the agent hold. A client sends its request as soon as it has
# connected, so a connection gets FIRST_MESSAGE seconds for it, and at most MAX_PENDING wait for
# theirs at once: one more drops the one that has waited longest (so silent connections cannot
# keep a real `orch run` out; they can only lose their own place). Runs in progress (a
# container attached to its client) are bounded by MAX_RUNS; one more is refused in one line.
FIRST_MESSAGE = 5.0
MAX_PENDING = 32
MAX_RUNS = 1024


async def serve(node, path: str, handler=None, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Serve `handler`'s command (Run, or building.BuildCommand on build.sock) on `path`."""
    handler = handler or Run
    pending: dict[trio.CancelScope, None] = {}  # waiting for their request, oldest first
    runs = [0]
    async with (limits.private_unix_listener(path, 64, trio.socket.SOCK_SEQPACKET) as listener,
                trio.open_nursery() as nursery):
        task_status.started()
        while True:
            conn, _ = await listener.accept()
            if len(pending) >= MAX_PENDING:
                oldest = next(iter(pending))
                oldest.cancel()
                del pending[oldest]
            waiting = trio.CancelScope(deadline=trio.current_time() + FIRST_MESSAGE)
            pending[waiting] = None
            nursery.start_soon(_handle, node, conn, handler, waiting, pending, runs)


async def _handle(node, conn, handler, waiting: trio.CancelScope, pending: dict, runs: list[int]) -> None:
    fds: list[int] = []
    counted = False
    try:
        with conn:
            try:
                with waiting:
                    data, fds = await _recv(conn)
                pending.pop(waiting, None)
                if waiting.cancelled_caught or not data:
                    return  # nothing said in time (or another connection took its place), or gone
                if runs[0] >= MAX_RUNS:
                    raise Unavailable(f"the agent is serving {MAX_RUNS} runs at once; try again when some end")
                runs[0] += 1
                counted = True
                try:
                    request = marshal.loads(data)
                    op = request.get("op", "run")
                    if op == "run":
                        request["argv"] = [str(word) for word in request["argv"]]
                    elif op not in handler.OPS or not isinstance(request.get("ref"), str):
                        raise KeyError(op)
                except (ValueError, EOFError, TypeError, KeyError, AttributeError) as err:
                    raise _Unreadable() from err
                code = await handler(node, conn, request, fds).run()
            except OrchError as err:
                code = err.exit_code
                await _send(conn, {"err": f"orch: {err}\n"})
            except _Unreadable:
                code = 2
                await _send(conn, {"err": "orch: the run request could not be read; is the CLI from this installation?\n"})
            except OSError:
                raise  # the client went away (below)
            except Exception as err:  # a bug: one line for the user, the traceback in the agent's log
                traceback.print_exc(file=sys.stderr)
                code = 70
                await _send(conn, {"err": f"orch: internal error in 'orch run': {type(err).__name__}: {err}; see ORCH_ROOT/agent.log\n"})
            await _send(conn, {"exit": code})
    except OSError:
        pass  # the client went away; the container, if any, runs on as a detached one
    finally:
        pending.pop(waiting, None)
        if counted:
            runs[0] -= 1
        for fd in fds:
            _close(fd)


class _Unreadable(Exception):
    """The request itself could not be decoded (a client of another installation)."""


class Command:
    """One command on a lean client's socket: what the client asked, the connection to answer
    on, the fds it sent, and ORCH_TRACE's marks. `run()` answers with the exit code. Requests
    carry an argv, unless their "op" is one of OPS (which need a "ref")."""

    OPS: tuple[str, ...] = ()

    def __init__(self, node, conn, request: dict, fds: list[int]):
        self.node, self.conn, self.request, self.fds = node, conn, request, fds
        # ORCH_TRACE=1 in the client: the agent's steps in ms, sent with the answers.
        self.marks: list | None = [("received", time.perf_counter())] if request.get("trace") else None

    def mark(self, what: str) -> None:
        if self.marks is not None:
            self.marks.append((what, time.perf_counter()))

    def steps(self) -> dict:
        """{"trace": "parsed +0.2, created +1.9, ..."} for the client to print, or {}."""
        if not self.marks:
            return {}
        text = ", ".join(f"{what} +{(t - self.marks[i][1]) * 1000:.1f}" for i, (what, t) in enumerate(self.marks[1:]))
        return {"trace": text}


class Run(Command):
    """One `orch run`, `orch exec` or `orch start -a`."""

    OPS = ("exec", "start", "attach")

    def _check_fds(self) -> None:
        if len(self.fds) != CLIENT_FDS:
            raise InvalidArgument(f"the request carries {len(self.fds)} descriptors, not the client's stdin, stdout and stderr")

    def _tty_in(self) -> bool:
        ttys = self.request.get("ttys") or ()
        return bool(ttys and ttys[0])

    async def run(self) -> int:
        op = self.request.get("op", "run")
        if op == "attach":
            return await self.attach()
        return await (self.run_container() if op == "run" else self.start() if op == "start" else self.exec())

    async def run_container(self) -> int:
        from orch.api.runflags import HelpShown, parse_run

        env, cwd = self.request.get("env") or {}, self.request.get("cwd") or "/"
        try:
            a, body = parse_run(self.request["argv"], environ=env, cwd=cwd)
            self.mark("parsed")
        except HelpShown as shown:
            await _send(self.conn, {"out": shown.text})
            return 0
        if a.tty and not a.detach and not self._tty_in():
            raise InvalidArgument("the input device is not a TTY; drop -t or run from a terminal")
        self._check_fds()
        from orch.api.models import CreateRequest

        rec = await self.node.create(_validated(CreateRequest, body, "run"))
        self.mark("created")
        if a.detach:
            await self.node.start(rec)
            await _send(self.conn, {"out": rec["Id"] + "\n"})
            return 0
        start = lambda roles, fds, size: self.node.start_attached(rec, roles, fds, size)  # noqa: E731
        return await self.attached(rec, start, tty=a.tty, stdin=a.interactive, sig_proxy=a.sig_proxy != "false", program_holds=("stdin",))

    async def start(self) -> int:
        """`orch start -a [-i] CONTAINER`: a created or exited container, attached."""
        from orch.node.agent import wiring

        self._check_fds()
        rec = self.node.get(self.request["ref"])
        tty = bool(rec["Config"].get("Tty"))
        if tty and not self._tty_in():
            raise InvalidArgument(f"the input device is not a TTY, and container {self.node.display(rec)} has one; "
                                  "start it from a terminal, or without -a")
        self.node.change(rec, "start")
        await trio.to_thread.run_sync(wiring.setup_network, self.node, rec)  # its network, before the supervisor starts it
        start = lambda roles, fds, size: self.node.start_attached(rec, roles, fds, size)  # noqa: E731
        return await self.attached(rec, start, tty=tty, stdin=bool(self.request.get("interactive")), sig_proxy=True,
                                   program_holds=("stdin",))

    async def exec(self) -> int:
        """`orch exec CONTAINER COMMAND` (not -d, which is POST /containers/{ref}/exec)."""
        from orch.api.models import ExecRequest

        self._check_fds()
        rec = self.node.get(self.request["ref"])
        req = _validated(ExecRequest, self.request.get("exec") or {}, "exec")
        if req.detach:
            raise InvalidArgument("a detached exec is POST /containers/{ref}/exec, not a session on run.sock")
        if req.tty and not self._tty_in():
            raise InvalidArgument("the input device is not a TTY; drop -t or run from a terminal")
        process = self.node.exec_process(rec, req)
        start = lambda roles, fds, size: self.node.exec_attached(rec, process, roles, fds, size)  # noqa: E731
        # Without a terminal of its own the exec'd program holds all three (its output is not
        # logged, as in docker).
        return await self.attached(None, start, tty=req.tty, stdin=req.interactive, sig_proxy=True,
                                   program_holds=("stdin", "stdout", "stderr"))

    async def attach(self) -> int:
        """`orch attach CONTAINER`: join a running container's stdio (docker's rules: its
        stdin only if it was made with -i and not --no-stdin; with a tty the client's terminal
        goes raw; the detach keys, ctrl-p ctrl-q by default, end the session with "read escape
        sequence" and exit 1, as docker's CLI does, and the container runs on)."""
        from orch.node.runtime.escape import DEFAULT, BadKeys, parse_detach_keys

        self._check_fds()
        rec = self.node.get(self.request["ref"])
        status = rec["State"]["Status"]
        if status == "paused":
            raise Conflict("You cannot attach to a paused container, unpause it first")
        if status != "running":
            raise Conflict("You cannot attach to a stopped container, start it first")
        tty = bool(rec["Config"].get("Tty"))
        stdin = bool(rec["Config"].get("OpenStdin")) and not self.request.get("no_stdin")
        if tty and stdin and not self._tty_in():
            raise InvalidArgument("the input device is not a TTY")
        try:
            keys = parse_detach_keys(self.request.get("detach_keys") or DEFAULT)
        except BadKeys as err:
            raise InvalidArgument(str(err)) from None
        tty_size = None
        if tty and stdin:
            await _send(self.conn, {"attach": "tty"})
            tty_size = (await self._answer("go")).get("tty_size")
            roles, fds = ["tty"], [self.fds[0]]
        elif tty:
            roles, fds = ["stdout"], [self.fds[1]]
        else:
            roles, fds = ["stdout", "stderr"], self.fds[1:]
            if stdin:
                roles, fds = ["stdin", *roles], self.fds
        self.node.events.container(rec, "attach")
        sup = await self.node.attach_running(rec, roles, fds, tty_size, keys)
        with sup:
            for fd in self.fds:
                _close(fd)
            self.fds.clear()
            await _send(self.conn, {"started": True})
            code = await self._relay_until_exit(sup, tty=tty, sig_proxy=self.request.get("sig_proxy", True) is not False)
        if code is None:  # detached
            self.node.events.container(rec, "detach")
            await _send(self.conn, {"err": "read escape sequence" + ("\r\n" if tty and stdin else "\n")})
            return 1
        return code

    async def attached(self, rec, start, *, tty: bool, stdin: bool, sig_proxy: bool, program_holds) -> int:
        """Start (or exec) with the client's descriptors; relay until the exit; return its code.
        `rec`: the container whose --rm removal to wait for, if any; `program_holds`: the roles
        whose descriptors the program itself gets, which must not be the user's terminal."""
        tty_size = None
        if tty:
            await _send(self.conn, {"attach": "tty"})
            answer = await self._answer("go")
            tty_size = answer.get("tty_size")
            roles, fds = ["tty"], [self.fds[0]]
        else:
            await self._relay_terminals([i for i, role in enumerate(ROLES) if role in program_holds and (stdin or role != "stdin")])
            roles, fds = ["stdout", "stderr"], self.fds[1:]
            if stdin:
                roles, fds = ["stdin", *roles], self.fds
        auto_remove = rec is not None and rec["HostConfig"].get("AutoRemove")
        if rec is not None:
            self.node.events.container(rec, "attach")
        try:
            sup = await start(roles, fds, tty_size)
        except OrchError:
            if auto_remove:
                with trio.move_on_after(10):
                    await self.node.wait(rec, "removed")  # as after an exit: gone when we answer
            raise
        with sup:
            for fd in self.fds:
                _close(fd)  # the supervisor holds its own copies now
            self.fds.clear()
            self.mark("started")
            await _send(self.conn, {"started": True})
            code = await self._relay_until_exit(sup, tty=tty, sig_proxy=sig_proxy)
            self.mark("exited")
        if auto_remove:
            await self.node.wait(rec, "removed")
            self.mark("removed")
        if self.marks:
            await _send(self.conn, self.steps())
        return code

    async def _relay_terminals(self, candidates: list[int]) -> None:
        """Ask the client to put pipes in place of those of `candidates` (0, 1, 2) that are
        terminals; a pipe or a file is passed as it is, at no cost."""
        ttys = list(self.request.get("ttys") or ())
        wanted = [i for i in candidates if i < len(ttys) and ttys[i]]
        if not wanted:
            return
        await _send(self.conn, {"relay": wanted})
        answer, fds = await self._answer("relayed", with_fds=True)
        if list(answer.get("relayed") or ()) != wanted or len(fds) != len(wanted):
            for fd in fds:
                _close(fd)
            raise InvalidArgument("the client answered the relay with other descriptors than asked")
        for i, fd in zip(wanted, fds):
            _close(self.fds[i])
            self.fds[i] = fd

    async def _answer(self, key: str, *, with_fds: bool = False):
        """The client's next message that has `key` (a signal it forwarded meanwhile has no one
        to go to yet)."""
        while True:
            data, extra = await _recv(self.conn)
            if not data:
                for fd in extra:
                    _close(fd)
                raise Unavailable("the client left before the container started")
            answer = marshal.loads(data)
            if key in answer:
                return (answer, extra) if with_fds else answer
            for fd in extra:
                _close(fd)

    async def _relay_until_exit(self, sup, *, tty: bool, sig_proxy: bool) -> int:
        """Forward the client's signals and window sizes until the supervisor says it exited."""
        code = None
        signalled: list[int] = []
        async with trio.open_nursery() as nursery:
            async def from_client():
                while True:
                    data, extra = await _recv(self.conn)
                    for fd in extra:
                        _close(fd)
                    if not data:
                        # The client left (killed, or its terminal closed): the container
                        # goes on, as with a detached docker client; stop waiting for it.
                        nursery.cancel_scope.cancel()
                        return
                    msg = marshal.loads(data)
                    if "resize" in msg and tty:
                        rows, cols = msg["resize"]
                        await sup.send(proto.encode({"op": "resize", "rows": rows, "cols": cols}))
                    elif "signal" in msg and sig_proxy and not tty:
                        await sup.send(proto.encode({"op": "signal", "signal": int(msg["signal"])}))
                    elif "signal" in msg:
                        # Not proxied (-t, or --sig-proxy=false): the signal ends the client,
                        # as it ends docker's; the container runs on.
                        signalled.append(int(msg["signal"]))
                        nursery.cancel_scope.cancel()
                        return

            nursery.start_soon(from_client)
            while True:
                data = await sup.recv(proto.MAX_MESSAGE)
                if not data:
                    raise Unavailable("the node supervisor went away before the container exited; see ORCH_ROOT/supervisor.log")
                event = proto.decode(data)
                if event.get("event") == "exit":
                    code = int(event["exit_code"])
                    nursery.cancel_scope.cancel()
                    break
                if event.get("event") == "detached":  # an attach session's detach keys
                    nursery.cancel_scope.cancel()
                    return None
        if signalled:
            return 128 + signalled[0]
        if code is None:
            raise Unavailable("the client left before the container exited")
        return code


def _validated(model, body: dict, what: str):
    """`body` as `model`; a value that does not fit is one line naming the field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(body)
    except ValidationError as err:
        first = err.errors()[0]
        raise InvalidArgument(f"{what}: {'.'.join(str(p) for p in first['loc']) or 'request'}: {first['msg'].lower()}") from None


async def _recv(conn) -> tuple[bytes, list[int]]:
    # MSG_CMSG_CLOEXEC: the client's descriptors must never leak into a process forked later.
    data, ancdata, _flags, _addr = await conn.recvmsg(MAX_MESSAGE, trio.socket.CMSG_LEN(CLIENT_FDS * 4), trio.socket.MSG_CMSG_CLOEXEC)
    return data, proto.fds_of(ancdata)


async def _send(conn, msg: dict) -> None:
    await conn.send(marshal.dumps(msg))


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass
