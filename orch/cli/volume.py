"""`orch volume create|ls|inspect|rm|prune` with docker's flags and output."""

from __future__ import annotations

import sys

from orch.api.args import Parser
from orch.client import quoted
from orch.cli.network import filter_query
from orch.errors import InvalidArgument, OrchError


def _client():
    from orch.cli._agent import client

    return client()


def create(prog, argv):
    p = Parser(prog=prog, description="Create a volume")
    p.add_argument("-d", "--driver", default="local")
    p.add_argument("-o", "--opt", action="append", default=[])
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--name", dest="flag_name")
    p.add_argument("name", nargs="?")
    a = p.parse_args(argv)
    opts = dict(o.split("=", 1) if "=" in o else (o, "") for o in a.opt)
    body = {"driver": a.driver, "driver_opts": opts, "labels": dict(kv.split("=", 1) if "=" in kv else (kv, "") for kv in a.label)}
    if a.name or a.flag_name:
        body["name"] = a.name or a.flag_name
    print(_client().call("POST", "/volumes/create", body)["Name"])
    return 0


def ls(prog, argv):
    p = Parser(prog=prog, description="List volumes")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    p.add_argument("-f", "--filter", action="append", default=[])
    a = p.parse_args(argv)
    vols = _client().call("GET", "/volumes" + filter_query(a.filter))["Volumes"]
    if a.quiet:
        for v in vols:
            print(v["Name"])
        return 0
    from orch.cli.container import print_table

    rows = [{"Driver": v["Driver"], "Name": v["Name"], "Mountpoint": v["Mountpoint"], "Scope": v["Scope"],
             "Labels": ",".join(f"{k}={val}" for k, val in sorted(v["Labels"].items()))} for v in vols]
    headers = {"Driver": "DRIVER", "Name": "VOLUME NAME", "Mountpoint": "MOUNTPOINT", "Scope": "SCOPE", "Labels": "LABELS"}
    print_table(a.format or "table {{.Driver}}\t{{.Name}}", rows, headers)
    return 0


def inspect(prog, argv):
    p = Parser(prog=prog, description="Display detailed information on one or more volumes")
    p.add_argument("-f", "--format")
    p.add_argument("volumes", nargs="+")
    a = p.parse_args(argv)
    from orch.cli.format import inspect_each

    return inspect_each(_client(), [f"/volumes/{quoted(r)}" for r in a.volumes], a.format)


def rm(prog, argv):
    p = Parser(prog=prog, description="Remove one or more volumes")
    p.add_argument("-f", "--force", action="store_true")
    p.add_argument("volumes", nargs="+")
    a = p.parse_args(argv)
    client, failed = _client(), 0
    for name in a.volumes:
        try:
            client.call("DELETE", f"/volumes/{quoted(name)}" + ("?force=1" if a.force else ""))
            print(name)
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
    return failed


def prune(prog, argv):
    p = Parser(prog=prog, description="Remove unused local volumes")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("-f", "--force", action="store_true")
    a = p.parse_args(argv)
    if not a.force:
        from orch.cli.network import _confirm

        if not _confirm("WARNING! This will remove anonymous local volumes not used by at least one container."):
            return 0
    result = _client().call("POST", "/volumes/prune" + ("?all=1" if a.all else ""))
    if result["VolumesDeleted"]:
        print("Deleted Volumes:")
        for name in result["VolumesDeleted"]:
            print(name)
        print()
    from orch.cli.format import human_size

    print(f"Total reclaimed space: {human_size(result['SpaceReclaimed'])}")
    return 0


GROUP = {"create": create, "ls": ls, "list": ls, "inspect": inspect, "rm": rm, "remove": rm, "prune": prune}


def main(prog, argv):
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage volumes\n\nCommands: " + ", ".join(sorted(GROUP)))
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; run '{prog} --help' for the list")
    return func(f"{prog} {argv[0]}", argv[1:])
