"""`orch network create|ls|inspect|rm|prune|connect|disconnect` with docker's flags and output."""

from __future__ import annotations

import json
import sys

from orch.api.args import Parser
from orch.client import quoted
from orch.errors import InvalidArgument, OrchError


def _client():
    from orch.cli._agent import client

    return client()


def filter_query(items: list[str]) -> str:
    """--filter label=k=v / name=x as docker's ?filters= JSON."""
    filters: dict[str, list[str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in ("label", "name"):
            raise InvalidArgument(f"invalid --filter {item!r}: use label=KEY[=VALUE] or name=NAME")
        filters.setdefault(key, []).append(value)
    return "?filters=" + quoted(json.dumps(filters)) if filters else ""


def _labels(items: list[str]) -> dict:
    return dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in items)


def create(prog, argv):
    p = Parser(prog=prog, description="Create a network")
    p.add_argument("-d", "--driver", default="bridge")
    p.add_argument("--subnet")
    p.add_argument("--gateway")
    p.add_argument("--internal", action="store_true")
    p.add_argument("--attachable", action="store_true")
    p.add_argument("--ingress", action="store_true")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("name")
    a = p.parse_args(argv)
    options = {}
    for opt in a.opt:
        key, sep, value = opt.partition("=")
        if not sep and key != "encrypted":  # docker's `--opt encrypted` has no value
            raise InvalidArgument(f"invalid -o {opt!r}: use KEY=VALUE, e.g. com.docker.network.driver.mtu=1400")
        options[key] = value
    body = {"name": a.name, "driver": a.driver, "internal": a.internal, "options": options, "labels": _labels(a.label)}
    if a.attachable:
        body["attachable"] = True
    if a.ingress:
        body["ingress"] = True
    if a.subnet:
        body["subnet"] = a.subnet
    if a.gateway:
        body["gateway"] = a.gateway
    print(_client().call("POST", "/networks/create", body)["Id"])
    return 0


def ls(prog, argv):
    p = Parser(prog=prog, description="List networks")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("-f", "--filter", action="append", default=[])
    a = p.parse_args(argv)
    nets = _client().call("GET", "/networks" + filter_query(a.filter))
    if a.quiet:
        for n in nets:
            print(n["Id"] if a.no_trunc else n["Id"][:12])
        return 0
    from orch.cli.container import print_table

    rows = [{"ID": n["Id"] if a.no_trunc else n["Id"][:12], "Name": n["Name"], "Driver": n["Driver"], "Scope": n["Scope"],
             "Internal": str(n["Internal"]).lower(), "Labels": ",".join(f"{k}={v}" for k, v in sorted(n["Labels"].items()))}
            for n in nets]
    headers = {"ID": "NETWORK ID", "Name": "NAME", "Driver": "DRIVER", "Scope": "SCOPE", "Internal": "INTERNAL", "Labels": "LABELS"}
    print_table(a.format or "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}", rows, headers)
    return 0


def inspect(prog, argv):
    p = Parser(prog=prog, description="Display detailed information on one or more networks")
    p.add_argument("-f", "--format")
    p.add_argument("networks", nargs="+")
    a = p.parse_args(argv)
    from orch.cli.format import inspect_each

    return inspect_each(_client(), [f"/networks/{quoted(r)}" for r in a.networks], a.format)


def rm(prog, argv):
    p = Parser(prog=prog, description="Remove one or more networks")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("networks", nargs="+")
    a = p.parse_args(argv)
    client, failed = _client(), 0
    for ref in a.networks:
        try:
            client.call("DELETE", f"/networks/{quoted(ref)}")
            print(ref)
        except OrchError as err:
            if a.force and err.kind == "not-found":
                continue
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
    return failed


def prune(prog, argv):
    p = Parser(prog=prog, description="Remove all unused networks")
    p.add_argument("-f", "--force", action="store_true")
    a = p.parse_args(argv)
    if not a.force and not _confirm("WARNING! This will remove all custom networks not used by at least one container."):
        return 0
    gone = _client().call("POST", "/networks/prune")["NetworksDeleted"]
    if gone:
        print("Deleted Networks:")
        for name in gone:
            print(name)
    return 0


def _confirm(warning: str) -> bool:
    print(f"{warning}\nAre you sure you want to continue? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline().strip().lower()
    return answer in ("y", "yes")


def connect(prog, argv):
    p = Parser(prog=prog, description="Connect a container to a network")
    p.add_argument("--alias", action="append", default=[])
    p.add_argument("--ip")
    p.add_argument("network")
    p.add_argument("container")
    a = p.parse_args(argv)
    _client().call("POST", f"/networks/{quoted(a.network)}/connect",
                   {"container": a.container, "aliases": a.alias, "ipv4_address": a.ip})
    return 0


def disconnect(prog, argv):
    p = Parser(prog=prog, description="Disconnect a container from a network")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("network")
    p.add_argument("container")
    a = p.parse_args(argv)
    _client().call("POST", f"/networks/{quoted(a.network)}/disconnect", {"container": a.container, "force": a.force})
    return 0


GROUP = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm, "prune": prune,
         "connect": connect, "disconnect": disconnect}


def main(prog, argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage networks\n\nCommands: " + ", ".join(sorted(GROUP)))
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; run '{prog} --help' for the list")
    return func(f"{prog} {argv[0]}", argv[1:])
