"""`orch service create|ls|ps|inspect|logs|scale|update|rollback|rm`, in docker's grammar,
through the agent's cluster routes (a manager's). Flags -> ServiceSpec is serviceflags.py;
the columns and placeholders are swarmfmt.py; the wait for convergence is converge.py."""

from __future__ import annotations

import json
import os
import sys
import time
from urllib.parse import quote

from orch.api.args import Parser
from orch.errors import InvalidArgument, OrchError


def _client():
    from orch.cli._agent import client

    return client()


def _q(ref: str) -> str:
    return quote(ref, safe="")


def _filters(items: list[str], extra: dict[str, list[str]] | None = None) -> str:
    """docker's --filter key=value (repeatable) as the `filters` query."""
    filters: dict[str, list[str]] = {k: list(v) for k, v in (extra or {}).items()}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        filters.setdefault(key, []).append(value)
    return "filters=" + quote(json.dumps(filters), safe="") if filters else ""


def _read_file(path: str) -> str:
    with open(path) as f:
        return f.read()


def _wait(client, refs: list[str], quiet: bool) -> int:
    from orch.cli.converge import wait_converged

    failed = 0
    for ref in refs:
        try:
            wait_converged(client, ref, write=(lambda line: None) if quiet else print)
        except OrchError as err:
            print(f"orch: {ref}: {err}", file=sys.stderr)
            failed = 1
    return failed


# -- create / update -------------------------------------------------------------------------------


def create(prog: str, argv: list[str]) -> int:
    from orch.cli import serviceflags as sf

    p = Parser(prog=prog, description="Create a new service", usage=f"{prog} [OPTIONS] IMAGE [COMMAND] [ARG...]")
    sf.add_common_flags(p, update=False)
    p.add_argument("image")
    p.add_argument("args", nargs="...")
    argv, explicit = sf.split_bools(argv)
    a = p.parse_args(argv)
    spec = sf.spec_from_flags(a, explicit, environ=os.environ, read_file=_read_file)
    headers = registry_auth_header(a.image) if sf.bool_flag(a, explicit, "--with-registry-auth") else {}
    client = _client()
    answer = client.call("POST", "/services/create", spec, headers)
    for warning in answer.get("Warnings") or ():
        print(warning, file=sys.stderr)
    print(answer["ID"])
    if sf.bool_flag(a, explicit, "--detach"):
        return 0
    return _wait(client, [answer["ID"]], bool(sf.bool_flag(a, explicit, "--quiet")))


def registry_auth_header(image: str) -> dict[str, str]:
    """docker's X-Registry-Auth for `--with-registry-auth`: the user's stored credentials for
    the image's registry (base64url JSON), or nothing when none are stored."""
    import base64

    from orch.node.runtime import reference
    from orch.registry import credentials

    found = credentials.lookup(reference.parse(image).domain)
    if found is None:
        return {}
    value = json.dumps({"username": found[0], "password": found[1]}).encode()
    return {"X-Registry-Auth": base64.urlsafe_b64encode(value).decode()}


def update(prog: str, argv: list[str]) -> int:
    from orch.cli import serviceflags as sf

    p = Parser(prog=prog, description="Update a service", usage=f"{prog} [OPTIONS] SERVICE")
    sf.add_common_flags(p, update=True)
    p.add_argument("--image", help="service image tag")
    p.add_argument("--args", metavar="command", help="service command args")
    p.add_argument("--force", action="store_true", help="force update even if no changes require it")
    p.add_argument("--rollback", action="store_true", help="rollback to previous specification")
    p.add_argument("service")
    argv, explicit = sf.split_bools(argv)
    a = p.parse_args(argv)
    client = _client()
    service = client.call("GET", f"/services/{_q(a.service)}")
    version = service["Version"]["Index"]
    if sf.bool_flag(a, explicit, "--rollback"):
        answer = client.call("POST", f"/services/{_q(service['ID'])}/update?version={version}&rollback=previous", service["Spec"])
    else:
        spec = sf.apply_update(service["Spec"], a, explicit, environ=os.environ)
        headers = registry_auth_header(spec["TaskTemplate"]["ContainerSpec"]["Image"]) \
            if sf.bool_flag(a, explicit, "--with-registry-auth") else {}
        answer = client.call("POST", f"/services/{_q(service['ID'])}/update?version={version}", spec, headers)
    for warning in answer.get("Warnings") or ():
        print(warning, file=sys.stderr)
    print(a.service)
    if sf.bool_flag(a, explicit, "--detach"):
        return 0
    return _wait(client, [service["ID"]], bool(sf.bool_flag(a, explicit, "--quiet")))


def scale(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Scale one or multiple replicated services",
               usage=f"{prog} SERVICE=REPLICAS [SERVICE=REPLICAS...]")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("pairs", nargs="+", metavar="SERVICE=REPLICAS")
    a = p.parse_args(argv)
    for pair in a.pairs:
        name, sep, n = pair.partition("=")
        if not sep or not name or not n:
            raise InvalidArgument(f"invalid scale specifier '{pair}'; see '{prog} --help'")
    client = _client()
    failed, scaled = 0, []
    for pair in a.pairs:
        name, _, n = pair.partition("=")
        try:
            if not n.isdigit():
                raise InvalidArgument(f"invalid replicas value {n}: write a whole number")
            service = client.call("GET", f"/services/{_q(name)}")
            replicated = service["Spec"].get("Mode", {}).get("Replicated")
            if replicated is None:
                raise InvalidArgument("scale can only be used with replicated or replicated-job mode")
            replicated["Replicas"] = int(n)
            client.call("POST", f"/services/{_q(service['ID'])}/update?version={service['Version']['Index']}", service["Spec"])
        except OrchError as err:
            print(f"orch: {name}: {err}", file=sys.stderr)
            failed = 1
            continue
        print(f"{name} scaled to {int(n)}")
        scaled.append(service["ID"])
    if scaled and not a.detach:
        failed |= _wait(client, scaled, False)
    return failed


def rollback(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Revert changes to a service's configuration", usage=f"{prog} [OPTIONS] SERVICE")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("service")
    a = p.parse_args(argv)
    client = _client()
    service = client.call("GET", f"/services/{_q(a.service)}")
    client.call("POST", f"/services/{_q(service['ID'])}/update?version={service['Version']['Index']}&rollback=previous",
                service["Spec"])
    print(a.service)
    return 0 if a.detach else _wait(client, [service["ID"]], a.quiet)


def rm(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Remove one or more services", usage=f"{prog} SERVICE [SERVICE...]")
    p.add_argument("services", nargs="+")
    a = p.parse_args(argv)
    client, failed = _client(), 0
    for ref in a.services:
        try:
            client.call("DELETE", f"/services/{_q(ref)}")
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
            continue
        print(ref)
    return failed


# -- reading -------------------------------------------------------------------------------------------


def ls(prog: str, argv: list[str]) -> int:
    from orch.cli import swarmfmt as fmt

    p = Parser(prog=prog, description="List services")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    query = "&".join(q for q in (_filters(a.filter), "" if a.quiet else "status=true") if q)
    services = _client().call("GET", "/services" + (f"?{query}" if query else ""))
    print_services(services, a.format, a.quiet)
    return 0


def print_services(services: list[dict], fmt_text: str | None, quiet: bool) -> None:
    from orch.cli import swarmfmt as fmt

    rows = [fmt.service_row(s) for s in fmt.sort_services(services)]
    fmt.print_rows(fmt.list_format(fmt_text, default=fmt.SERVICE_TABLE, quiet=quiet), rows, fmt.SERVICE_HEADERS)


def inspect(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Display detailed information on one or more services")
    p.add_argument("-f", "--format")
    p.add_argument("--pretty", action="store_true")
    p.add_argument("services", nargs="+")
    a = p.parse_args(argv)
    client = _client()
    if not a.pretty:
        from orch.cli.format import inspect_each

        fmt_text = None if a.format in (None, "json") else a.format
        return inspect_each(client, [f"/services/{_q(r)}" for r in a.services], fmt_text)
    from orch.cli import swarmfmt as fmt

    failed = 0
    for ref in a.services:
        try:
            service = client.call("GET", f"/services/{_q(ref)}")
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
            continue
        print(fmt.service_pretty(service, now=time.time()), end="")
    return failed


def resolve_services(client, refs: list[str]) -> tuple[list[dict], list[str]]:
    """docker's service ps: each ref by full id, then full name, then unique id prefix."""
    services = client.call("GET", "/services")
    found, missing = [], []
    for ref in refs:
        match = ([s for s in services if s["ID"] == ref] or [s for s in services if s["Spec"]["Name"] == ref])
        if not match:
            match = [s for s in services if s["ID"].startswith(ref)]
            if len(match) > 1:
                raise InvalidArgument(f"multiple services found with provided prefix: {ref}")
        if match:
            found.append(match[0])
        else:
            missing.append(f"no such service: {ref}")
    return found, missing


def add_task_flags(p) -> None:
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("--no-resolve", action="store_true", help="do not map IDs to names")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("-q", "--quiet", action="store_true", help="only display task IDs")


def print_tasks(client, tasks: list[dict], a, *, now: float | None = None) -> None:
    """docker's task.Print: resolve service and node names (unless --no-resolve), indent the
    older tasks of a slot under the newer in a table."""
    from orch.cli import swarmfmt as fmt

    services, nodes = {}, {}
    if not a.no_resolve:
        services = {s["ID"]: s["Spec"]["Name"] for s in client.call("GET", "/services")}
        nodes = {n["ID"]: n["Description"].get("Hostname") or n["ID"] for n in client.call("GET", "/nodes")}
    trunc = not (a.no_trunc or a.quiet)
    fmt_text = fmt.list_format(a.format, default=fmt.TASK_TABLE, quiet=a.quiet)
    rows = fmt.task_rows(tasks, services, nodes, now=time.time() if now is None else now, trunc=trunc,
                         indent=fmt.is_table(fmt_text))
    fmt.print_rows(fmt_text, rows, fmt.TASK_HEADERS)


def ps(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="List the tasks of one or more services", usage=f"{prog} [OPTIONS] SERVICE [SERVICE...]")
    add_task_flags(p)
    p.add_argument("services", nargs="+")
    a = p.parse_args(argv)
    client = _client()
    found, missing = resolve_services(client, a.services)
    if not found:
        raise InvalidArgument("; ".join(missing))
    filters = _filters(_node_filters(client, a.filter), {"service": [s["ID"] for s in found]})
    print_tasks(client, client.call("GET", f"/tasks?{filters}"), a)
    for line in missing:
        print(f"orch: {line}", file=sys.stderr)
    return 1 if missing else 0


def _node_filters(client, items: list[str]) -> list[str]:
    """`--filter node=self` means this node, as docker's node.Reference."""
    out = []
    for item in items:
        if item == "node=self":
            item = "node=" + client.call("GET", "/swarm/local")["NodeID"]
        out.append(item)
    return out


def logs(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Fetch the logs of a service or task", usage=f"{prog} [OPTIONS] SERVICE|TASK")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--details", action="store_true")
    p.add_argument("--no-resolve", action="store_true")
    p.add_argument("--no-task-ids", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--raw", action="store_true")
    p.add_argument("--since")
    p.add_argument("-n", "--tail")
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("service")
    a = p.parse_args(argv)
    query = ["follow=1"] if a.follow else []
    if a.tail and a.tail != "all":
        if not a.tail.isdigit():
            raise InvalidArgument(f"invalid --tail {a.tail!r}: use a number of lines or 'all'")
        query.append(f"tail={int(a.tail)}")
    if a.since:
        from orch.cli.container import parse_since

        query.append(f"since={parse_since(a.since)}")
    path = f"/services/{quote(a.service, safe='')}/logs" + ("?" + "&".join(query) if query else "")
    out, err = sys.stdout.buffer, sys.stderr.buffer
    buf = b""
    for chunk in _client().stream("GET", path):
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            if not line:
                continue
            entry = json.loads(line)
            text = entry["log"]
            if not a.raw:
                task = entry["task"] if a.no_task_ids else \
                    f"{entry['task']}.{entry['task_id'] if a.no_trunc else entry['task_id'][:12]}"
                text = f"{task}@{entry['node']}    | " + text
            if a.timestamps and entry.get("time"):
                text = f"{entry['time']} " + text
            (err if entry.get("stream") == "stderr" else out).write(text.encode())
            (err if entry.get("stream") == "stderr" else out).flush()
    return 0


GROUP = {"create": create, "ls": ls, "list": ls, "ps": ps, "inspect": inspect, "logs": logs, "scale": scale,
         "update": update, "rollback": rollback, "rm": rm, "remove": rm}


def main(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage swarm services\n\nCommands: create, inspect, logs, ls, ps, rm, rollback, "
              f"scale, update")
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; run '{prog} --help' for the list")
    return func(f"{prog} {argv[0]}", argv[1:])
