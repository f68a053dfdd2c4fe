"""Node commands: `orch info`, `orch version`, `orch system df|prune|info|events` and `orch agent [--detach]`."""

import os
import sys

from orch.api.args import Parser
from orch.errors import InvalidArgument, OrchError


def _agent():
    from orch.cli._agent import client

    return client()


def human_size(n: float) -> str:
    """docker's units.HumanSize: decimal units, three significant digits (4.26MB, 0B)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.3g}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1000
    return f"{n}B"


def df(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Show disk usage")
    p.add_argument("-v", "--verbose", action="store_true")
    a = p.parse_args(argv)
    usage = _agent().call("GET", "/system/df")
    images, containers = usage["Images"], usage["Containers"]
    img_size = sum(i["Size"] for i in images)
    img_free = sum(i["Size"] for i in images if not i["Active"])
    c_size = sum(c["SizeRw"] for c in containers)
    c_free = sum(c["SizeRw"] for c in containers if c["State"] not in ("running", "paused"))

    def pct(part, whole):
        return f"{human_size(part)} ({int(part * 100 / whole) if whole else 0}%)"

    rows = [
        ("TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"),
        ("Images", str(len(images)), str(sum(i["Active"] for i in images)), human_size(img_size), pct(img_free, img_size)),
        ("Containers", str(len(containers)), str(sum(c["State"] in ("running", "paused") for c in containers)), human_size(c_size), pct(c_free, c_size)),
        ("Local Volumes", "0", "0", "0B", "0B"),
        ("Build Cache", "0", "0", "0B", "0B"),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("".join(c.ljust(widths[i] + 3) if i < 4 else c for i, c in enumerate(r)))
    if a.verbose:
        print("\nContainers space usage:\n")
        for c in containers:
            print(f"{c['Id'][:12]}   {c['State']:<10} {human_size(c['SizeRw']):>10}   {','.join(n.lstrip('/') for n in c['Names'])}")
    return 0


def prune(prog: str, argv: list[str], images: bool = True) -> int:
    p = Parser(prog=prog, description="Remove stopped containers" + (" and dangling images" if images else ""))
    p.add_argument("-f", "--force", action="store_true", help="do not prompt for confirmation")
    a = p.parse_args(argv)
    if not a.force:
        what = "  - all stopped containers\n" + ("  - all dangling images\n" if images else "")
        print(f"WARNING! This will remove:\n{what}\nAre you sure you want to continue? [y/N] ", end="", flush=True)
        if sys.stdin.readline().strip().lower() not in ("y", "yes"):
            return 0
    result = _agent().call("POST", "/system/prune", {"containers": True, "images": images})
    if result["ContainersDeleted"]:
        print("Deleted Containers:")
        for cid in result["ContainersDeleted"]:
            print(cid)
        print()
    if result["ImagesDeleted"]:
        print("Deleted Images:")
        for line in result["ImagesDeleted"]:
            print(line[0].lower() + line[1:] if line else line)
        print()
    print(f"Total reclaimed space: {human_size(result['SpaceReclaimed'])}")
    return 0


def bytes_size(n: float) -> str:
    """docker's units.BytesSize: binary units, four significant digits (23.54GiB, 740KiB)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.4g}{unit}"
        n /= 1024
    return f"{n}B"


def info(prog: str, argv: list[str]) -> int:
    """`orch info`: docker info's layout, with the fields that apply to orch."""
    p = Parser(prog=prog, description="Display system-wide information")
    p.add_argument("-f", "--format", help="format the output with a Go template, or 'json'")
    a = p.parse_args(argv)
    from orch import __version__

    data = _agent().call("GET", "/info")
    client = {"Version": __version__, "Context": "default", "Debug": False, "Plugins": [], "Warnings": None}
    if a.format:
        from orch.cli.format import render, to_json, unescape

        value = dict(data, ClientInfo=client)
        print(to_json(value) if a.format == "json" else render(unescape(a.format), value))
        return 0
    for line in info_lines(data, client):
        print(line)
    return 0


def info_lines(d: dict, client: dict) -> list[str]:
    """docker's `docker info` text (cli/command/system/info.go prettyPrintServerInfo)."""
    out = ["Client:", f" Version:    {client['Version']}", f" Context:    {client['Context']}", " Debug Mode: false", "",
           "Server:",
           f" Containers: {d['Containers']}", f"  Running: {d['ContainersRunning']}", f"  Paused: {d['ContainersPaused']}",
           f"  Stopped: {d['ContainersStopped']}", f" Images: {d['Images']}", f" Server Version: {d['ServerVersion']}",
           f" Storage Driver: {d['Driver']}"]
    out += [f"  {k}: {v}" for k, v in d.get("DriverStatus") or ()]
    out += [f" Logging Driver: {d['LoggingDriver']}", f" Cgroup Driver: {d['CgroupDriver']}",
            f" Cgroup Version: {d['CgroupVersion']}", " Plugins:"]
    plugins = d.get("Plugins") or {}
    out += [f"  {kind}: {' '.join(plugins.get(kind) or ())}" for kind in ("Volume", "Network", "Log")]
    swarm = d.get("Swarm") or {}
    state = swarm.get("LocalNodeState") or "inactive"
    out.append(f" Swarm: {state}")
    if state not in ("inactive", "pending") and swarm.get("NodeID"):
        out.append(f"  NodeID: {swarm['NodeID']}")
        if swarm.get("Error"):
            out.append(f"  Error: {swarm['Error']}")
        out.append(f"  Is Manager: {str(bool(swarm.get('ControlAvailable'))).lower()}")
        if swarm.get("Cluster") and swarm["Cluster"].get("ID"):
            out.append(f"  ClusterID: {swarm['Cluster']['ID']}")
        if swarm.get("Managers") is not None:
            out += [f"  Managers: {swarm.get('Managers')}", f"  Nodes: {swarm.get('Nodes')}"]
        out.append(f"  Node Address: {swarm.get('NodeAddr', '')}")
        managers = swarm.get("RemoteManagers") or []
        if managers:
            out.append("  Manager Addresses:")
            out += [f"   {m['Addr']}" for m in sorted(managers, key=lambda m: m.get("Addr", ""))]
    if d.get("InitBinary"):
        out.append(f" Init Binary: {d['InitBinary']}")
    options = d.get("SecurityOptions") or []
    if options:
        out.append(" Security Options:")
        for option in options:
            fields = dict(kv.split("=", 1) for kv in option.split(",") if "=" in kv)
            out.append(f"  {fields.get('name', option)}")
            out += [f"   {k.capitalize()}: {v}" for k, v in fields.items() if k != "name"]
    out += [f" Kernel Version: {d['KernelVersion']}", f" Operating System: {d['OperatingSystem']}", f" OSType: {d['OSType']}",
            f" Architecture: {d['Architecture']}", f" CPUs: {d['NCPU']}", f" Total Memory: {bytes_size(d['MemTotal'])}",
            f" Name: {d['Name']}", f" ID: {d['ID']}", f" Docker Root Dir: {d['DockerRootDir']}",
            f" Debug Mode: {str(d.get('Debug', False)).lower()}"]
    for key, label in (("HttpProxy", "HTTP Proxy"), ("HttpsProxy", "HTTPS Proxy"), ("NoProxy", "No Proxy")):
        if d.get(key):
            out.append(f" {label}: {d[key]}")
    out.append(f" Experimental: {str(d.get('ExperimentalBuild', False)).lower()}")
    insecure = (d.get("RegistryConfig") or {}).get("InsecureRegistryCIDRs") or []
    if insecure:
        out.append(" Insecure Registries:")
        out += [f"  {cidr}" for cidr in insecure]
    out.append(f" Live Restore Enabled: {str(d.get('LiveRestoreEnabled', False)).lower()}")
    return out


def version(prog: str, argv: list[str]) -> int:
    """`orch version`: docker version's layout (Client, then the Server's components)."""
    p = Parser(prog=prog, description="Show the orch version information")
    p.add_argument("-f", "--format", help="format the output with a Go template, or 'json'")
    a = p.parse_args(argv)
    from orch.api.engine import API_VERSION, build_facts
    from orch.errors import OrchError as _Error

    facts = build_facts()
    client = {"Platform": {"Name": "orch"}, "Version": facts["Version"], "ApiVersion": API_VERSION,
              "DefaultAPIVersion": API_VERSION, "GitCommit": facts["GitCommit"], "GoVersion": facts["GoVersion"],
              "Os": facts["Os"], "Arch": facts["Arch"], "BuildTime": ansi_date(facts["BuildTime"]), "Context": "default"}
    server, error = None, None
    try:
        server = _agent().call("GET", "/version")
    except _Error as err:
        error = err
    if a.format:
        from orch.cli.format import GoStruct, render, to_json, unescape

        value = {"Client": GoStruct(client), "Server": GoStruct(server) if server else None}
        if server:
            value["Server"]["Components"] = [dict(c, Details=dict(c.get("Details") or {}, BuildTime=ansi_date(
                (c.get("Details") or {}).get("BuildTime", "")))) for c in server.get("Components") or ()]
        print(to_json(value) if a.format == "json" else render(unescape(a.format), value))
    else:
        for line in version_lines(client, server):
            print(line)
    if error is not None:
        raise error
    return 0


def ansi_date(text: str) -> str:
    """docker's reformatDate: an RFC 3339 build time as Go's time.ANSIC ("Thu May  7 21:09:36 2026")."""
    import time as _time

    from orch.api.times import parse_time

    try:
        seconds = parse_time(text.replace("+00:00", "Z"))
    except ValueError:
        return text
    if seconds is None:
        return text
    t = _time.gmtime(seconds)
    return _time.strftime("%a %b ", t) + f"{t.tm_mday:2d}" + _time.strftime(" %H:%M:%S %Y", t)


def version_lines(client: dict, server: dict | None) -> list[str]:
    """docker version's default template, aligned as its tabwriter (min width 20, padding 1).
    The interpreter's line says Python where docker's says Go."""
    rows = ["Client: " + client["Platform"]["Name"], f" Version:\t{client['Version']}", f" API version:\t{client['ApiVersion']}",
            f" Python version:\t{client['GoVersion']}", f" Git commit:\t{client['GitCommit']}", f" Built:\t{client['BuildTime']}",
            f" OS/Arch:\t{client['Os']}/{client['Arch']}", f" Context:\t{client['Context']}"]
    if server is not None:
        name = (server.get("Platform") or {}).get("Name") or ""
        rows += ["", "Server:" + (f" {name}" if name else "")]
        for component in server.get("Components") or ():
            details = component.get("Details") or {}
            rows.append(f" {component['Name']}:")
            if component["Name"] == "Engine":
                rows += [f"  Version:\t{component['Version']}",
                         f"  API version:\t{details.get('ApiVersion', '')} (minimum version {details.get('MinAPIVersion', '')})",
                         f"  Python version:\t{details.get('GoVersion', '')}", f"  Git commit:\t{details.get('GitCommit', '')}",
                         f"  Built:\t{ansi_date(details.get('BuildTime', ''))}",
                         f"  OS/Arch:\t{details.get('Os', '')}/{details.get('Arch', '')}",
                         f"  Experimental:\t{details.get('Experimental', 'false')}"]
            else:
                rows.append(f"  Version:\t{component['Version']}")
                rows += [f"  {k}:\t{v}" for k, v in sorted(details.items())]
    from orch.cli.format import tabwrite

    out = []
    block: list[str] = []
    for row in rows + [""]:
        if "\t" in row:
            block.append(row.replace("\\t", "\t"))
            continue
        if block:
            out += tabwrite(block, minwidth=20, padding=1)
            block = []
        out.append(row)
    return out[:-1]


def events(prog: str, argv: list[str]) -> int:
    from orch.cli.events import main

    return main(prog, argv)


GROUP = {"df": df, "prune": prune, "info": info, "events": events}


def system_group(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage the node\n\nCommands: df, prune, info, events")
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; use df, prune, info or events")
    return func(f"{prog} {argv[0]}", argv[1:])


def agent(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Run the node agent (and start the node supervisor)")
    p.add_argument("-d", "--detach", action="store_true", help="run in the background; log to ORCH_ROOT/agent.log")
    a = p.parse_args(argv)
    if os.geteuid() != 0:
        raise OrchError("the node agent needs root (namespaces, mounts, cgroups); run 'sudo orch agent --detach'")
    if a.detach:
        from orch import paths
        from orch.cli._agent import answers, start_agent

        sock = str(paths.agent_socket())
        if answers(sock):
            print(f"an agent already serves {sock}")
            return 0
        start_agent(sock)
        pid = _agent().call("GET", "/_ping")["pid"]  # asked, not read from the agent's files
        print(f"agent started (pid {pid}); log: {paths.root() / 'agent.log'}")
        return 0
    # The agent is a program of its own (orch.node.agent), never a module of the CLI's.
    os.execv(sys.executable, [sys.executable, "-m", "orch.node.agent"])
