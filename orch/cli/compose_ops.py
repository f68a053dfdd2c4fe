"""`orch compose ps|logs|start|stop|restart|pause|unpause|kill|rm|exec|run|build|pull|top|scale`.

Each finds the project's containers by their labels (one agent call) and acts on them with
docker compose's flags and output. `exec` and `run` hand over to the container commands'
attached path, so a terminal, Ctrl-C and exit codes behave as in `orch exec` / `orch run`.
"""

import json
import os
import sys
import time

from orch.cli.compose_up import open_stack, parse_scale, parser
from orch.errors import InvalidArgument, NotFound, OrchError

PS_TABLE = "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}"
PS_HEADERS = {"Name": "NAME", "Image": "IMAGE", "Command": "COMMAND", "Service": "SERVICE", "RunningFor": "CREATED",
              "Status": "STATUS", "Ports": "PORTS", "ID": "CONTAINER ID", "State": "STATE", "Health": "HEALTH", "Project": "PROJECT"}


def _service_records(stack, services, *, running_only=False, oneoff=False):
    unknown = [s for s in services if s not in stack.project.services]
    if unknown:
        raise InvalidArgument(f"no such service: {unknown[0]}; the stack has {', '.join(stack.project.services)}")
    out = []
    for r in stack.records():
        labels = r["Config"].get("Labels") or {}
        if services and labels.get("com.docker.compose.service") not in services:
            continue
        if not oneoff and labels.get("com.docker.compose.oneoff") == "True":
            continue
        if running_only and r["State"]["Status"] not in ("running", "paused"):
            continue
        out.append(r)
    return out


def ps(prog, argv):
    p = parser(prog, "List containers")
    p.add_argument("-a", "--all", action="store_true", help="show stopped containers too")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format")
    p.add_argument("--status", action="append", default=[])
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    stack = open_stack(a, quiet=True)
    records = _service_records(stack, a.services, running_only=not a.all and not a.status)
    if a.status:
        records = [r for r in records if r["State"]["Status"] in a.status]
    if a.quiet:
        for r in records:
            print(r["Id"])
        return 0
    rows = []
    for r in records:
        s = r["Summary"]  # the agent's ps row of this container (Status, CreatedSince, ...)
        labels = s["Labels"]
        command = s["Command"] if len(s["Command"]) <= 20 else s["Command"][:19] + "…"
        rows.append({
            "ID": r["Id"][:12], "Name": r["Name"].lstrip("/"), "Image": s["Image"], "Command": f'"{command}"',
            "Service": labels.get("com.docker.compose.service", ""), "Project": stack.name, "RunningFor": s["CreatedSince"],
            "Status": s["Status"], "State": s["State"], "Health": (r["State"].get("Health") or {}).get("Status", ""),
            "Ports": r.get("Ports", ""), "ExitCode": r["State"].get("ExitCode", 0),
        })
    if a.format == "json":
        for row in rows:
            print(json.dumps(row))
        return 0
    from orch.cli.container import print_table

    print_table(a.format or PS_TABLE, rows, PS_HEADERS)
    return 0


def logs(prog, argv):
    p = parser(prog, "View output from containers", follow=True)
    p.add_argument("-t", "--timestamps", action="store_true")
    p.add_argument("-n", "--tail", type=int)
    p.add_argument("--no-color", action="store_true")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    from orch.compose.logs import LogPrinter

    stack = open_stack(a, quiet=True)
    records = _service_records(stack, a.services)
    printer = LogPrinter(stack.client, stack.name, records, timestamps=a.timestamps, colour=False if a.no_color else None)
    threads = printer.follow(follow=a.follow, tail=a.tail)
    try:
        while any(th.is_alive() for th in threads):
            time.sleep(0.1)
    except KeyboardInterrupt:
        return 130
    return 0


def _each(prog, argv, description, verb, path, status, *, running_only=False, extra=None):
    p = parser(prog, description)
    if extra:
        extra(p)
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    stack = open_stack(a)
    records = _service_records(stack, a.services, running_only=running_only)
    query = ""
    if getattr(a, "timeout", None) is not None:
        query = f"?t={a.timeout}"
    if getattr(a, "signal", None):
        query = f"?signal={a.signal}"
    from concurrent.futures import ThreadPoolExecutor

    if verb in ("stop", "kill"):
        from orch.compose.attach import stop_stack

        if verb == "stop" and not query:
            stop_stack(stack, a.services or None)
            return 0
    failed = []

    def one(r):
        name = r["Name"].lstrip("/")
        try:
            stack.client.call("POST" if verb != "rm" else "DELETE", path.format(id=r["Id"]) + query)
            stack.report.done("Container", name, status)
        except Exception as err:  # noqa: BLE001 - reported per container, as compose does
            stack.report.failed("Container", name, str(err))
            failed.append(name)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, records))
    return 1 if failed else 0


def start(prog, argv):
    return _each(prog, argv, "Start services", "start", "/containers/{id}/start", "Started")


def stop(prog, argv):
    return _each(prog, argv, "Stop services", "stop", "/containers/{id}/stop", "Stopped", running_only=True,
                 extra=lambda p: p.add_argument("-t", "--timeout", type=int))


def restart(prog, argv):
    """docker compose restart: the services' containers, with the services that share their
    network namespace (network_mode: service:X) restarted after them, unless --no-deps."""
    p = parser(prog, "Restart services")
    p.add_argument("-t", "--timeout", type=int)
    p.add_argument("--no-deps", action="store_true", help="do not restart the services that share their network")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    from concurrent.futures import ThreadPoolExecutor

    from orch.compose.translate import compute_network_waves

    stack = open_stack(a)
    _service_records(stack, a.services)  # an unknown service is an error before anything restarts
    query = "" if a.timeout is None else f"?t={a.timeout}"
    failed = []

    def one(r):
        name = r["Name"].lstrip("/")
        try:
            stack.client.call("POST", f"/containers/{r['Id']}/restart{query}")
            stack.report.done("Container", name, "Restarted")
        except OrchError as err:
            stack.report.failed("Container", name, str(err))
            failed.append(name)

    for wave in compute_network_waves(stack.project.services, a.services, joiners=not a.no_deps):
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(one, _service_records(stack, wave)))
    return 1 if failed else 0


def pause(prog, argv):
    return _each(prog, argv, "Pause services", "pause", "/containers/{id}/pause", "Paused", running_only=True)


def unpause(prog, argv):
    return _each(prog, argv, "Unpause services", "unpause", "/containers/{id}/unpause", "Unpaused", running_only=True)


def kill(prog, argv):
    return _each(prog, argv, "Force stop service containers", "kill", "/containers/{id}/kill", "Killed", running_only=True,
                 extra=lambda p: p.add_argument("-s", "--signal", default="SIGKILL"))


def rm(prog, argv):
    def flags(p):
        p.add_argument("-f", "--force", action="store_true")
        p.add_argument("-s", "--stop", action="store_true")
        p.add_argument("-v", "--volumes", action="store_true")

    p = parser(prog, "Removes stopped service containers")
    flags(p)
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    stack = open_stack(a)
    records = _service_records(stack, a.services)
    for r in records:
        if r["State"]["Status"] in ("running", "paused"):
            if not a.stop:
                continue
            stack.client.call("POST", f"/containers/{r['Id']}/stop")
        stack.client.call("DELETE", f"/containers/{r['Id']}?force=1")
        stack.report.done("Container", r["Name"].lstrip("/"), "Removed")
    return 0


def top(prog, argv):
    p = parser(prog, "Display the running processes")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    stack = open_stack(a, quiet=True)
    for r in _service_records(stack, a.services, running_only=True):
        answer = stack.client.call("GET", f"/containers/{r['Id']}/top")
        print(r["Name"].lstrip("/"))
        from orch.cli.format import tabwrite

        for line in tabwrite(["\t".join(answer["Titles"])] + ["\t".join(row) for row in answer["Processes"]]):
            print(line)
        print()
    return 0


def exec_(prog, argv):
    p = parser(prog, "Execute a command in a running container")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("-w", "--workdir")
    p.add_argument("-u", "--user")
    p.add_argument("--index", type=int, default=1)
    p.add_argument("service")
    p.add_argument("command", nargs="...")
    a = p.parse_args(argv)
    if not a.command:
        raise InvalidArgument("exec needs a command after the service, e.g. 'orch compose exec web sh'")
    stack = open_stack(a, quiet=True)
    target = _replica(stack, a.service, a.index)
    # No terminal when stdin is not one (a pipe, a test), as compose decides for -T.
    tty = not a.no_tty and os.isatty(0) and os.isatty(1)
    args = []
    if a.detach:
        args.append("-d")
    if tty:
        args.append("-t")
    if not a.detach:
        args.append("-i")
    for e in a.env:
        args += ["-e", e]
    if a.workdir:
        args += ["-w", a.workdir]
    if a.user:
        args += ["-u", a.user]
    from orch.cli.container import exec_ as container_exec

    return container_exec("orch exec", args + [target, *a.command])


def _replica(stack, service: str, index: int) -> str:
    for r in _service_records(stack, [service], running_only=True):
        if (r["Config"].get("Labels") or {}).get("com.docker.compose.container-number") == str(index):
            return r["Id"]
    raise NotFound(f"service {service} has no running container number {index}; start it with 'orch compose up -d {service}'")


def run(prog, argv):
    p = parser(prog, "Run a one-off command on a service")
    p.add_argument("-d", "--detach", action="store_true")
    p.add_argument("--rm", action="store_true")
    p.add_argument("-T", "--no-TTY", dest="no_tty", action="store_true")
    p.add_argument("-e", "--env", action="append", default=[])
    p.add_argument("--name")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("service")
    p.add_argument("command", nargs="...")
    a = p.parse_args(argv)
    import secrets

    from orch.compose import translate as t
    from orch.scheduler.model import ReconcileOptions

    from orch.cli.compose import load_from_options
    from orch.cli.compose_up import _with_deps

    project = load_from_options(a)
    if a.service not in project.services:
        raise InvalidArgument(f"no such service: {a.service}; the stack has {', '.join(project.services)}")
    deps = [s for s in _with_deps(project, [a.service], a.no_deps) if s != a.service]
    project.require_env([*deps, a.service])
    stack = open_stack(a, project=project)
    svc = stack.project.services[a.service]
    if deps:
        stack.resolve_images(deps)
        stack.ensure_resources(deps)
        code = stack.converge(ReconcileOptions(services=tuple(deps), up_since=time.time()))
        if code:
            return code
    stack.resolve_images([a.service])
    stack.ensure_resources([a.service])
    name = a.name or f"{stack.name}-{a.service}-run-{secrets.token_hex(6)}"
    body = t.compute_create_body(stack.project, a.service, svc, number=1, config_hash="oneoff", image=svc.image,
                                 os_environ=dict(os.environ), oneoff=True, cname=name,
                                 command=a.command or None,
                                 network_container=stack.network_container_of(a.service))
    body["env"] += a.env
    tty = not a.no_tty and os.isatty(0) and os.isatty(1)
    body["tty"], body["open_stdin"], body["auto_remove"] = tty, not a.detach, a.rm
    created = stack.client.call("POST", "/containers/create", body)
    if a.detach:
        stack.client.call("POST", f"/containers/{created['Id']}/start")
        print(name)
        return 0
    from orch.cli.container import start as container_start

    return container_start("orch start", ["-a", "-i", created["Id"]])


def build(prog, argv):
    p = parser(prog, "Build or rebuild services")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("-q", "--quiet", action="store_true")
    a = p.parse_args(argv)
    stack = open_stack(a, quiet=a.quiet)
    for name in a.services or stack.project.services:
        if name not in stack.project.services:
            raise InvalidArgument(f"no such service: {name}")
        if stack.project.services[name].build is not None:
            stack.build_service(name)
    return 0


def pull(prog, argv):
    p = parser(prog, "Pull service images")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--ignore-buildable", action="store_true")
    a = p.parse_args(argv)
    stack = open_stack(a, quiet=a.quiet)
    for name in a.services or stack.project.services:
        svc = stack.project.services[name]
        if svc.build is not None and (a.ignore_buildable or stack._image_id(svc.image) is not None):
            continue
        stack.pull(svc.image, name)
    return 0


def scale(prog, argv):
    p = parser(prog, "Scale services")
    p.add_argument("--no-deps", action="store_true")
    p.add_argument("pairs", nargs="+", metavar="SERVICE=REPLICAS")
    a = p.parse_args(argv)
    from orch.scheduler.model import ReconcileOptions

    from orch.cli.compose import load_from_options

    wanted = parse_scale(a.pairs)
    project = load_from_options(a)
    project.require_env(wanted)
    stack = open_stack(a, project=project)
    stack.resolve_images(list(wanted))
    stack.ensure_resources(list(wanted))
    options = ReconcileOptions(services=tuple(wanted), scale=wanted, no_deps=a.no_deps, up_since=time.time())
    return stack.converge(options)


__all__ = ["ps", "logs", "start", "stop", "restart", "pause", "unpause", "kill", "rm", "top", "exec_", "run", "build", "pull", "scale", "sys"]
