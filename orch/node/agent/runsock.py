"""`orch run`'s one connection: the agent parses, creates, starts and reports the exit.

Starting a container is the command people time. Python takes 11 ms to start here, and the
modules a full CLI needs (argparse, json, socket, pathlib, which pull in re and enum) about
15 ms more, so the `orch run` client (orch/cli/fastrun.py) imports only what is built into
the interpreter and sends its whole command line here, to a process that has everything
imported and warm. One SOCK_SEQPACKET connection on ORCH_RUN/run.sock (0600, root only) carries
the run from start to end:

    client -> agent   {"argv", "cwd", "env", "tty_in", "trace"} with the client's fds 0, 1, 2
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
for a run's. Messages are `marshal`ed dicts of plain values (built in, so free to import for the client;
both ends are the same installation, and only root can connect). The command line is parsed
by the very parser `orch create` uses (orch/cli/container.py), so flags, help and one-line
misuse errors are the same; the client's environment and working directory come along for
`-e NAME` and `--env-file`.

The client's stdout and stderr (or its terminal) go on to the supervisor, which hands them
to the container's pid 1 exactly as an attached `orch start -a` does; this agent only relays
signals and window sizes and waits for the exit event on that supervisor connection. With
`--rm` it answers once the container is removed, as `docker run --rm` does.
"""

import marshal
import os
import sys
import time
import traceback

import trio

from orch.errors import InvalidArgument, OrchError, Unavailable
from orch.node.runtime import superproto as proto

MAX_MESSAGE = 1 << 20
CLIENT_FDS = 3  # the client's stdin, stdout, stderr
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
    if os.path.exists(path):
        os.unlink(path)
    listener = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_SEQPACKET)
    old = os.umask(0o077)
    try:
        await listener.bind(path)
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    listener.listen(64)
    pending: dict[trio.CancelScope, None] = {}  # waiting for their request, oldest first
    runs = [0]
    try:
        async with trio.open_nursery() as nursery:
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
    finally:
        listener.close()
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


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
                    argv = [str(word) for word in request["argv"]]
                except (ValueError, EOFError, TypeError, KeyError) as err:
                    raise _Unreadable() from err
                code = await handler(node, conn, dict(request, argv=argv), fds).run()
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
    on, the fds it sent, and ORCH_TRACE's marks. `run()` answers with the exit code."""

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
    """One `orch run`."""

    async def run(self) -> int:
        from orch.cli.container import HelpShown, parse_run

        env, cwd = self.request.get("env") or {}, self.request.get("cwd") or "/"
        try:
            a, body = parse_run(self.request["argv"], environ=env, cwd=cwd)
            self.mark("parsed")
        except HelpShown as shown:
            await _send(self.conn, {"out": shown.text})
            return 0
        if a.tty and not a.detach and not self.request.get("tty_in"):
            raise InvalidArgument("the input device is not a TTY; drop -t or run from a terminal")
        if len(self.fds) != CLIENT_FDS:
            raise InvalidArgument(f"the run request carries {len(self.fds)} descriptors, not the client's stdin, stdout and stderr")
        from pydantic import ValidationError

        from orch.node.agent.models import CreateRequest

        try:
            request = CreateRequest.model_validate(body)
        except ValidationError as err:
            first = err.errors()[0]
            raise InvalidArgument(f"run: {'.'.join(str(p) for p in first['loc']) or 'request'}: {first['msg'].lower()}") from None
        rec = await self.node.create(request)
        self.mark("created")
        if a.detach:
            await self.node.start(rec)
            await _send(self.conn, {"out": rec["Id"] + "\n"})
            return 0
        return await self.attached(rec, tty=a.tty, stdin=a.interactive, sig_proxy=a.sig_proxy != "false")

    async def attached(self, rec: dict, *, tty: bool, stdin: bool, sig_proxy: bool) -> int:
        tty_size = None
        if tty:
            await _send(self.conn, {"attach": "tty"})
            while True:  # the client's "go" (a signal it forwarded meanwhile has no one to go to)
                data, extra = await _recv(self.conn)
                for fd in extra:
                    _close(fd)
                if not data:
                    raise Unavailable("the client left before the container started")
                answer = marshal.loads(data)
                if answer.get("go"):
                    break
            tty_size = answer.get("tty_size")
            roles, fds = ["tty"], [self.fds[0]]
        else:
            roles, fds = ["stdout", "stderr"], self.fds[1:]
            if stdin:
                roles, fds = ["stdin", *roles], self.fds
        try:
            sup = await self.node.start_attached(rec, roles, fds, tty_size)
        except OrchError:
            if rec["HostConfig"].get("AutoRemove"):
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
        if rec["HostConfig"].get("AutoRemove"):
            await self.node.wait(rec, "removed")
            self.mark("removed")
        if self.marks:
            await _send(self.conn, self.steps())
        return code

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
        if signalled:
            return 128 + signalled[0]
        if code is None:
            raise Unavailable("the client left before the container exited")
        return code


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
