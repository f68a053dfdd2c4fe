"""`orch compose ls|cp|port|images|events|wait|create|attach|stats|version`, in docker
compose's grammar and output. Each is a client of the agent; the container commands they
lean on (`cp`, `attach`, `stats`, `events`) are orch's docker ones, given the project's
containers (found by compose's labels).
"""

import json
import os
import sys
import time

from orch.cli.compose_up import _with_deps, open_stack, parse_scale, parser
from orch.client import quoted
from orch.errors import InvalidArgument, NotFound

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
CONFIG_FILES = "com.docker.compose.project.config_files"


def _agent():
    from orch.cli._agent import client

    return client()


def _labels(r: dict) -> dict:
    return (r.get("Config") or {}).get("Labels") or r.get("Labels") or {}


def _print(fmt: str | None, rows: list[dict], table: str, headers: dict) -> None:
    from orch.cli.container import print_table

    if fmt == "json":
        print(json.dumps(rows, separators=(",", ":")))
    else:
        print_table(fmt or table, rows, headers)


# -- ls ------------------------------------------------------------------------------------------
def combined_status(states: list[str]) -> str:
    """compose's combinedStatus: "exited(1), running(2)", states sorted."""
    counts: dict[str, int] = {}
    for s in states:
        counts[s] = counts.get(s, 0) + 1
    return ", ".join(f"{s}({counts[s]})" for s in sorted(counts))


def compute_projects(rows: list[dict]) -> list[dict]:
    """compose ls's rows from the node's containers (docker ps rows with their labels)."""
    projects: dict[str, dict] = {}
    for r in rows:
        labels = r.get("Labels") or {}
        name = labels.get(PROJECT)
        if not name:
            continue
        p = projects.setdefault(name, {"Name": name, "states": [], "files": labels.get(CONFIG_FILES, "")})
        p["states"].append(r["State"])
        p["files"] = p["files"] or labels.get(CONFIG_FILES, "")
    return [{"Name": n, "Status": combined_status(p["states"]), "ConfigFiles": p["files"]} for n, p in sorted(projects.items())]


def ls(prog, argv):
    from orch.api.args import Parser

    p = Parser(prog=prog, description="List running compose projects")
    p.add_argument("-a", "--all", action="store_true", help="show all stopped Compose projects")
    p.add_argument("-q", "--quiet", action="store_true", help="only display project names")
    p.add_argument("--format", default="table", help="table or json (or a Go template)")
    p.add_argument("--filter", action="append", default=[], help="name=...")
    a, _ = p.parse_known_args(argv)  # the group's -f/-p make no sense here; compose ignores them too
    rows = _agent().call("GET", "/containers/json" + ("?all=1" if a.all else ""))
    projects = compute_projects(rows)
    for item in a.filter:
        key, _, value = item.partition("=")
        if key != "name":
            raise InvalidArgument(f"invalid filter '{key}'")
        projects = [pr for pr in projects if value in pr["Name"]]
    if a.quiet:
        for pr in projects:
            print(pr["Name"])
        return 0
    fmt = None if a.format == "table" else a.format
    _print(fmt, projects, "table {{.Name}}\t{{.Status}}\t{{.ConfigFiles}}",
           {"Name": "NAME", "Status": "STATUS", "ConfigFiles": "CONFIG FILES"})
    return 0


# -- per-service containers -------------------------------------------------------------------
def _containers(stack, services, *, running_only=False) -> list[dict]:
    unknown = [s for s in services if s not in stack.project.services]
    if unknown:
        raise InvalidArgument(f"no such service: {unknown[0]}")
    out = []
    for r in stack.records():
        labels = _labels(r)
        if labels.get(ONEOFF) == "True" or (services and labels.get(SERVICE) not in services):
            continue
        if running_only and r["State"]["Status"] not in ("running", "paused"):
            continue
        out.append(r)
    return out


def _replica(stack, service: str, index: int | None) -> dict:
    records = _containers(stack, [service])
    if index is None:
        running = [r for r in records if r["State"]["Status"] == "running"]
        records = running or records
        if records:
            return min(records, key=lambda r: int(_labels(r).get(NUMBER, "0") or 0))
    for r in records:
        if _labels(r).get(NUMBER) == str(index):
            return r
    raise NotFound(f"service \"{service}\" is not running container #{index or 1}")


def cp(prog, argv):
    """compose cp: `SERVICE:SRC DEST` (its first container, or --index) or `SRC SERVICE:DEST`
    (every container of the service, or --index)."""
    p = parser(prog, "Copy files/folders between a service container and the local filesystem")
    p.add_argument("--index", type=int, help="index of the container if the service has multiple replicas")
    p.add_argument("-a", "--archive", action="store_true")
    p.add_argument("-L", "--follow-link", action="store_true")
    p.add_argument("--all", action="store_true", help="(deprecated) include containers created by the run command")
    p.add_argument("source")
    p.add_argument("destination")
    a = p.parse_args(argv)
    from orch.cli import cp as docker_cp

    stack = open_stack(a, quiet=True)
    src_service, src_path = docker_cp.split_cp_arg(a.source)
    dst_service, dst_path = docker_cp.split_cp_arg(a.destination)
    flags = (["-a"] if a.archive else []) + (["-L"] if a.follow_link else [])
    if src_service and dst_service:
        raise InvalidArgument("copying between services is not supported")
    if src_service:
        target = _replica(stack, src_service, a.index)
        return docker_cp.cp("orch cp", flags + [f"{target['Id']}:{src_path}", a.destination])
    if not dst_service:
        raise InvalidArgument("one of the source or destination must be a service: SERVICE:PATH")
    targets = [_replica(stack, dst_service, a.index)] if a.index else _containers(stack, [dst_service])
    if not targets:
        raise NotFound(f"no container found for service \"{dst_service}\"")
    code = 0
    for r in targets:
        code |= docker_cp.cp("orch cp", flags + [a.source, f"{r['Id']}:{dst_path}"])
    return code


def port(prog, argv):
    p = parser(prog, "Print the public port for a port binding")
    p.add_argument("--index", type=int, default=1)
    p.add_argument("--protocol", default="tcp", choices=("tcp", "udp"))
    p.add_argument("service")
    p.add_argument("private_port", type=int)
    a = p.parse_args(argv)
    stack = open_stack(a, quiet=True)
    r = _replica(stack, a.service, a.index)
    ports = (stack.client.call("GET", f"/containers/{r['Id']}/json").get("NetworkSettings") or {}).get("Ports") or {}
    bound = ports.get(f"{a.private_port}/{a.protocol}") or []
    if not bound:
        raise InvalidArgument(f"no port {a.private_port}/{a.protocol} for container {r['Name'].lstrip('/')}: "
                              f"{', '.join(sorted(ports)) or 'none published'}")
    print(f"{bound[0]['HostIp'] or '0.0.0.0'}:{bound[0]['HostPort']}")
    return 0


def images(prog, argv):
    p = parser(prog, "List images used by the created containers")
    p.add_argument("-q", "--quiet", action="store_true")
    p.add_argument("--format", default="table")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    from orch.cli.format import human_size

    stack = open_stack(a, quiet=True)
    rows, seen = [], set()
    for r in _containers(stack, a.services):
        image_id = r.get("Image", "")
        try:
            image = stack.client.call("GET", f"/images/{quoted(image_id, safe='/:@')}/json")
        except NotFound:
            image = {"Id": image_id, "RepoTags": [], "Size": 0}
        ref = (r.get("Config") or {}).get("Image", "")
        tags = image.get("RepoTags") or []
        repo, tag = ref, ""
        if ref and ":" in ref.rsplit("/", 1)[-1]:
            repo, tag = ref.rsplit(":", 1)
        elif tags:
            repo, _, tag = tags[0].rpartition(":")
        elif ref:
            tag = "latest"
        rows.append({"ContainerName": r["Name"].lstrip("/"), "Repository": repo, "Tag": tag, "ID": image["Id"],
                     "Size": image.get("Size", 0)})
        seen.add(image["Id"])
    if a.quiet:
        for image_id in dict.fromkeys(row["ID"] for row in rows):
            print(image_id)
        return 0
    if a.format == "json":
        print(json.dumps(rows, separators=(",", ":")))
        return 0
    shown = [dict(row, ID=row["ID"].removeprefix("sha256:")[:12], Size=human_size(row["Size"])) for row in rows]
    _print(None if a.format == "table" else a.format, shown,
           "table {{.ContainerName}}\t{{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.Size}}",
           {"ContainerName": "CONTAINER", "Repository": "REPOSITORY", "Tag": "TAG", "ID": "IMAGE ID", "Size": "SIZE"})
    return 0


# -- events, wait, create, attach, stats, version ------------------------------------------------------
def compose_event(msg: dict) -> dict | None:
    """compose's view of a docker event: the project's containers only, not one-off ones,
    compose's own labels left out of the attributes (pkg/compose/events.go)."""
    if msg.get("Type") != "container":
        return None
    attrs = (msg.get("Actor") or {}).get("Attributes") or {}
    if attrs.get(ONEOFF) == "True":
        return None
    return {"time": msg.get("timeNano") or msg.get("time", 0) * 1_000_000_000, "service": attrs.get(SERVICE, ""),
            "id": (msg.get("Actor") or {}).get("ID", ""), "action": msg.get("Action", ""),
            "attributes": {k: v for k, v in sorted(attrs.items()) if not k.startswith("com.docker.compose.")}}


def event_line(e: dict) -> str:
    """compose's api.Event String(): "2006-01-02 15:04:05.000000 container ACTION ID (k=v, ...)"."""
    seconds, nanos = divmod(e["time"], 1_000_000_000)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds)) + f".{nanos // 1000:06d}"
    attrs = ", ".join(f"{k}={v}" for k, v in e["attributes"].items())
    return f"{stamp} container {e['action']} {e['id']} ({attrs})"


def event_json(e: dict) -> str:
    seconds, nanos = divmod(e["time"], 1_000_000_000)
    local = time.localtime(seconds)
    offset = local.tm_gmtoff
    zone = "Z" if offset == 0 else f"{'+' if offset > 0 else '-'}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    frac = f"{nanos:09d}".rstrip("0")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local) + (f".{frac}" if frac else "") + zone
    return json.dumps({"action": e["action"], "attributes": e["attributes"], "id": e["id"], "service": e["service"],
                       "time": stamp, "type": "container"}, separators=(",", ":"))


def events(prog, argv):
    p = parser(prog, "Receive real time events from containers")
    p.add_argument("--json", action="store_true", help="output events as a stream of json objects")
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    from orch.cli.events import query, stream_events

    stack = open_stack(a, quiet=True)
    unknown = [s for s in a.services if s not in stack.project.services]
    if unknown:
        raise InvalidArgument(f"no such service: {unknown[0]}")
    path = "/events" + query(a.since, a.until, {"label": [f"{PROJECT}={stack.name}"]})
    for msg in stream_events(stack.client, path):
        e = compose_event(msg)
        if e is None or (a.services and e["service"] not in a.services):
            continue
        # compose prints a blank line after each text event (its String() ends in a newline)
        print(event_json(e) if a.json else event_line(e) + "\n", flush=True)
    return 0


def wait(prog, argv):
    """compose wait: block until the first container of the services stops; exit with its code."""
    p = parser(prog, "Block until containers of all (or specified) services stop.")
    p.add_argument("--down-project", action="store_true", help="drops project when the first container stops")
    p.add_argument("services", nargs="+", metavar="SERVICE")
    a = p.parse_args(argv)
    import queue
    import threading

    stack = open_stack(a, quiet=True)
    records = _containers(stack, a.services)
    if not records:
        raise NotFound(f"no containers for project {stack.name!r}")
    done: queue.Queue = queue.Queue()

    def one(r):
        try:
            done.put(int(stack.client.call("POST", f"/containers/{r['Id']}/wait")["StatusCode"]))
        except Exception as err:  # noqa: BLE001 - handed to the main thread
            done.put(err)

    for r in records:
        threading.Thread(target=one, args=(r,), daemon=True).start()
    first = done.get()
    if isinstance(first, BaseException):
        raise first
    if a.down_project:
        stack.down(remove_orphans=False, volumes=False, rmi=None, timeout=None)
    return first


def create(prog, argv):
    """compose create: the services' containers made (with their networks and volumes), not
    started; an existing one of the same configuration is kept, another recreated."""
    p = parser(prog, "Creates containers for a service")
    p.add_argument("--build", action="store_true")
    p.add_argument("--no-build", action="store_true")
    p.add_argument("--force-recreate", action="store_true")
    p.add_argument("--no-recreate", action="store_true")
    p.add_argument("--pull", nargs="?", const="always", choices=["always", "missing", "never", "build"])
    p.add_argument("--quiet-pull", action="store_true")
    p.add_argument("--remove-orphans", action="store_true")
    p.add_argument("--scale", action="append", default=[], metavar="SERVICE=NUM")
    p.add_argument("-y", "--yes", action="store_true")
    p.add_argument("services", nargs="*", metavar="SERVICE")
    a = p.parse_args(argv)
    if a.force_recreate and a.no_recreate:
        raise InvalidArgument("--force-recreate and --no-recreate are incompatible")
    from orch.cli.compose import load_from_options
    from orch.compose import translate as t

    project = load_from_options(a)
    selected = _with_deps(project, a.services, False)
    project.require_env(selected)
    stack = open_stack(a, project=project)
    stack.quiet_pull = a.quiet_pull
    stack.resolve_images(selected, build=a.build, pull=a.pull == "always", no_build=a.no_build)
    stack.ensure_resources(selected)
    desired, observed = stack.desired(), stack.observe()
    scale = parse_scale(a.scale)
    for name in selected:
        want = desired.services[name]
        svc = stack.project.services[name]
        mine = {c.number: c for c in observed.containers if c.service == name and not c.one_off}
        for number in range(1, scale.get(name, want.replicas) + 1):
            cname = t.container_name(stack.name, name, number, want.container_name)
            have = mine.get(number)
            if have is not None and (a.no_recreate or (have.config_hash == want.config_hash and not a.force_recreate)):
                stack.report.done("Container", have.name, "Created" if have.state == "created" else "Running")
                continue
            if have is not None:
                stack.client.call("DELETE", f"/containers/{have.id}?stop=1&force=1")
                stack.report.done("Container", have.name, "Recreated")
            body = t.compute_create_body(stack.project, name, svc, number=number, config_hash=want.config_hash, image=svc.image,
                                         os_environ=dict(os.environ), cname=cname, network_container=None)
            stack.client.call("POST", "/containers/create", body)
            stack.report.done("Container", cname, "Created")
    return 0


def attach(prog, argv):
    p = parser(prog, "Attach local standard input, output, and error streams to a service's running container")
    p.add_argument("--detach-keys")
    p.add_argument("--index", type=int)
    p.add_argument("--no-stdin", action="store_true")
    p.add_argument("--sig-proxy", nargs="?", const="true", default="true", choices=("true", "false"))
    p.add_argument("service")
    a = p.parse_args(argv)
    stack = open_stack(a, quiet=True)
    r = _replica(stack, a.service, a.index)
    from orch.cli.container import attach as docker_attach

    args = (["--detach-keys", a.detach_keys] if a.detach_keys else []) + (["--no-stdin"] if a.no_stdin else [])
    return docker_attach("orch attach", args + [f"--sig-proxy={a.sig_proxy}", r["Id"]])


def stats(prog, argv):
    p = parser(prog, "Display a live stream of container(s) resource usage statistics")
    p.add_argument("-a", "--all", action="store_true")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--no-trunc", action="store_true")
    p.add_argument("--format")
    p.add_argument("service", nargs="?")
    a = p.parse_args(argv)
    stack = open_stack(a, quiet=True)
    records = _containers(stack, [a.service] if a.service else [], running_only=not a.all)
    args = (["--no-stream"] if a.no_stream else []) + (["--no-trunc"] if a.no_trunc else []) + (["--format", a.format] if a.format else [])
    if not records:
        return 0
    from orch.cli.stats import main as docker_stats

    return docker_stats("orch stats", args + [r["Name"].lstrip("/") for r in records])


def version(prog, argv):
    from orch import __version__
    from orch.api.args import Parser

    p = Parser(prog=prog, description="Show the orch compose version information")
    p.add_argument("-f", "--format", choices=("pretty", "json"), default="pretty")
    p.add_argument("--short", action="store_true")
    a, _ = p.parse_known_args(argv)
    if a.short:
        print(__version__)
    elif a.format == "json":
        print(json.dumps({"version": "v" + __version__}))
    else:
        print(f"orch compose version v{__version__}")
    return 0


__all__ = ["ls", "cp", "port", "images", "events", "wait", "create", "attach", "stats", "version", "sys"]
