"""What integration tests' nodes leave to undo: their agents and supervisors (SIGTERM, a grace
of up to 5 s for a clean shutdown, then SIGKILL), and their bridges and nftables table."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path


def stop_process(pid: int | None) -> None:
    if not pid:
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(250):
        if not alive(pid):
            return
        time.sleep(0.02)  # polling a process we signalled: nothing to wait on but its exit
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def alive(pid: int) -> bool:
    """Whether `pid` still runs. An exited agent (a child of init, which the CLI's double fork
    makes it) stays a zombie until init reaps it, which this machine's init does about every
    2 s: a zombie has stopped, so it counts as gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def remove_node_networks(root: Path, net_prefix: str) -> None:
    """Bridges outlive agents, as docker0 does: a test node deletes its own, and its table."""
    try:
        state = json.loads((root / "networks" / "state.json").read_text())
    except (FileNotFoundError, ValueError):
        state = {}
    for net in state.get("networks", {}).values():
        subprocess.run(["ip", "link", "del", net["bridge"]], capture_output=True)
    subprocess.run(["nft", "delete", "table", "ip", net_prefix], capture_output=True)


def remove_node_cgroups(root: Path) -> None:
    """The node's cgroup parent (cgroups.node_cgroup_parent: one per ORCH_ROOT), in every
    hierarchy, once its containers' groups are gone; a group still in use stays (rmdir fails)."""
    from orch.node.runtime.cgroups import node_cgroup_parent

    parent = node_cgroup_parent(root)
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        for group in (hierarchy / parent / "supervisor", hierarchy / parent):  # the v2 leaf (Cgroups.settle), then the parent
            try:
                group.rmdir()
            except OSError:
                pass
