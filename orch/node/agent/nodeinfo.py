"""GET /info and GET /version: the node described in dockerd's shapes (Engine API 1.41's
SystemInfo and SystemVersion), with the fields that apply to orch.

Left out, because nothing in orch answers them: NGoroutines (no Go), Runtimes and
DefaultRuntime (orch is its own runtime, no runc to choose), the containerd, runc and init
commits, ContainerdCommit and friends, GenericResources, Isolation. Kept with docker's
meaning: what the kernel's cgroups can limit (MemoryLimit, SwapLimit, CpuCfsQuota, ...),
measured on this host's hierarchies as dockerd's sysinfo does; the storage driver (orch's
overlay snapshots, "overlay", as container inspect's Driver says); the node's ID (a UUID
made once and kept in ORCH_ROOT/engine-id, as dockerd 23+ keeps its engine-id).

Swarm: GET /swarm/local, when the agent has that route (the cluster's), else inactive.
"""

from __future__ import annotations

import os
import platform
import time
import uuid
from pathlib import Path

from orch.api.engine import API_VERSION, MIN_API_VERSION, arch, build_facts

SWARM_INACTIVE = {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False, "Error": "",
                  "RemoteManagers": None}


def engine_id(root: Path) -> str:
    path = Path(root) / "engine-id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        from orch.atomic import write_atomic

        new = str(uuid.uuid4())
        write_atomic(path, new.encode())
        return new


def os_release() -> tuple[str, str]:
    """(PRETTY_NAME, VERSION_ID) of /etc/os-release, as dockerd reads them."""
    fields = {}
    try:
        with open("/etc/os-release") as f:
            for line in f:
                key, eq, value = line.strip().partition("=")
                if eq:
                    fields[key] = value.strip('"')
    except OSError:
        pass
    return fields.get("PRETTY_NAME", "Linux"), fields.get("VERSION_ID", "")


def backing_filesystem(path: Path) -> str:
    """The file system under `path` by docker's names (ext2/3/4 are "extfs"), from mountinfo."""
    best, fstype = "", "unknown"
    target = os.path.realpath(path)
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return fstype
    for line in text.splitlines():
        fields = line.split()
        point = fields[4].replace("\\040", " ")
        if (target == point or target.startswith(point.rstrip("/") + "/")) and len(point) >= len(best):
            best, fstype = point, line.split(" - ", 1)[1].split()[0]
    return "extfs" if fstype in ("ext2", "ext3", "ext4") else fstype


def _exists(*paths) -> bool:
    return any(os.path.exists(p) for p in paths)


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def cgroup_facts(cgroups) -> dict:
    """What the kernel's cgroups can limit (moby pkg/sysinfo), where orch puts containers."""
    if cgroups.version == "v2":
        root = str(cgroups.root)
        controllers = _read(root + "/cgroup.controllers").split()
        return {"MemoryLimit": "memory" in controllers, "SwapLimit": "memory" in controllers, "KernelMemory": False,
                "KernelMemoryTCP": False, "CpuCfsPeriod": "cpu" in controllers, "CpuCfsQuota": "cpu" in controllers,
                "CPUShares": "cpu" in controllers, "CPUSet": "cpuset" in controllers, "PidsLimit": "pids" in controllers,
                "OomKillDisable": False}
    mem, cpu = str(cgroups.v1.get("memory", "")), str(cgroups.v1.get("cpu", ""))
    return {
        "MemoryLimit": bool(mem) and _exists(mem + "/memory.limit_in_bytes"),
        "SwapLimit": bool(mem) and _exists(mem + "/memory.memsw.limit_in_bytes"),
        "KernelMemory": bool(mem) and _exists(mem + "/memory.kmem.limit_in_bytes"),
        "KernelMemoryTCP": bool(mem) and _exists(mem + "/memory.kmem.tcp.limit_in_bytes"),
        "CpuCfsPeriod": bool(cpu) and _exists(cpu + "/cpu.cfs_period_us"),
        "CpuCfsQuota": bool(cpu) and _exists(cpu + "/cpu.cfs_quota_us"),
        "CPUShares": bool(cpu) and _exists(cpu + "/cpu.shares"),
        "CPUSet": "cpuset" in cgroups.v1,
        "PidsLimit": "pids" in cgroups.v1,
        "OomKillDisable": bool(mem) and _exists(mem + "/memory.oom_control"),
    }


def mem_total() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 0


def compute_info(node, swarm: dict | None) -> dict:
    """docker's SystemInfo of this node (blocking reads of /proc and /sys: run in a thread)."""
    records = list(node.records.values())
    states = [r["State"]["Status"] for r in records]
    images = len(node.images.list()) if node.images is not None else 0
    pretty, version_id = os_release()
    cgroups = node.cgroups()
    info = {
        "ID": engine_id(node.root),
        "Containers": len(states), "ContainersRunning": states.count("running"), "ContainersPaused": states.count("paused"),
        "ContainersStopped": sum(s not in ("running", "paused") for s in states),
        "Images": images,
        "Driver": "overlay",
        "DriverStatus": [["Backing Filesystem", backing_filesystem(node.root)], ["Supports d_type", "true"],
                         ["Native Overlay Diff", "true"], ["userxattr", "false"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": None, "Log": ["json-file"]},
        **cgroup_facts(cgroups),
        "IPv4Forwarding": _read("/proc/sys/net/ipv4/ip_forward") == "1",
        "BridgeNfIptables": _read("/proc/sys/net/bridge/bridge-nf-call-iptables") == "1",
        "BridgeNfIp6tables": _read("/proc/sys/net/bridge/bridge-nf-call-ip6tables") == "1",
        "Debug": False,
        "NFd": len(os.listdir("/proc/self/fd")),
        "SystemTime": _now_rfc3339(),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        # A hybrid host: the limits are in v1 (cgroups.py), as dockerd reports it too.
        "CgroupVersion": "2" if cgroups.version == "v2" else "1",
        "NEventsListener": node.events.listeners(),
        "KernelVersion": platform.release(),
        "OperatingSystem": pretty,
        "OSVersion": version_id,
        "OSType": "linux",
        "Architecture": platform.machine(),
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": [], "AllowNondistributableArtifactsHostnames": [],
                           "InsecureRegistryCIDRs": ["127.0.0.0/8"],
                           "IndexConfigs": {"docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}},
                           "Mirrors": []},
        "NCPU": len(os.sched_getaffinity(0)),
        "MemTotal": mem_total(),
        "DockerRootDir": str(node.root),
        "HttpProxy": os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or "",
        "HttpsProxy": os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or "",
        "NoProxy": os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "",
        "Name": platform.node(),
        "Labels": [],
        "ExperimentalBuild": False,
        "ServerVersion": build_facts()["Version"],
        "Swarm": swarm or dict(SWARM_INACTIVE),
        "LiveRestoreEnabled": True,  # containers outlive the agent (ARCHITECTURE.md, Durability)
        "InitBinary": "docker-init",
        "SecurityOptions": ["name=seccomp,profile=default", "name=no-new-privileges"],
        "Warnings": None,
    }
    return info


def _now_rfc3339() -> str:
    """Go's time.Now().Format(time.RFC3339Nano): local time, trailing zeros of the fraction cut."""
    now = time.time_ns()
    local = time.localtime(now // 1_000_000_000)
    frac = f"{now % 1_000_000_000:09d}".rstrip("0")
    offset = local.tm_gmtoff
    zone = "Z" if offset == 0 else f"{'+' if offset > 0 else '-'}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", local) + (f".{frac}" if frac else "") + zone


def compute_version() -> dict:
    """docker's SystemVersion: one component, the Engine (the agent)."""
    facts = build_facts()
    details = {"ApiVersion": API_VERSION, "Arch": arch(), "BuildTime": facts["BuildTime"], "Experimental": "false",
               "GitCommit": facts["GitCommit"], "GoVersion": facts["GoVersion"], "KernelVersion": platform.release(),
               "MinAPIVersion": MIN_API_VERSION, "Os": "linux"}
    return {
        "Platform": {"Name": "orch"},
        "Components": [{"Name": "Engine", "Version": facts["Version"], "Details": details}],
        "Version": facts["Version"], "ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": facts["GitCommit"],
        "GoVersion": facts["GoVersion"], "Os": "linux", "Arch": arch(), "KernelVersion": platform.release(),
        "BuildTime": facts["BuildTime"],
    }
