"""Container commands with docker's flags and output: create, ps, logs, top, exec, start,
stop, restart, kill, pause, unpause, rm, inspect, wait, port, diff, and the `container` group.

Every one is a client of the agent's API and of nothing else: HTTP on orch.sock for most, and a
session on run.sock for those that carry the user's stdio (`exec`, `start -a`, and `run`,
whose client is orch/cli/fastrun.py). The flags of `run` and `create` and the request they
make are orch.api.runflags, which the agent uses for `orch run` too. pydantic, trio and yaml
stay out of this process.
"""

import argparse
import json
import sys

from orch.api.args import Parser
from orch.client import quoted
from orch.errors import InvalidArgument, OrchError

def _parser(prog: str, description: str, add_help: bool = True) -> argparse.ArgumentParser:
    return Parser(prog=prog, description=description, add_help=add_help)


def _agent():
    from orch.cli._agent import client

    return client()


# -- create / start / exec -----------------------------------------------------------------------
def create(prog: str, argv: list[str]) -> int:
    from orch.api.runflags import create_body, create_parser

    a = create_parser(prog).parse_args(argv)
    print(_agent().call("POST", "/containers/create", create_body(a))["Id"])
    return 0


def start(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Start one or more stopped containers")
    p.add_argument("-a", "--attach", action="store_true")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    if a.attach:
        if len(a.containers) > 1:
            raise InvalidArgument("you cannot start and attach multiple containers at once")
        from orch.cli.fastrun import session

        return session({"op": "start", "ref": a.containers[0], "interactive": a.interactive})
    client = _agent()
    return _each(client, a.containers, lambda c: client.call("POST", f"/containers/{quoted(c)}/start"))


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
    from orch.api.runflags import parse_env

    body = {"cmd": a.command, "env": parse_env(a.env, a.env_file), "tty": a.tty and not a.detach, "interactive": a.interactive,
            "detach": a.detach}
    if a.workdir:
        body["workdir"] = a.workdir
    if a.user is not None:
        body["user"] = a.user
    if a.detach:
        _agent().call("POST", f"/containers/{quoted(a.container)}/exec", body)
        return 0
    from orch.cli.fastrun import session

    return session({"op": "exec", "ref": a.container, "exec": body})


def attach(prog: str, argv: list[str]) -> int:
    """docker attach: a session on run.sock, as `exec` and `start -a` (the agent joins the
    running container's stdio with ours; the detach keys end it, the container runs on)."""
    p = _parser(prog, "Attach local standard input, output, and error streams to a running container")
    p.add_argument("--detach-keys", help="override the key sequence for detaching a container (default ctrl-p,ctrl-q)")
    p.add_argument("--no-stdin", action="store_true", help="do not attach STDIN")
    p.add_argument("--sig-proxy", nargs="?", const="true", default="true", choices=("true", "false"),
                   help="proxy all received signals to the process (default true)")
    p.add_argument("container")
    a = p.parse_args(argv)
    from orch.cli.fastrun import session

    return session({"op": "attach", "ref": a.container, "detach_keys": a.detach_keys or "", "no_stdin": a.no_stdin,
                    "sig_proxy": a.sig_proxy == "true"})


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
    return _each(client, a.containers, lambda c: client.call(method, f"/containers/{quoted(c)}{path}{suffix}"))


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
            print(client.call("POST", f"/containers/{quoted(ref)}/wait")["StatusCode"])
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
    path = f"/containers/{quoted(a.container)}/top"
    if a.ps_args:
        path += "?ps_args=" + quoted(" ".join(a.ps_args))
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
    path = f"/containers/{quoted(a.container)}/logs" + ("?" + "&".join(query) if query else "")
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
            found.append(client.call("GET", f"/containers/{quoted(ref)}/json"))
        except NotFound as err:
            if a.type == "container":
                print(f"orch: {err}", file=sys.stderr)
                failed = 1
                continue
            try:
                found.append(client.call("GET", f"/images/{quoted(ref, safe='/:@')}/json"))
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
    for change in _agent().call("GET", f"/containers/{quoted(a.container)}/changes"):
        print(f"{'CAD'[change['Kind']]} {change['Path']}")
    return 0


def port(prog: str, argv: list[str]) -> int:
    """orch port CONTAINER [PRIVATE_PORT[/PROTO]]: docker's lines "80/tcp -> 0.0.0.0:8080"."""
    p = Parser(prog=prog, description="List port mappings or a specific mapping for the container")
    p.add_argument("container")
    p.add_argument("private_port", nargs="?")
    a = p.parse_args(argv)
    info = _agent().call("GET", f"/containers/{quoted(a.container)}/json")
    ports = (info.get("NetworkSettings") or {}).get("Ports") or {}
    if a.private_port:
        key = a.private_port if "/" in a.private_port else a.private_port + "/tcp"
        bound = ports.get(key)
        if not bound:
            raise InvalidArgument(f"no public port '{key}' published for {a.container}")
        for b in bound:
            print(f"{b['HostIp']}:{b['HostPort']}")
        return 0
    for key in sorted(ports, key=lambda k: (int(k.split("/")[0]), k)):
        for b in ports[key] or ():
            print(f"{key} -> {b['HostIp']}:{b['HostPort']}")
    return 0


# -- rename / update / prune -------------------------------------------------------------------------
def rename(prog: str, argv: list[str]) -> int:
    p = _parser(prog, "Rename a container")
    p.add_argument("container")
    p.add_argument("new_name")
    a = p.parse_args(argv)
    _agent().call("POST", f"/containers/{quoted(a.container)}/rename?name={quoted(a.new_name)}")
    return 0


UPDATE_FLAGS = (("--blkio-weight", "BlkioWeight"), ("--cpu-period", "CpuPeriod"), ("--cpu-quota", "CpuQuota"),
                ("--cpu-rt-period", "CpuRealtimePeriod"), ("--cpu-rt-runtime", "CpuRealtimeRuntime"),
                ("--cpu-shares", "CpuShares"), ("--cpuset-cpus", "CpusetCpus"), ("--cpuset-mems", "CpusetMems"),
                ("--kernel-memory", "KernelMemory"), ("--memory-reservation", "MemoryReservation"))


def update(prog: str, argv: list[str]) -> int:
    """docker update: limits (cgroup writes for a running container) and the restart policy."""
    from orch.api.runflags import parse_bytes
    from orch.api.supervisionflags import parse_restart

    p = _parser(prog, "Update configuration of one or more containers")
    p.add_argument("--cpus")
    p.add_argument("-m", "--memory")
    p.add_argument("--memory-swap")
    p.add_argument("--pids-limit", type=int)
    p.add_argument("--restart")
    for flag, _ in UPDATE_FLAGS:
        p.add_argument(flag, *(("-c",) if flag == "--cpu-shares" else ()))
    p.add_argument("containers", nargs="+")
    a = p.parse_args(argv)
    body: dict = {}
    if a.cpus is not None:
        try:
            body["NanoCpus"] = round(float(a.cpus) * 1e9)
        except ValueError:
            raise InvalidArgument(f"invalid argument {a.cpus!r} for \"--cpus\" flag: give a number such as 1.5") from None
    if a.memory:
        body["Memory"] = parse_bytes(a.memory, "--memory")
    if a.memory_swap:
        body["MemorySwap"] = -1 if a.memory_swap == "-1" else parse_bytes(a.memory_swap, "--memory-swap")
    if a.pids_limit is not None:
        body["PidsLimit"] = a.pids_limit
    if a.restart:
        policy = parse_restart(a.restart)
        body["RestartPolicy"] = {"Name": policy["name"], "MaximumRetryCount": policy["maximum_retry_count"]}
    for flag, field in UPDATE_FLAGS:
        value = getattr(a, flag.lstrip("-").replace("-", "_"))
        if value is not None:
            body[field] = value  # the agent says, in one line, that orch does not change it
    if not body:
        raise InvalidArgument("you must provide one or more flags when using this command")
    client = _agent()
    return _each(client, a.containers, lambda c: client.call("POST", f"/containers/{quoted(c)}/update", body))


def prune(prog: str, argv: list[str]) -> int:
    """docker container prune: the stopped containers, with --filter until=/label=."""
    from orch.cli.events import parse_filter_flags
    from orch.cli.format import human_size

    p = _parser(prog, "Remove all stopped containers")
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    p.add_argument("--filter", action="append", default=[], help="until=<timestamp or duration>, label=<key>[=<value>], label!=...")
    a = p.parse_args(argv)
    filters = parse_filter_flags(a.filter)
    if not a.force:
        print("WARNING! This will remove all stopped containers.\nAre you sure you want to continue? [y/N] ", end="", flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    path = "/containers/prune"
    if filters:
        path += "?filters=" + quoted(json.dumps(filters))
    result = _agent().call("POST", path)
    if result.get("ContainersDeleted"):
        print("Deleted Containers:")
        for cid in result["ContainersDeleted"]:
            print(cid)
        print()
    print(f"Total reclaimed space: {human_size(result['SpaceReclaimed'], 4)}")
    return 0


# -- the `container` group ---------------------------------------------------------------------------
def _fast_run(prog: str, argv: list[str]) -> int:
    from orch.cli.fastrun import run

    return run(prog, argv)


GROUP = {
    "run": _fast_run, "create": create, "start": start, "stop": stop, "restart": restart, "kill": kill, "pause": pause,
    "unpause": unpause, "rm": rm, "remove": rm, "inspect": inspect, "logs": logs, "top": top, "exec": exec_, "wait": wait,
    "ls": ps, "list": ps, "ps": ps, "diff": diff, "port": port, "rename": rename, "update": update, "prune": prune,
    "attach": attach,
    "stats": lambda prog, argv: _command("orch.cli.stats", "main", prog, argv),
    "cp": lambda prog, argv: _command("orch.cli.cp", "cp", prog, argv),
    "export": lambda prog, argv: _command("orch.cli.cp", "export", prog, argv),
}


def _command(module: str, func: str, prog: str, argv: list[str]) -> int:
    """A container command whose code lives in a module of its own (imported when it runs)."""
    import importlib

    return getattr(importlib.import_module(module), func)(prog, argv)


def container_group(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage containers\n\nCommands: " + ", ".join(sorted(GROUP)))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    func = GROUP.get(name)
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {name}'; run '{prog} --help' for the list")
    return func(f"{prog} {name}", rest)
