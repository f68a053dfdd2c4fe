"""What `orch node|service|stack` print: docker's columns, `--format` placeholders and human
forms, over the Docker Engine API's JSON that the agent's cluster routes answer.

The rows are docker's formatter contexts (docker/cli cli/command/{node,service,task,stack}
formatter.go) as dicts, so `--format '{{.Replicas}}'` and `--format json` see the same names:

- node ls:     ID, Self, Hostname, Status, Availability, ManagerStatus, EngineVersion, TLSStatus
- service ls:  ID, Name, Mode, Replicas, Image, Ports
- tasks (service ps, node ps, stack ps): ID, Name, Image, Node, DesiredState, CurrentState,
               Error, Ports
- stack ls:    Name, Services

Human forms as docker's: states capitalised ("Running 2 minutes ago"), IDs cut to 12
characters, an older task of a slot indented ` \\_ ` under the newer one, errors cut to 30
characters and quoted, published ingress ports grouped into ranges (`*:80-81->80-81/tcp`),
names sorted naturally (web2 before web10).

Pure: JSON values in, rows and lines out; the clock is an argument.
"""

from __future__ import annotations

import re
from datetime import datetime

from orch.api.times import human_duration
from orch.cli.format import render_rows, unescape
from orch.spec.units import format_nanos

NODE_TABLE = "table {{.ID}} {{if .Self}}*{{else}} {{ end }}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}"
NODE_HEADERS = {"ID": "ID", "Self": "", "Hostname": "HOSTNAME", "Status": "STATUS", "Availability": "AVAILABILITY",
                "ManagerStatus": "MANAGER STATUS", "EngineVersion": "ENGINE VERSION", "TLSStatus": "TLS STATUS"}
SERVICE_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Mode}}\t{{.Replicas}}\t{{.Image}}\t{{.Ports}}"
SERVICE_HEADERS = {"ID": "ID", "Name": "NAME", "Mode": "MODE", "Replicas": "REPLICAS", "Image": "IMAGE", "Ports": "PORTS"}
TASK_TABLE = "table {{.ID}}\t{{.Name}}\t{{.Image}}\t{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}\t{{.Error}}\t{{.Ports}}"
TASK_HEADERS = {"ID": "ID", "Name": "NAME", "Image": "IMAGE", "Node": "NODE", "DesiredState": "DESIRED STATE",
                "CurrentState": "CURRENT STATE", "Error": "ERROR", "Ports": "PORTS"}
STACK_TABLE = "table {{.Name}}\t{{.Services}}"
STACK_HEADERS = {"Name": "NAME", "Services": "SERVICES"}
QUIET = "{{.ID}}"
MAX_ERROR = 30


# -- docker's small human forms ---------------------------------------------------------------------


def pretty(value) -> str:
    """docker's formatter.PrettyPrint: the first letter upper, the rest lower."""
    s = "" if value is None else str(value)
    return s[:1].upper() + s[1:].lower() if len(s) > 1 else s.lower()


def truncate_id(value: str) -> str:
    return value[:12]


def ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def natural_key(text: str):
    """sortorder.NaturalLess: runs of digits compare as numbers."""
    return [(0, int(part), part) if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", text) if part]


def parse_time(text: str | None) -> float:
    """An RFC 3339 time from the API as seconds since the epoch (0 for Go's zero time)."""
    if not text or text.startswith("0001-01-01"):
        return 0.0
    return datetime.fromisoformat(text).timestamp()


def ago(text: str | None, now: float) -> str:
    """"2 minutes ago", as docker writes a task's current state."""
    return human_duration(max(0.0, now - parse_time(text))).lower() + " ago"


def familiar_image(image: str) -> str:
    """An image reference as docker lists it: the digest dropped when a tag is given, docker
    Hub's default registry and library/ left out."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    if digest and ":" not in last:
        name = image  # a digest only: keep it
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    return name


def go_duration(ns: int | float | None) -> str:
    """Go's time.Duration.String(): 1h2m3s, 1m0s, 1.5s, 500ms, 0s."""
    return format_nanos(int(ns or 0))


def bytes_size(size: float) -> str:
    """go-units BytesSize: binary units, four significant digits (20MiB, 1.953GiB)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"]
    i = 0
    size = float(size)
    while size >= 1024 and i < len(units) - 1:
        size /= 1024
        i += 1
    return f"{size:.4g}{units[i]}"


# -- rows -----------------------------------------------------------------------------------------


def node_row(node: dict, self_id: str = "") -> dict:
    manager = node.get("ManagerStatus")
    reachability = ""
    if manager is not None:
        reachability = "Leader" if manager.get("Leader") else manager.get("Reachability", "")
    return {
        "Availability": pretty(node.get("Spec", {}).get("Availability", "")),
        "EngineVersion": node.get("Description", {}).get("Engine", {}).get("EngineVersion", ""),
        "Hostname": node.get("Description", {}).get("Hostname", ""),
        "ID": node["ID"],
        "ManagerStatus": pretty(reachability),
        "Self": node["ID"] == self_id,
        "Status": pretty(node.get("Status", {}).get("State", "")),
        "TLSStatus": "Unknown",
    }


def service_mode(service: dict) -> str:
    mode = service.get("Spec", {}).get("Mode", {})
    for key, name in (("Global", "global"), ("Replicated", "replicated"), ("ReplicatedJob", "replicated job"),
                      ("GlobalJob", "global job")):
        if mode.get(key) is not None:
            return name
    return ""


def service_replicas(service: dict) -> str:
    status = service.get("ServiceStatus") or {}
    running, desired = status.get("RunningTasks", 0), status.get("DesiredTasks", 0)
    most = (service.get("Spec", {}).get("TaskTemplate", {}).get("Placement") or {}).get("MaxReplicas", 0)
    if service_mode(service) == "replicated" and most:
        return f"{running}/{desired} (max {most} per node)"
    return f"{running}/{desired}"


def service_ports(ports: list[dict] | None) -> str:
    """docker's serviceContext.Ports: ingress ports grouped into consecutive ranges."""
    if not ports:
        return ""
    out = []
    current = None  # [pStart, pEnd, tStart, tEnd, protocol]
    for p in sorted(ports, key=lambda p: (p.get("Protocol", "tcp"), p.get("PublishedPort", 0))):
        if p.get("PublishMode", "ingress") != "ingress":
            continue
        published, target, proto = p.get("PublishedPort", 0), p.get("TargetPort", 0), p.get("Protocol", "tcp")
        if current is not None:
            is_range = current[3] != current[2]
            overlaps = target <= current[3]
            if not (proto != current[4] or published - current[1] > 1 or target - current[3] > 1 or (is_range and overlaps)):
                current[1], current[3] = published, target
                continue
            if current[0] > 0:
                out.append(_port_range(current))
        current = [published, published, target, target, proto]
    if current is not None and current[0] > 0:
        out.append(_port_range(current))
    return ", ".join(out)


def _port_range(r: list) -> str:
    pub = f"{r[0]}-{r[1]}" if r[1] > r[0] else str(r[0])
    tgt = f"{r[2]}-{r[3]}" if r[3] > r[2] else str(r[2])
    return f"*:{pub}->{tgt}/{r[4]}"


def service_row(service: dict) -> dict:
    spec = service.get("Spec", {})
    image = (spec.get("TaskTemplate", {}).get("ContainerSpec") or {}).get("Image", "")
    return {"ID": truncate_id(service["ID"]), "Image": familiar_image(image), "Mode": service_mode(service),
            "Name": spec.get("Name", ""), "Ports": service_ports(service.get("Endpoint", {}).get("Ports")),
            "Replicas": service_replicas(service)}


def sort_services(services: list[dict]) -> list[dict]:
    return sorted(services, key=lambda s: natural_key(s.get("Spec", {}).get("Name", "")))


def task_name(task: dict, service_names: dict[str, str]) -> str:
    """SERVICE.SLOT, or SERVICE.NODEID for a global service's task (docker's task names)."""
    service = service_names.get(task.get("ServiceID", ""), task.get("ServiceID", ""))
    return f"{service}.{task['Slot']}" if task.get("Slot") else f"{service}.{task.get('NodeID', '')}"


def task_rows(tasks: list[dict], service_names: dict[str, str], node_names: dict[str, str], *, now: float,
              trunc: bool = True, indent: bool = True) -> list[dict]:
    """docker's task.Print: sorted by name then newest first, older tasks of a slot indented."""
    named = [(task_name(t, service_names), t) for t in tasks]
    named.sort(key=lambda nt: parse_time(nt[1].get("CreatedAt")), reverse=True)
    named.sort(key=lambda nt: natural_key(nt[0]))  # stable: newest first within a name
    rows, previous = [], None
    for name, t in named:
        status = t.get("Status", {})
        image = (t.get("Spec", {}).get("ContainerSpec") or {}).get("Image", "")
        err = status.get("Err", "")
        if trunc:
            err = ellipsis(err, MAX_ERROR)
        ports = ",".join(f"*:{p.get('PublishedPort', 0)}->{p.get('TargetPort', 0)}/{p.get('Protocol', 'tcp')}"
                         for p in (status.get("PortStatus") or {}).get("Ports") or ())
        rows.append({
            "CurrentState": f"{pretty(status.get('State', ''))} {ago(status.get('Timestamp'), now)}",
            "DesiredState": pretty(t.get("DesiredState", "")),
            "Error": f'"{err}"' if err else "",
            "ID": truncate_id(t["ID"]) if trunc else t["ID"],
            "Image": familiar_image(image) if trunc else image,
            "Name": (" \\_ " + name) if indent and name == previous else name,
            "Node": node_names.get(t.get("NodeID", ""), t.get("NodeID", "")),
            "Ports": ports,
        })
        previous = name
    return rows


# -- printing -------------------------------------------------------------------------------------


def list_format(fmt: str | None, *, default: str, quiet: bool) -> str:
    """docker's newFormat for lists: "" or "table" -> the default table (or the IDs with -q),
    "json" -> one JSON object a row, anything else is the user's template."""
    if not fmt or fmt == "table":
        return QUIET if quiet else default
    if fmt == "json":
        return "{{json .}}"
    return fmt


def print_rows(fmt: str, rows: list[dict], headers: dict) -> None:
    for line in render_rows(fmt, rows, headers):
        print(line.rstrip())


def is_table(fmt: str) -> bool:
    return unescape(fmt).startswith("table")


# -- inspect --pretty -------------------------------------------------------------------------------


def node_pretty(node: dict) -> str:
    """`node inspect --pretty`, docker's nodeInspectPrettyTemplate."""
    spec, desc, status = node.get("Spec", {}), node.get("Description", {}), node.get("Status", {})
    lines = [f"ID:\t\t\t{node['ID']}"]
    if spec.get("Name"):
        lines.append(f"Name:\t\t\t{spec['Name']}")
    if spec.get("Labels"):
        lines.append("Labels:")
        lines += [f" - {k}" + (f"={v}" if v else "") for k, v in sorted(spec["Labels"].items())]
    lines.append(f"Hostname:              \t{desc.get('Hostname', '')}")
    lines.append(f"Joined at:             \t{_pretty_time(node.get('CreatedAt'))}")
    lines.append("Status:")
    lines.append(f" State:\t\t\t{pretty(status.get('State', ''))}")
    if status.get("Message"):
        lines.append(f" Message:              \t{pretty(status['Message'])}")
    lines.append(f" Availability:         \t{pretty(spec.get('Availability', ''))}")
    if status.get("Addr"):
        lines.append(f" Address:\t\t{status['Addr']}")
    manager = node.get("ManagerStatus")
    if manager is not None:
        lines.append("Manager Status:")
        lines.append(f" Address:\t\t{manager.get('Addr', '')}")
        lines.append(f" Raft Status:\t\t{pretty(manager.get('Reachability', ''))}")
        lines.append(f" Leader:\t\t{'Yes' if manager.get('Leader') else 'No'}")
    platform, resources = desc.get("Platform", {}), desc.get("Resources", {})
    lines.append("Platform:")
    lines.append(f" Operating System:\t{platform.get('OS', '')}")
    lines.append(f" Architecture:\t\t{platform.get('Architecture', '')}")
    lines.append("Resources:")
    lines.append(f" CPUs:\t\t\t{int(resources.get('NanoCPUs', 0)) // 1_000_000_000}")
    memory = resources.get("MemoryBytes", 0)
    lines.append(f" Memory:\t\t{bytes_size(memory) if memory else ''}")
    engine = desc.get("Engine", {})
    lines.append(f"Engine Version:\t\t{engine.get('EngineVersion', '')}")
    if engine.get("Labels"):
        lines.append("Engine Labels:")
        lines += [f" - {k}" + (f"={v}" if v else "") for k, v in sorted(engine["Labels"].items())]
    return "\n".join(lines)


def _pretty_time(text: str | None) -> str:
    """Go's time.Time String() as docker prints a node's join time, lower-cased by PrettyPrint."""
    if not text:
        return ""
    dt = datetime.fromisoformat(text)
    return pretty(dt.strftime("%Y-%m-%d %H:%M:%S") + (f".{dt.microsecond:06d}".rstrip("0") if dt.microsecond else "")
                  + " +0000 UTC")


def service_pretty(service: dict, *, now: float, network_names: dict[str, str] | None = None) -> str:
    """`service inspect --pretty`, docker's serviceInspectPrettyTemplate."""
    spec = service.get("Spec", {})
    task = spec.get("TaskTemplate", {})
    c = task.get("ContainerSpec") or {}
    lines = ["", f"ID:\t\t{service['ID']}", f"Name:\t\t{spec.get('Name', '')}"]
    if spec.get("Labels"):
        lines.append("Labels:")
        lines += [f" {k}" + (f"={v}" if v else "") for k, v in sorted(spec["Labels"].items())]
    mode = spec.get("Mode", {})
    if mode.get("Global") is not None:
        lines.append("Service Mode:\tGlobal")
    elif mode.get("Replicated") is not None:
        lines.append("Service Mode:\tReplicated")
        if mode["Replicated"].get("Replicas") is not None:
            lines.append(f" Replicas:\t{mode['Replicated']['Replicas']}")
    update_status = service.get("UpdateStatus")
    if update_status and update_status.get("State"):
        lines.append("UpdateStatus:")
        lines.append(f" State:\t\t{update_status['State']}")
        if update_status.get("StartedAt"):
            lines.append(f" Started:\t{ago(update_status['StartedAt'], now)}")
        if update_status["State"] == "completed" and update_status.get("CompletedAt"):
            lines.append(f" Completed:\t{ago(update_status['CompletedAt'], now)}")
        lines.append(f" Message:\t{update_status.get('Message', '')}")
    placement = task.get("Placement") or {}
    lines.append("Placement:")
    if placement.get("Constraints"):
        lines.append(f" Constraints:\t[{' '.join(placement['Constraints'])}]")
    prefs = ["spread=" + p["Spread"]["SpreadDescriptor"] for p in placement.get("Preferences") or () if p.get("Spread")]
    if prefs:
        lines.append(f" Preferences:   [{' '.join(prefs)}]")
    if placement.get("MaxReplicas"):
        lines.append(f" Max Replicas Per Node:   {placement['MaxReplicas']}")
    for key, title, order in (("UpdateConfig", "UpdateConfig", "Update order"), ("RollbackConfig", "RollbackConfig", "Rollback order")):
        u = spec.get(key)
        if u is None:
            continue
        lines.append(f"{title}:")
        lines.append(f" Parallelism:\t{u.get('Parallelism', 0)}")
        if u.get("Delay"):
            lines.append(f" Delay:\t\t{go_duration(u['Delay'])}")
        lines.append(f" On failure:\t{u.get('FailureAction', '')}")
        if u.get("Monitor"):
            lines.append(f" Monitoring Period: {go_duration(u['Monitor'])}")
        lines.append(f" Max failure ratio: {_go_float(u.get('MaxFailureRatio', 0))}")
        lines.append(f" {order}:{' ' * (len('Update order') - len(order))}      {u.get('Order', '')}")
    lines.append("ContainerSpec:")
    lines.append(f" Image:\t\t{c.get('Image', '')}")
    if c.get("Args"):
        lines.append(" Args:\t\t" + "".join(f"{a} " for a in c["Args"]))
    if c.get("Env"):
        lines.append(" Env:\t\t" + "".join(f"{e} " for e in c["Env"]))
    if c.get("Dir"):
        lines.append(f" Dir:\t\t{c['Dir']}")
    if c.get("Init") is not None:
        lines.append(f" Init:\t\t{'true' if c['Init'] else 'false'}")
    if c.get("User"):
        lines.append(f" User: {c['User']}")
    if c.get("CapabilityAdd") or c.get("CapabilityDrop"):
        lines.append("Capabilities:")
        if c.get("CapabilityAdd"):
            lines.append(f" Add: {', '.join(c['CapabilityAdd'])}")
        if c.get("CapabilityDrop"):
            lines.append(f" Drop: {', '.join(c['CapabilityDrop'])}")
    if c.get("Sysctls"):
        lines.append("SysCtls:")
        lines += [f" {k}" + (f": {v}" if v else "") for k, v in sorted(c["Sysctls"].items())]
    if c.get("Ulimits"):
        lines.append("Ulimits:")
        lines += [f" {u['Name']}: {u.get('Soft', 0)}:{u.get('Hard', 0)}" for u in sorted(c["Ulimits"], key=lambda u: u["Name"])]
    if c.get("Mounts"):
        lines.append("Mounts:")
        for m in c["Mounts"]:
            lines += [f" Target:\t{m.get('Target', '')}", f"  Source:\t{m.get('Source', '')}",
                      f"  ReadOnly:\t{'true' if m.get('ReadOnly') else 'false'}", f"  Type:\t\t{m.get('Type', '')}"]
    if c.get("Configs"):
        lines.append("Configs:")
        for ref in c["Configs"]:
            lines += [f" Target:\t{ref.get('File', {}).get('Name', '')}", f"  Source:\t{ref.get('ConfigName', '')}"]
    if c.get("Secrets"):
        lines.append("Secrets:")
        for ref in c["Secrets"]:
            lines += [f" Target:\t{ref.get('File', {}).get('Name', '')}", f"  Source:\t{ref.get('SecretName', '')}"]
    log = task.get("LogDriver")
    if log is not None:
        lines.append("Log Driver:")
        if log.get("Name"):
            lines.append(f" Name:\t\t{log['Name']}")
        if log.get("Options"):
            lines.append(" LogOpts:")
            lines += [f"  {k}" + (f":       {v}" if v else "") for k, v in sorted(log["Options"].items())]
        lines.append("")
    resources = task.get("Resources")
    if resources is not None:
        reservations, limits = resources.get("Reservations") or {}, resources.get("Limits") or {}
        lines.append("Resources:")
        if reservations.get("NanoCPUs") or reservations.get("MemoryBytes"):
            lines.append(" Reservations:")
            if reservations.get("NanoCPUs"):
                lines.append(f"  CPU:\t\t{_go_float(reservations['NanoCPUs'] / 1e9)}")
            if reservations.get("MemoryBytes"):
                lines.append(f"  Memory:\t{bytes_size(reservations['MemoryBytes'])}")
        if limits.get("NanoCPUs") or limits.get("MemoryBytes") or limits.get("Pids"):
            lines.append(" Limits:")
            if limits.get("NanoCPUs"):
                lines.append(f"  CPU:\t\t{_go_float(limits['NanoCPUs'] / 1e9)}")
            if limits.get("MemoryBytes"):
                lines.append(f"  Memory:\t{bytes_size(limits['MemoryBytes'])}")
        if limits.get("Pids"):
            lines.append(f"  PIDs:\t\t{limits['Pids']}")
    networks = [(network_names or {}).get(n["Target"], n["Target"]) for n in task.get("Networks") or ()]
    if networks:
        lines.append("Networks:" + "".join(f" {n}" for n in networks) + " ")
    lines.append(f"Endpoint Mode:\t{(spec.get('EndpointSpec') or {}).get('Mode', '')}")
    ports = service.get("Endpoint", {}).get("Ports") or []
    if ports:
        lines.append("Ports:")
        for p in ports:
            lines += [f" PublishedPort = {p.get('PublishedPort', 0)}", f"  Protocol = {p.get('Protocol', '')}",
                      f"  TargetPort = {p.get('TargetPort', 0)}", f"  PublishMode = {p.get('PublishMode', '')}"]
        lines[-1] += " "
        mesh = service.get("RoutingMesh")
        if mesh:
            lines.append(f"Client Address:\t{mesh.get('ClientAddress', '')} ({mesh.get('How', '')})")
    health = c.get("Healthcheck")
    if health:
        lines += [" Healthcheck:", f"  Interval = {go_duration(health.get('Interval'))}", f"  Retries = {health.get('Retries', 0)}",
                  f"  StartPeriod =\t{go_duration(health.get('StartPeriod'))}", f"  Timeout =\t{go_duration(health.get('Timeout'))}"]
        if health.get("Test"):
            lines.append("  Tests:")
            lines += [f"\t Test = {t}" for t in health["Test"]]
    return "\n".join(lines) + "\n"


def _go_float(value: float) -> str:
    """Go's %v of a float: 0.15, 0, 1.5."""
    return f"{float(value):g}"
