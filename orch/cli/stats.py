"""`orch stats`: docker's live table of containers' resource usage, from GET
/containers/{id}/stats (the node's cgroups, read by the agent).

    orch stats [-a] [--no-stream] [--no-trunc] [--format FMT] [CONTAINER...]

Each refresh reads every container once (one-shot), a second apart; CPU % compares a reading
with the previous one as docker's CLI does, so the first table comes after two readings.
Without containers named, the running ones (all with -a) are listed again at each refresh.
The columns and their units are docker's (cli/command/container/stats_helpers.go and
formatter/stats.go): CPU and memory percentages with two decimals, memory in binary units
(BytesSize), network and block I/O in decimal ones with three digits.
"""

import sys
import time

from orch.api.args import Parser
from orch.client import quoted
from orch.errors import NotFound

TABLE = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}"
HEADERS = {"Container": "CONTAINER", "ID": "CONTAINER ID", "Name": "NAME", "CPUPerc": "CPU %", "MemUsage": "MEM USAGE / LIMIT",
           "MemPerc": "MEM %", "NetIO": "NET I/O", "BlockIO": "BLOCK I/O", "PIDs": "PIDS"}
INTERVAL = 1.0


# -- docker's computations (pure) -------------------------------------------------------------------
def cpu_percent(cpu: dict, previous: dict | None) -> float:
    """calculateCPUPercentUnix: the container's share of the node's CPU time between two
    readings, times the CPUs online (so 200% is two CPUs busy)."""
    if not previous:
        return 0.0
    cpu_delta = cpu.get("cpu_usage", {}).get("total_usage", 0) - previous.get("cpu_usage", {}).get("total_usage", 0)
    system_delta = cpu.get("system_cpu_usage", 0) - previous.get("system_cpu_usage", 0)
    online = cpu.get("online_cpus") or len(cpu.get("cpu_usage", {}).get("percpu_usage") or ())
    if system_delta > 0 and cpu_delta > 0:
        return cpu_delta / system_delta * online * 100.0
    return 0.0


def memory_usage(mem: dict) -> float:
    """calculateMemUsageUnixNoCache: usage less the inactive page cache (v1 total_inactive_file,
    v2 inactive_file)."""
    usage, stats = mem.get("usage", 0), mem.get("stats") or {}
    if "total_inactive_file" in stats and stats["total_inactive_file"] < usage:
        return float(usage - stats["total_inactive_file"])
    if stats.get("inactive_file", 0) < usage:
        return float(usage - stats.get("inactive_file", 0))
    return float(usage)


def block_io(blkio: dict) -> tuple[int, int]:
    read = write = 0
    for entry in blkio.get("io_service_bytes_recursive") or ():
        op = (entry.get("op") or " ")[0]
        if op in "rR":
            read += entry.get("value", 0)
        elif op in "wW":
            write += entry.get("value", 0)
    return read, write


def net_io(networks: dict | None) -> tuple[int, int]:
    rx = sum(n.get("rx_bytes", 0) for n in (networks or {}).values())
    tx = sum(n.get("tx_bytes", 0) for n in (networks or {}).values())
    return rx, tx


def bytes_size(n: float) -> str:
    """go-units BytesSize: binary units, "%.4g"."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.4g}{units[i]}"


def row(stats: dict, previous_cpu: dict | None, container: str, *, no_trunc: bool = False) -> dict:
    """One table row, docker's fields (formatter/stats.go)."""
    from orch.cli.format import human_size

    mem = stats.get("memory_stats") or {}
    used, limit = memory_usage(mem), float(mem.get("limit", 0))
    read, write = block_io(stats.get("blkio_stats") or {})
    rx, tx = net_io(stats.get("networks"))
    cid = stats.get("id", "")
    return {
        "Container": container, "ID": cid if no_trunc else cid[:12], "Name": stats.get("name", "").lstrip("/") or "--",
        "CPUPerc": f"{cpu_percent(stats.get('cpu_stats') or {}, previous_cpu):.2f}%",
        "MemUsage": f"{bytes_size(used)} / {bytes_size(limit)}",
        "MemPerc": f"{(used / limit * 100.0) if limit else 0.0:.2f}%",
        "NetIO": f"{human_size(rx)} / {human_size(tx)}", "BlockIO": f"{human_size(read)} / {human_size(write)}",
        "PIDs": str((stats.get("pids_stats") or {}).get("current", 0)),
    }


# -- the command ----------------------------------------------------------------------------------
def main(prog: str, argv: list[str]) -> int:
    p = Parser(prog=prog, description="Display a live stream of container(s) resource usage statistics")
    p.add_argument("-a", "--all", action="store_true", help="show all containers (default shows just running)")
    p.add_argument("--no-stream", action="store_true", help="disable streaming stats and only pull the first result")
    p.add_argument("--no-trunc", action="store_true", help="do not truncate output")
    p.add_argument("--format", help="format output using a Go template, or 'json'")
    p.add_argument("containers", nargs="*")
    a = p.parse_args(argv)
    from orch.cli._agent import client as agent

    client = agent()
    previous: dict[str, dict] = {}
    tty = sys.stdout.isatty()
    first = True
    while True:
        targets = _targets(client, a)
        readings = {}
        failed = []
        for ref, shown in targets:
            try:
                readings[ref] = (client.call("GET", f"/containers/{quoted(ref)}/stats?stream=0&one-shot=1"), shown)
            except NotFound as err:
                if a.containers:
                    failed.append(str(err))
        if failed and (first or a.no_stream):
            for message in failed:
                print(f"orch: {message}", file=sys.stderr)
            return 1
        if first:
            # CPU % needs two readings: the first table shows what happened in the first second.
            first = False
            previous = {ref: s.get("cpu_stats") for ref, (s, _) in readings.items()}
            time.sleep(INTERVAL)
            continue
        rows = []
        for ref, (s, shown) in readings.items():
            rows.append(row(s, previous.get(ref), shown, no_trunc=a.no_trunc))
        previous = {ref: s.get("cpu_stats") for ref, (s, _) in readings.items()}
        _print(rows, a.format, clear=tty and not a.no_stream)
        if a.no_stream:
            return 0
        time.sleep(INTERVAL)


def _targets(client, a) -> list[tuple[str, str]]:
    """(what to ask for, what .Container shows): the containers named, or the node's."""
    if a.containers:
        return [(c, c) for c in a.containers]
    rows = client.call("GET", "/containers/json" + ("?all=1" if a.all else ""))
    return [(c["Id"], c["Id"] if a.no_trunc else c["Id"][:12]) for c in rows]


def _print(rows: list[dict], fmt: str | None, *, clear: bool) -> None:
    from orch.cli.format import render_rows, to_json

    out = []
    if fmt == "json":
        out = [to_json(r) for r in rows]
    else:
        out = [line.rstrip() for line in render_rows(fmt or TABLE, rows, HEADERS)]
    if clear:
        sys.stdout.write("\033[H\033[J")  # home, then clear below: the table redrawn in place
    sys.stdout.write("".join(line + "\n" for line in out))
    sys.stdout.flush()
