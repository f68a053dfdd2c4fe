"""`orch stack deploy|ls|ps|services|rm`, in docker's grammar.

`stack deploy` loads the compose files with orch.spec exactly as `orch up` does (the stack's
name is the project's name), translates the project into the cluster's specs
(orch.cluster.stackspec, docker stack's rules) and sends the whole stack in one request
(POST /stacks/deploy), so that a stack is never half-deployed: docker's stack commands are
client-side and create its parts one by one. ls, ps, services and rm are docker's.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import quote

from orch.api.args import Parser
from orch.errors import InvalidArgument, NotFound, OrchError

NAMESPACE = "com.docker.stack.namespace"


def _client():
    from orch.cli._agent import client

    return client()


def _check_name(name: str) -> None:
    """docker's validateStackName."""
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise InvalidArgument(f"invalid stack name: {name!r} (letters, digits, '_', '.' and '-', starting with a letter or digit)")


def deploy(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Deploy a new stack or update an existing stack", usage=f"{prog} [OPTIONS] STACK")
    p.add_argument("-c", "--compose-file", action="append", default=[], metavar="strings",
                   help="path to a Compose file (repeat to merge several)")
    p.add_argument("-d", "--detach", action="store_true",
                   help="exit immediately instead of waiting for the stack services to converge (default true; "
                        "--detach=false waits)")
    p.add_argument("--prune", action="store_true", help="prune services that are no longer referenced")
    p.add_argument("-q", "--quiet", action="store_true", help="suppress progress output")
    p.add_argument("--with-registry-auth", action="store_true", help="send registry authentication details to swarm agents")
    p.add_argument("stack")
    from orch.cli.serviceflags import split_bools

    argv, explicit = split_bools(argv)
    a = p.parse_args(argv)
    _check_name(a.stack)
    if not a.compose_file:
        raise InvalidArgument("specify a Compose file (with --compose-file)")
    if "-" in a.compose_file:
        raise InvalidArgument("reading a Compose file from stdin is not supported; give its path")
    detach = explicit.get("--detach", True)
    body = deploy_body(a.stack, [Path(f) for f in a.compose_file], prune=a.prune)
    if a.with_registry_auth:
        body["RegistryAuth"] = registry_auths(body)
    client = _client()
    answer = client.call("POST", "/stacks/deploy", body)
    for line in answer["Lines"]:
        print(line)
    if detach:
        return 0
    from orch.cli.service import _wait

    return _wait(client, [s["Name"] for s in body["Services"]], a.quiet)


def registry_auths(body: dict) -> dict[str, dict]:
    """`--with-registry-auth`: per service, the user's stored credentials for its image's
    registry (services whose registry has none stored get nothing, as docker sends nothing)."""
    from orch.node.runtime import reference
    from orch.registry import credentials

    out = {}
    for spec in body["Services"]:
        found = credentials.lookup(reference.parse(spec["TaskTemplate"]["ContainerSpec"]["Image"]).domain)
        if found is not None:
            out[spec["Name"]] = {"username": found[0], "password": found[1]}
    return out


def deploy_body(name: str, files: list[Path], *, prune: bool = False, environ=None) -> dict:
    """Load the files as `orch up` does, translate by docker stack's rules, and write the
    body of POST /stacks/deploy; warnings go to stderr, problems are one line."""
    from orch.cluster.dockerswarm import stack_deploy_to_json
    from orch.cluster.stackspec import translate_stack
    from orch.spec import load_project

    project = load_project(files, project_name=name, environ=environ)
    for text in project.warnings:
        print(f"WARN[0000] {text}", file=sys.stderr)
    deployment = translate_stack(project, environ=environ)
    for text in deployment.warnings:
        print(f"WARN[0000] {text}", file=sys.stderr)
    return stack_deploy_to_json(deployment, prune=prune)


def ls(prog: str, argv: list[str]) -> int:
    from orch.cli import swarmfmt as fmt

    p = Parser(prog=prog, description="List stacks")
    p.add_argument("--format")
    a = p.parse_args(argv)
    stacks = sorted(_client().call("GET", "/stacks"), key=lambda s: fmt.natural_key(s["Name"]))
    rows = [{"Name": s["Name"], "Services": str(s["Services"])} for s in stacks]
    fmt.print_rows(fmt.list_format(a.format, default=fmt.STACK_TABLE, quiet=False), rows, fmt.STACK_HEADERS)
    return 0


def ps(prog: str, argv: list[str]) -> int:
    from orch.cli.service import _filters, _node_filters, add_task_flags, print_tasks

    p = Parser(prog=prog, description="List the tasks in the stack", usage=f"{prog} [OPTIONS] STACK")
    add_task_flags(p)
    p.add_argument("stack")
    a = p.parse_args(argv)
    _check_name(a.stack)
    client = _client()
    query = _filters(_node_filters(client, a.filter), {"label": [f"{NAMESPACE}={a.stack}"]})
    tasks = client.call("GET", f"/tasks?{query}")
    if not tasks:
        print(f"nothing found in stack: {a.stack}", file=sys.stderr)
        return 0
    print_tasks(client, tasks, a)
    return 0


def services(prog: str, argv: list[str]) -> int:
    from orch.cli.service import _filters, print_services

    p = Parser(prog=prog, description="List the services in the stack", usage=f"{prog} [OPTIONS] STACK")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("stack")
    a = p.parse_args(argv)
    _check_name(a.stack)
    query = _filters(a.filter, {"label": [f"{NAMESPACE}={a.stack}"]}) + ("" if a.quiet else "&status=true")
    found = _client().call("GET", f"/services?{query}")
    if not found:
        print(f"Nothing found in stack: {a.stack}", file=sys.stderr)
        return 0
    print_services(found, a.format, a.quiet)
    return 0


def rm(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Remove one or more stacks", usage=f"{prog} [OPTIONS] STACK [STACK...]")
    p.add_argument("-d", "--detach", action="store_true", help="do not wait for stack removal (default true)")
    p.add_argument("stacks", nargs="+")
    from orch.cli.serviceflags import split_bools

    argv, _ = split_bools(argv)
    a = p.parse_args(argv)
    client, failed = _client(), 0
    for name in a.stacks:
        _check_name(name)
        try:
            answer = client.call("DELETE", f"/stacks/{quote(name, safe='')}")
        except NotFound:
            print(f"Nothing found in stack: {name}", file=sys.stderr)
            continue
        except OrchError as err:
            print(f"orch: {err}", file=sys.stderr)
            failed = 1
            continue
        for line in answer["Lines"]:
            print(line)
    return failed


GROUP = {"deploy": deploy, "up": deploy, "ls": ls, "list": ls, "ps": ps, "services": services, "rm": rm, "remove": rm,
         "down": rm}


def main(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage swarm stacks\n\nCommands: deploy, ls, ps, rm, services")
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; run '{prog} --help' for the list")
    return func(f"{prog} {argv[0]}", argv[1:])
