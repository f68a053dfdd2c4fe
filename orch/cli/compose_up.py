"""`orch compose up`, `down` and `plan`: converge a stack onto the node, take it away, or say
what `up` would do. The work is orch.compose.engine's; this module is flags and output."""

import argparse
import sys
import time

from orch.api.args import Parser
from orch.cli.compose import add_common_options, load_from_options
from orch.errors import InvalidArgument




def parser(prog: str, description: str, *, follow: bool = False) -> argparse.ArgumentParser:
    """A subcommand's parser with the stack options; with `follow`, -f is --follow (as in
    `docker compose logs -f`) and the file is given as --file or before the subcommand."""
    p = Parser(prog=prog, description=description, conflict_handler="resolve" if follow else "error")
    add_common_options(p)
    if follow:
        p.add_argument("-f", "--follow", action="store_true", help="follow log output")
        p.add_argument("--file", action="append", dest="files", metavar="FILE", help="stack file")
    return p


def parse_scale(values: list[str]) -> dict[str, int]:
    scale = {}
    for text in values or ():
        name, eq, n = text.partition("=")
        if not eq or not n.isdigit() or not name:
            raise InvalidArgument(f"--scale {text!r}: write SERVICE=NUMBER, e.g. --scale web=3")
        scale[name] = int(n)
    return scale


def open_stack(opts, quiet: bool = False, *, project=None):
    """The stack the options select (or `project`, loaded and checked already), with a client
    of the node's agent (which starts one when none answers)."""
    from orch.cli._agent import client
    from orch.compose.engine import Reporter, Stack

    project = project or load_from_options(opts)
    for text in project.warnings:
        print(f"WARN[0000] {text}", file=sys.stderr)
    return Stack(client(), project, reporter=Reporter(quiet=quiet))


def main(prog: str, argv: list[str]) -> int:
    p = parser(prog, "Create and start containers")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background")
    p.add_argument("--build", action="store_true", help="build images before starting")
    p.add_argument("--pull", nargs="?", const="always", choices=["always", "missing", "never"], help="pull images first")
    p.add_argument("--wait", action="store_true", help="wait until services are running and healthy")
    p.add_argument("--wait-timeout", type=float, help="seconds --wait waits at most")
    p.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM")
    p.add_argument("--remove-orphans", action="store_true")
    p.add_argument("--force-recreate", action="store_true")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("--no-build", action="store_true", help="never build; a missing image of a buildable service is an error")
    p.add_argument("--quiet-pull", action="store_true", help="pull without printing progress")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    from orch.scheduler.model import ReconcileOptions

    # Everything about the stack is checked before anything is pulled or built, or an agent
    # started: the graph (the loader reports a cycle) and the env files of what starts.
    project = load_from_options(a)
    selected = _with_deps(project, a.services, a.no_deps)
    project.require_env(selected)
    stack = open_stack(a, project=project)
    stack.quiet_pull = a.quiet_pull
    stack.resolve_images(selected, build=a.build, pull=a.pull == "always", no_build=a.no_build)
    stack.ensure_resources(selected)
    options = ReconcileOptions(
        force_recreate=a.force_recreate, no_deps=a.no_deps,
        remove_orphans=a.remove_orphans or stack.project.setting("COMPOSE_REMOVE_ORPHANS"),
        services=tuple(a.services) or None, scale=parse_scale(a.scale), up_since=time.time(),
    )
    if a.detach:
        return stack.converge(options, wait=a.wait, timeout=a.wait_timeout)
    from orch.compose.attach import run_attached

    return run_attached(stack, options)


def _with_deps(project, services: list[str], no_deps: bool) -> list[str]:
    unknown = [s for s in services if s not in project.services]
    if unknown:
        raise InvalidArgument(f"no such service: {unknown[0]}; the stack has {', '.join(project.services)}")
    if not services:
        return list(project.services)
    if no_deps:
        return list(services)
    from orch.scheduler.graph import compute_graph, dependencies_of

    chosen = set(services) | dependencies_of(compute_graph(project.services), services)
    return [s for s in project.services if s in chosen]


def down(prog: str, argv: list[str]) -> int:
    p = parser(prog, "Stop and remove containers, networks")
    p.add_argument("-v", "--volumes", action="store_true", help="remove named volumes and anonymous ones")
    p.add_argument("--rmi", choices=["local", "all"], help="remove images used by services")
    p.add_argument("--remove-orphans", action="store_true")
    p.add_argument("-t", "--timeout", type=float)
    a = p.parse_args(argv)
    stack = open_stack(a)
    remove_orphans = a.remove_orphans or stack.project.setting("COMPOSE_REMOVE_ORPHANS")
    stack.down(remove_orphans=remove_orphans, volumes=a.volumes, rmi=a.rmi, timeout=a.timeout)
    return 0


def plan(prog: str, argv: list[str]) -> int:
    p = parser(prog, "Show what up would create, recreate, start and remove, and why")
    p.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM")
    p.add_argument("--remove-orphans", action="store_true")
    p.add_argument("--force-recreate", action="store_true")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    from orch.errors import NotFound
    from orch.scheduler.model import ReconcileOptions
    from orch.scheduler.reconcile import plan_reconcile

    project = load_from_options(a)
    project.require_env(_with_deps(project, a.services, a.no_deps))
    stack = open_stack(a, quiet=True, project=project)
    missing = []
    for name, svc in stack.project.services.items():
        image_id = stack._image_id(svc.image) if svc.image else None
        if image_id is None:
            missing.append(f"  build    {name}: image {svc.image} is missing" if svc.build else f"  pull     {name}: image {svc.image} is missing")
            image_id = "missing:" + (svc.image or name)
        stack.image_ids[name] = image_id
    options = ReconcileOptions(
        force_recreate=a.force_recreate, no_deps=a.no_deps, remove_orphans=a.remove_orphans,
        services=tuple(a.services) or None, scale=parse_scale(a.scale), up_since=time.time(),
    )
    now = time.time()
    try:
        desired = stack.desired()
        stack.recall(desired, options, report=False, persist=False)  # a rolled back update shows as a warning
        result = plan_reconcile(desired, stack.observe(), now=now, options=options)
    except NotFound as err:
        raise InvalidArgument(str(err)) from None
    print(result.explain(now=now))
    for line in missing:
        print(line)
    return 0
