"""Container commands with docker's flags and output: run, create, ps, logs, top, exec, start,
stop, restart, kill, pause, unpause, rm, inspect, wait, and the `container` group.

`orch run` is the hot path: this module imports only the standard library's lean parts, the
agent client and the supervisor protocol. An attached run asks the agent to create the
container, then hands its own stdin/stdout/stderr (or its terminal) to the supervisor, so the
program's output goes straight to the user's terminal and to the log, and waits there for the
exit code. pydantic, trio and yaml stay out of this process.
"""

import argparse
import json
import os
import signal
import sys

from orch.cli.args import Parser
from orch.errors import InvalidArgument, OrchError

UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}


def parse_bytes(text: str, flag: str) -> int:
    """docker's RAMInBytes: 512m, 1g, 1.5G, 1024 (bytes), 100kb."""
    t = text.strip().lower()
    if t.endswith("b") and len(t) > 1 and t[-2] in "kmgtp":
        t = t[:-1]
    unit = t[-1] if t and t[-1] in "bkmgtp" else ""
    number = t[: len(t) - len(unit)]
    try:
        value = float(number)
    except ValueError:
        raise InvalidArgument(f"invalid size {text!r} for {flag}; use a number with an optional unit b, k, m, g (e.g. 512m)") from None
    if value < 0:
        raise InvalidArgument(f"invalid size {text!r} for {flag}: it must not be negative")
    return int(value * UNITS[unit])


def parse_env(values: list[str], files: list[str], *, environ=None, cwd: str | None = None) -> list[str]:
    """-e K=V, -e K (taken from the client's environment `environ`; dropped if unset), and
    --env-file lines (a relative path is relative to the client's `cwd`)."""
    environ = os.environ if environ is None else environ
    env = []
    for path in files:
        try:
            lines = open(os.path.join(cwd, path) if cwd else path).read().splitlines()
        except OSError as err:
            raise InvalidArgument(f"cannot read env file {path}: {err.strerror}") from None
        for n, line in enumerate(lines, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.split("=", 1)[0].strip() != line.split("=", 1)[0] or " " in line.split("=", 1)[0]:
                raise InvalidArgument(f"{path}:{n}: variable name {line.split('=', 1)[0]!r} contains whitespace")
            env.append(line if "=" in line else _from_environ(line, environ))
    for v in values:
        env.append(v if "=" in v else _from_environ(v, environ))
    return [e for e in env if e is not None]


def _from_environ(name: str, environ):
    return f"{name}={environ[name]}" if name in environ else None


# -- argument parsers ---------------------------------------------------------------------------
def _parser(prog: str, description: str, add_help: bool = True) -> argparse.ArgumentParser:
    return Parser(prog=prog, description=description, add_help=add_help)


def _add_create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-i", "--interactive", action="store_true", help="keep STDIN open")
    p.add_argument("-t", "--tty", action="store_true", help="allocate a pseudo-TTY")
    p.add_argument("--rm", action="store_true", help="remove the container when it exits")
    p.add_argument("--name")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-h", "--hostname")
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--entrypoint")
    p.add_argument("-m", "--memory")
    p.add_argument("--memory-swap")
    p.add_argument("--cpus", type=float)
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--network", "--net", dest="network")
    p.add_argument("--init", action="store_true")
    p.add_argument("-l", "--label", action="append", default=[])
    p.add_argument("--log-opt", action="append", default=[])
    from orch.cli.supervision_flags import add_flags

    add_flags(p)
    p.add_argument("--help", action="help")
    from orch.cli.wireflags import add_flags

    add_flags(p)  # networks, ports, mounts
    from orch.cli.security_flags import add_flags

    add_flags(p)  # capabilities, read-only root, sysctls, ulimits
    p.add_argument("image")
    p.add_argument("command", nargs=argparse.REMAINDER)


def _create_body(a, environ=None, cwd: str | None = None) -> dict:
    body = {"image": a.image, "cmd": a.command or None, "env": parse_env(a.env, a.env_file, environ=environ, cwd=cwd), "tty": a.tty, "open_stdin": a.interactive,
            "auto_remove": a.rm, "init": a.init}
    if a.entrypoint is not None:
        body["entrypoint"] = [a.entrypoint] if a.entrypoint else []
    for key in ("name", "hostname", "workdir", "user", "network"):
        if getattr(a, key):
            body[key] = getattr(a, key)
    if a.memory:
        body["memory"] = parse_bytes(a.memory, "--memory")
        if body["memory"] < 6 * 1024 * 1024:
            raise InvalidArgument("minimum memory limit allowed is 6MB (--memory)")
    if a.memory_swap:
        body["memory_swap"] = -1 if a.memory_swap == "-1" else parse_bytes(a.memory_swap, "--memory-swap")
    if a.cpus is not None:
        if a.cpus <= 0:
            raise InvalidArgument(f"invalid --cpus {a.cpus}: it must be more than 0")
        body["nano_cpus"] = int(a.cpus * 1e9)
    if a.pids_limit is not None and a.pids_limit > 0:  # docker: 0 or -1 is unlimited
        body["pids_limit"] = a.pids_limit
    if a.label:
        body["labels"] = dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in a.label)
    from orch.cli.wireflags import body_fields

    body.update(body_fields(a))
    for opt in a.log_opt:
        key, _, value = opt.partition("=")
        if key == "max-size":
            body["log_max_size"] = parse_bytes(value, "--log-opt max-size")
        elif key == "max-file":
            if not value.isdigit() or int(value) < 1:
                raise InvalidArgument(f"invalid --log-opt max-file={value!r}: give a whole number of files, 1 or more")
            body["log_max_file"] = int(value)
        else:
            raise InvalidArgument(f"unknown log option {key!r}; json-file takes max-size and max-file")
    from orch.cli.supervision_flags import apply_flags

    apply_flags(a, body)
    from orch.cli.security_flags import apply_flags

    apply_flags(a, body, cwd=cwd)
    return body


def _agent():
    from orch.cli._agent import client

    return client()


# -- run / create / start -------------------------------------------------------------------------
# `orch run` itself is orch/cli/fastrun.py, a client that imports almost nothing; the node
# agent parses its command line with the parser below (orch/node/agent/runsock.py).
class HelpShown(Exception):
    """`orch run --help` parsed in the agent: the text goes back to the client."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class _HelpToClient(Parser):
    def print_help(self, file=None):
        raise HelpShown(self.format_help())


_run_parser = None


def parse_run(argv: list[str], *, environ: dict, cwd: str) -> tuple[argparse.Namespace, dict]:
    """`orch run`'s flags and the create request they make, for a client whose environment and
    working directory are `environ` and `cwd`. Misuse raises InvalidArgument; --help HelpShown."""
    global _run_parser
    if _run_parser is None:  # built once per agent; parse_args leaves a parser as it was
        p = _HelpToClient(prog="orch run", description="Create and run a new container from an image", add_help=False)
        p.add_argument("-d", "--detach", action="store_true")
        p.add_argument("--sig-proxy", default="true")
        _add_create_flags(p)
        _run_parser = p
    a = _run_parser.parse_args(argv)
    return a, _create_body(a, environ=environ, cwd=cwd)


def create(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Create a new container", add_help=False)
    _add_create_flags(p)
    a = p.parse_args(argv)
    print(_agent().call("POST", "/containers/create", _create_body(a))["Id"])
    return 0


def start(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    client = _agent()
    if a.attach:
        if len(a.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        info = client.call("GET", f"/containers/{a.containers[0]}/json")
        client.call("POST", f"/containers/{info['Id']}/prepare")  # its network, before the supervisor starts it
        return attach_start(info["Id"], tty=info["Config"]["Tty"], stdin=a.interactive, sig_proxy=True)
    return _each(client, a.containers, lambda c: client.call("POST", f"/containers/{c}/start"))


def attach_start(cid: str, *, tty: bool, stdin: bool, sig_proxy: bool) -> int:
    """Start container `cid` through the supervisor with this process's stdio attached."""
    from orch import paths

    info_path = os.path.join(os.fspath(paths.root()), "containers", cid)
    msg = {"op": "start", "id": cid, "config": os.path.join(info_path, "config.json")}
    log_opts = _log_opts(info_path)
    if log_opts:
        msg["log"] = log_opts
    return _attached(msg, tty=tty, stdin=stdin, sig_proxy=sig_proxy)


def _log_opts(cdir: str):
    try:
        with open(os.path.join(cdir, "state.json")) as f:
            return json.load(f).get("_log")
    except (OSError, ValueError):
        return None


def _attached(msg: dict, *, tty: bool, stdin: bool, sig_proxy: bool) -> int:
    """Send a start or exec with our fds; relay window sizes or Ctrl-C; return the exit code."""
    from orch import paths
    from orch.node.runtime import superproto as proto

    sock = proto.connect(str(paths.supervisor_socket()))
    restore = None
    if tty:
        fds, msg["attach"] = [0], ["tty"]
        size = os.get_terminal_size(0)
        msg["tty_size"] = [size.lines, size.columns]
        restore = _raw_mode(0)
    else:
        fds, msg["attach"] = [1, 2], ["stdout", "stderr"]
        if stdin:
            fds.insert(0, 0)
            msg["attach"].insert(0, "stdin")
    try:
        if tty:
            def on_winch(*_):
                s = os.get_terminal_size(0)
                proto.send(sock, {"op": "resize", "rows": s.lines, "cols": s.columns})

            signal.signal(signal.SIGWINCH, on_winch)
        elif sig_proxy:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
                signal.signal(sig, lambda signum, _f: proto.send(sock, {"op": "signal", "signal": signum}))
        proto.send(sock, msg, fds)
        answer, _ = proto.recv(sock)
        proto.raise_for_program(answer, msg["op"])
        while True:
            event, extra = proto.recv(sock)
            for fd in extra:
                os.close(fd)
            if event is None:
                raise OrchError("the node supervisor went away before the container exited; see ORCH_ROOT/supervisor.log")
            if event.get("event") == "exit":
                return int(event["exit_code"])
    finally:
        if restore is not None:
            restore()
        sock.close()


def _raw_mode(fd: int):
    import termios
    import tty

    old = termios.tcgetattr(fd)
    tty.setraw(fd)
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


# -- exec ------------------------------------------------------------------------------------------
def exec_(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("-t", "--tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--env-file", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("container")
    p.add_argument("command", nargs=argparse.REMAINDER)
    a = p.parse_args(argv)
    if not a.command:
        raise InvalidArgument("exec needs a command after the container, e.g. 'orch exec web ps'")
    if a.tty and not os.isatty(0) and not a.detach:
        raise InvalidArgument("the input device is not a TTY; drop -t or run from a terminal")
    body = {"cmd": a.command, "env": parse_env(a.env, a.env_file), "tty": a.tty and not a.detach, "interactive": a.interactive, "detach": a.detach}
    if a.workdir:
        body["workdir"] = a.workdir
    if a.user is not None:
        body["user"] = a.user
    prepared = _agent().call("POST", f"/containers/{a.container}/exec", body)
    msg = {"op": "exec", "id": prepared["Id"], "process": prepared["Process"]}
    if a.detach:
        from orch.node.runtime import superproto as proto

        proto.call(prepared["Supervisor"], dict(msg, detach=True))
        return 0
    return _attached(msg, tty=a.tty, stdin=a.interactive, sig_proxy=True)


# -- one verb on many containers ---------------------------------------------------------------
def _each(client, refs, action) -> int:
    """docker's habit: act on each container, print its name, report failures one a line."""
    failed = 0
    for ref in refs:
        try:
            action(ref)
            print(ref)
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
    return failed


def _verb(prog, argv, description, path, *, timeout=False, signal_flag=False, force=False):
    p = _parser(prog, description)
    if timeout:
        p.add_argument("-t", "--time", "--timeout", type=int, dest="time")
    if signal_flag:
        p.add_argument("-s", "--signal", default="SIGKILL")
    if force:
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("-v", "--volumes", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    client = _agent()
    query = []
    if timeout and a.time is not None:
        query.append(f"t={a.time}")
    if signal_flag:
        query.append(f"signal={a.signal}")
    if force and a.force:
        query.append("force=1")
    if force and a.volumes:
        query.append("v=1")
    suffix = ("?" + "&".join(query)) if query else ""
    method = "DELETE" if path == "" else "POST"
    return _each(client, a.containers, lambda c: client.call(method, f"/containers/{c}{path}{suffix}"))


def stop(prog, argv):
    return _verb(prog, argv, "Stop one or more running containers", "/stop", timeout=True)


def restart(prog, argv):
    return _verb(prog, argv, "Restart one or more containers", "/restart", timeout=True)


def kill(prog, argv):
    return _verb(prog, argv, "Kill one or more running containers", "/kill", signal_flag=True)


def pause(prog, argv):
    return _verb(prog, argv, "Pause all processes within one or more containers", "/pause")


def unpause(prog, argv):
    return _verb(prog, argv, "Unpause all processes within one or more containers", "/unpause")


def rm(prog, argv):
    return _verb(prog, argv, "Remove one or more containers", "", force=True)


def wait(prog, argv):
    p = _parser(prog, "Block until one or more containers stop, then print their exit codes")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    client = _agent()
    failed = 0
    for ref in a.containers:
        try:
            print(client.call("POST", f"/containers/{ref}/wait")["StatusCode"])
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
    return failed


# -- ps / top / logs / inspect -----------------------------------------------------------------------
PS_TABLE = "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"


def _ps_row(c: dict) -> dict:
    command = c["Command"]
    if len(command) > 20:
        command = command[:19] + "…"
    return {
        "ID": c["Id"][:12], "Image": c["Image"], "Command": f'"{command}"', "CreatedAt": c["Created"], "RunningFor": c["CreatedSince"],
        "Status": c["Status"], "State": c["State"], "Ports": c["Ports"], "Names": ",".join(n.lstrip("/") for n in c["Names"]),
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(c["Labels"].items())), "Size": "",
    }


def ps(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "List containers")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    a = p.parse_args(argv)
    rows = _agent().call("GET", "/containers/json" + ("?all=1" if a.all else ""))
    if a.quiet:
        for c in rows:
            print(c["Id"] if a.no_trunc else c["Id"][:12])
        return 0
    headers = {"ID": "CONTAINER ID", "Image": "IMAGE", "Command": "COMMAND", "RunningFor": "CREATED", "Status": "STATUS",
               "Ports": "PORTS", "Names": "NAMES", "State": "STATE", "CreatedAt": "CREATED AT", "Labels": "LABELS"}
    items = [_ps_row(c) for c in rows]
    if a.no_trunc:
        for item, c in zip(items, rows):
            item["ID"], item["Command"] = c["Id"], f'"{c["Command"]}"'
    print_table(a.format or PS_TABLE, items, headers)
    return 0


def print_table(fmt: str, items: list[dict], headers: dict) -> None:
    """docker's --format: a 'table ...' format gets a header row and aligned columns."""
    from orch.cli.format import render_rows

    for line in render_rows(fmt, items, headers):
        print(line.rstrip())


def top(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Display the running processes of a container")
    p.add_argument("container")
    p.add_argument("ps_args", nargs="*")
    a = p.parse_args(argv)
    path = f"/containers/{a.container}/top"
    if a.ps_args:
        from urllib.parse import quote

        path += "?ps_args=" + quote(" ".join(a.ps_args))
    result = _agent().call("GET", path)
    table = [result["Titles"], *result["Processes"]]
    widths = [max(len(r[i]) for r in table) for i in range(len(result["Titles"]))]
    for r in table:
        print("".join((c.ljust(widths[i] + 3) if i < len(r) - 1 else c) for i, c in enumerate(r)))
    return 0


def logs(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Fetch the logs of a container")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", default="all")
    p.add_argument("--since")
    p.add_argument("container")
    a = p.parse_args(argv)
    query = []
    if a.follow:
        query.append("follow=1")
    if a.tail != "all":
        if not a.tail.lstrip("-").isdigit():
            raise InvalidArgument(f"invalid --tail {a.tail!r}: use a number of lines or 'all'")
        query.append(f"tail={int(a.tail)}")
    if a.since:
        query.append(f"since={parse_since(a.since)}")
    path = f"/containers/{a.container}/logs" + ("?" + "&".join(query) if query else "")
    buf = b""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    for chunk in _agent().stream("GET", path):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line:
                continue
            entry = json.loads(line)
            text = (f"{entry['time']} " if a.timestamps else "") + entry["log"]
            stream = err if entry.get("stream") == "stderr" else out
            stream.write(text.encode())
            stream.flush()
    return 0


def parse_since(text: str) -> float:
    """docker's --since: a duration before now (10m, 1h30m, 45s) or an RFC 3339 time or a unix time."""
    import re
    import time

    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    m = re.fullmatch(r"((\d+)h)?((\d+)m)?((\d+(\.\d+)?)s)?", text)
    if m and text:
        seconds = int(m.group(2) or 0) * 3600 + int(m.group(4) or 0) * 60 + float(m.group(6) or 0)
        return time.time() - seconds
    from datetime import datetime

    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid --since {text!r}: use a duration such as 10m or a time such as 2024-01-02T15:04:05Z") from None


def inspect(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Return low-level information on containers (or images)")
    p.add_argument("-f", "--format")
    p.add_argument("--type", choices=("container", "image"))
    p.add_argument("objects", nargs="+")
    a = p.parse_args(argv)
    client = _agent()
    found, failed = [], 0
    from orch.errors import NotFound

    for ref in a.objects:
        try:
            if a.type == "image":
                raise NotFound(f"no such container: {ref}")
            found.append(client.call("GET", f"/containers/{ref}/json"))
        except NotFound as err:
            if a.type == "container":
                print(f"orch: {err}", file=sys.stderr)
                failed = 1
                continue
            try:
                found.append(client.call("GET", f"/images/{ref}/json"))
            except OrchError:
                print(f"orch: no such object: {ref}", file=sys.stderr)
                failed = 1
    from orch.cli.format import print_inspected

    print_inspected(found, a.format)
    return failed


def diff(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Inspect changes to files or directories on a container's filesystem")
    p.add_argument("container")
    a = p.parse_args(argv)
    for change in _agent().call("GET", f"/containers/{a.container}/changes"):
        print(f"{'CAD'[change['Kind']]} {change['Path']}")
    return 0


# -- the `container` group ---------------------------------------------------------------------------
def _fast_run(prog: str, argv: list[str]) -> int:
    from orch.cli.fastrun import run

    return run(prog, argv)


GROUP = {
    "run": _fast_run, "create": create, "start": start, "stop": stop, "restart": restart, "kill": kill, "pause": pause,
    "unpause": unpause, "rm": rm, "remove": rm, "inspect": inspect, "logs": logs, "top": top, "exec": exec_, "wait": wait,
    "ls": ps, "list": ps, "ps": ps, "diff": diff,
}


def container_group(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage containers\n\nCommands: " + ", ".join(sorted(GROUP)) + ", prune")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name == "prune":
        from orch.cli.system import prune

        return prune(f"{prog} prune", rest, images=False)
    func = GROUP.get(name)
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {name}'; run '{prog} --help' for the list")
    return func(f"{prog} {name}", rest)
