"""Node commands: `orch system df|prune|info` and `orch agent [--detach]`."""

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


def info(prog: str, argv: list[str]) -> int:
    data = _agent().call("GET", "/info")
    for key, value in data.items():
        print(f" {key}: {value}")
    return 0


GROUP = {"df": df, "prune": prune, "info": info}


def system_group(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: {prog} COMMAND\n\nManage the node\n\nCommands: df, prune, info")
        return 0 if argv else 2
    func = GROUP.get(argv[0])
    if func is None:
        raise InvalidArgument(f"unknown command '{prog} {argv[0]}'; use df, prune or info")
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
        pid = _agent().call("GET", "/info")["AgentPid"]  # asked, not read from the agent's files
        print(f"agent started (pid {pid}); log: {paths.root() / 'agent.log'}")
        return 0
    # The agent is a program of its own (orch.node.agent), never a module of the CLI's.
    os.execv(sys.executable, [sys.executable, "-m", "orch.node.agent"])
