"""`orch node ls|inspect|update|promote|demote|rm|ps`, in docker's grammar, through the agent's
cluster routes (a manager's). `self` names this node, as in docker."""

from __future__ import annotations

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


def _self_id(client) -> str:
    return client.call("GET", "/swarm/local")["NodeID"]


def _ref(client, ref: str) -> str:
    """docker's node.Reference: `self` is this node's id."""
    if ref == "self":
        node_id = _self_id(client)
        if not node_id:
            raise InvalidArgument("this node is not part of a swarm, so it has no 'self' node")
        return node_id
    return ref


def ls(prog: str, argv: list[str]) -> int:
    from orch.cli import swarmfmt as fmt
    from orch.cli.service import _filters

    p = Parser(prog=prog, description="List nodes in the swarm")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    client = _client()
    query = _filters(a.filter)
    nodes = client.call("GET", "/nodes" + (f"?{query}" if query else ""))
    self_id = _self_id(client) if nodes and not a.quiet else ""
    nodes.sort(key=lambda n: fmt.natural_key(n.get("Description", {}).get("Hostname", "")))
    rows = [fmt.node_row(n, self_id) for n in nodes]
    fmt.print_rows(fmt.list_format(a.format, default=fmt.NODE_TABLE, quiet=a.quiet), rows, fmt.NODE_HEADERS)
    return 0


def inspect(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Display detailed information on one or more nodes",
               usage=f"{prog} [OPTIONS] self|NODE [NODE...]")
    p.add_argument("-f", "--format")
    p.add_argument("--pretty", action="store_true")
    p.add_argument("nodes", nargs="+")
    a = p.parse_args(argv)
    client = _client()
    refs = [_ref(client, r) for r in a.nodes]
    if not a.pretty:
        from orch.cli.format import inspect_each

        return inspect_each(client, [f"/nodes/{_q(r)}" for r in refs], None if a.format in (None, "json") else a.format)
    from orch.cli import swarmfmt as fmt

    failed, first = 0, True
    for ref in refs:
        try:
            node = client.call("GET", f"/nodes/{_q(ref)}")
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
            continue
        if not first:
            print()
        print(fmt.node_pretty(node))
        first = False
    return failed


def _update_spec(client, ref: str, change) -> None:
    """Read the node, change its spec, write it back with the version read (docker's way)."""
    node = client.call("GET", f"/nodes/{_q(ref)}")
    spec = dict(node["Spec"])
    spec["Labels"] = dict(spec.get("Labels") or {})
    change(spec)
    client.call("POST", f"/nodes/{_q(node['ID'])}/update?version={node['Version']['Index']}", spec)


def update(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Update a node", usage=f"{prog} [OPTIONS] NODE")
    p.add_argument("--availability", choices=("active", "pause", "drain"), help="availability of the node")
    p.add_argument("--label-add", action="append", default=[], metavar="list", help='add or update a node label ("key=value")')
    p.add_argument("--label-rm", action="append", default=[], metavar="list", help="remove a node label if exists")
    p.add_argument("--role", choices=("worker", "manager"), help="role of the node")
    p.add_argument("node")
    a = p.parse_args(argv)
    client = _client()

    def change(spec: dict) -> None:
        if a.availability:
            spec["Availability"] = a.availability
        if a.role:
            spec["Role"] = a.role
        for key in a.label_rm:
            spec["Labels"].pop(key, None)
        for item in a.label_add:
            key, _, value = item.partition("=")
            if not key:
                raise InvalidArgument(f'invalid argument "{item}" for "--label-add" flag: write key=value')
            spec["Labels"][key] = value

    _update_spec(client, _ref(client, a.node), change)
    print(a.node)
    return 0


def _set_role(prog: str, argv: list[str], role: str) -> int:
    p = Parser(prog=prog, description=f"{'Promote' if role == 'manager' else 'Demote'} one or more nodes "
                                      f"{'to manager' if role == 'manager' else 'from manager'} in the swarm",
               usage=f"{prog} NODE [NODE...]")
    p.add_argument("nodes", nargs="+")
    a = p.parse_args(argv)
    client, failed = _client(), 0
    for ref in a.nodes:
        try:
            node = client.call("GET", f"/nodes/{_q(_ref(client, ref))}")
            if node["Spec"].get("Role") == role:
                print(f"Node {ref} is already a manager." if role == "manager" else f"Node {ref} is already a worker.")
                continue
            _update_spec(client, node["ID"], lambda spec: spec.update(Role=role))
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
            continue
        print(f"Node {ref} promoted to a manager in the swarm." if role == "manager" else f"Manager {ref} demoted in the swarm.")
    return failed


def promote(prog: str, argv: list[str]) -> int:
    return _set_role(prog, argv, "manager")


def demote(prog: str, argv: list[str]) -> int:
    return _set_role(prog, argv, "worker")


def rm(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Remove one or more nodes from the swarm", usage=f"{prog} [OPTIONS] NODE [NODE...]")
    p.add_argument("-f", "--force", action="store_true", help="force remove a node from the swarm")
    p.add_argument("nodes", nargs="+")
    a = p.parse_args(argv)
    client, failed = _client(), 0
    for ref in a.nodes:
        try:
            client.call("DELETE", f"/nodes/{_q(_ref(client, ref))}" + ("?force=true" if a.force else ""))
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
            continue
        print(ref)
    return failed


def ps(prog: str, argv: list[str]) -> int:
    from orch.cli.service import _filters, _node_filters, add_task_flags, print_tasks

    p = Parser(prog=prog, description="List tasks running on one or more nodes, defaults to current node",
               usage=f"{prog} [OPTIONS] [NODE...]")
    add_task_flags(p)
    p.add_argument("nodes", nargs="*")
    a = p.parse_args(argv)
    client = _client()
    tasks, failed = [], 0
    for ref in a.nodes or ["self"]:
        try:
            node = client.call("GET", f"/nodes/{_q(_ref(client, ref))}")
            tasks += client.call("GET", "/tasks?" + _filters(_node_filters(client, a.filter), {"node": [node["ID"]]}))
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
    if tasks or not failed:
        print_tasks(client, tasks, a, now=time.time())
    return failed


GROUP = {"ls": ls, "list": ls, "inspect": inspect, "update": update, "promote": promote, "demote": demote, "rm": rm,
         "remove": rm, "ps": ps}


def main(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage swarm nodes\n\nCommands: demote, inspect, ls, promote, ps, rm, update")
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; run '{prog} --help' for the list")
    return func(f"{prog} {argv[0]}", argv[1:])
