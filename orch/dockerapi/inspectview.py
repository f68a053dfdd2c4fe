"""Container views in dockerd's shapes (pure): inspect, and the rows of GET /containers/json.

The agent's record is already docker's inspect for the fields orch keeps (records.py); dockerd
answers with every field of its types, so clients that read one orch does not keep (docker-py,
compose, the CLI's templates) find dockerd's zero value there, not a missing key. The values
are orch's: a knob orch does not apply shows its zero (createbody.py warns at create), never
the value a client asked for. Keys and zero values are those of dockerd 20.10 (API 1.41) on
this machine; tests/unit/dockerapi/test_inspectview.py holds the shapes side by side.
"""

from __future__ import annotations

import copy
import os
import shlex

MASKED_PATHS = ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"]
READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]

HOST_CONFIG = {
    "Binds": None, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}}, "NetworkMode": "default",
    "PortBindings": {}, "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": False, "VolumeDriver": "",
    "VolumesFrom": None, "ConsoleSize": [0, 0], "CapAdd": None, "CapDrop": None, "CgroupnsMode": "private", "Dns": [],
    "DnsOptions": [], "DnsSearch": [], "ExtraHosts": None, "GroupAdd": None, "IpcMode": "private", "Cgroup": "", "Links": None,
    "OomScoreAdj": 0, "PidMode": "", "Privileged": False, "PublishAllPorts": False, "ReadonlyRootfs": False,
    "SecurityOpt": None, "UTSMode": "", "UsernsMode": "", "ShmSize": 64 << 20, "Runtime": "runc", "Isolation": "",
    "CpuShares": 0, "Memory": 0, "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
    "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [], "BlkioDeviceWriteIOps": [],
    "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0, "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "",
    "Devices": [], "DeviceCgroupRules": None, "DeviceRequests": None, "KernelMemory": 0, "KernelMemoryTCP": 0,
    "MemoryReservation": 0, "MemorySwap": 0, "MemorySwappiness": None, "OomKillDisable": False, "PidsLimit": None,
    "Ulimits": [], "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0, "IOMaximumBandwidth": 0,
    "MaskedPaths": MASKED_PATHS, "ReadonlyPaths": READONLY_PATHS,
}
CONFIG = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False, "AttachStderr": False,
    "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None, "Image": "", "Volumes": None,
    "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": {},
}
ENDPOINT = {"IPAMConfig": None, "Links": None, "Aliases": None, "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
            "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "MacAddress": "",
            "DriverOpts": None}
NETWORK_SETTINGS = {
    "Bridge": "", "SandboxID": "", "HairpinMode": False, "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
    "SandboxKey": "", "SecondaryIPAddresses": None, "SecondaryIPv6Addresses": None, "EndpointID": "", "Gateway": "",
    "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
    "Networks": {},
}


def _filled(template: dict, values: dict | None) -> dict:
    """`template`'s keys in its order, then any others of `values`; values win."""
    out = copy.deepcopy(template)
    out.update(values or {})
    return out


def compute_inspect(view: dict, image_config: dict, *, exec_ids=(), console=None, mount_plan=()) -> dict:
    """dockerd's inspect of a container from the agent's `view` (record, NetworkSettings,
    Mounts), its image's config (ExposedPorts, Volumes) and its mount plan (tmpfs mounts,
    which dockerd shows in HostConfig.Tmpfs, not in Mounts)."""
    host = _filled(HOST_CONFIG, view.get("HostConfig"))
    tmpfs = {m["target"]: _tmpfs_options(m) for m in mount_plan if m.get("type") == "tmpfs"}
    if tmpfs:
        host["Tmpfs"] = tmpfs
    if host.get("NetworkMode") == "bridge" and view.get("NetworkSettings", {}).get("Networks", {}).keys() == {"bridge"}:
        host["NetworkMode"] = "default"  # as the docker client asks for it and dockerd shows it
    if console:
        host["ConsoleSize"] = list(console)
    host["Binds"] = _binds(view.get("Mounts") or []) or None
    for key in ("ExtraHosts", "VolumesFrom"):
        if not host.get(key):
            host[key] = None
    log = host.get("LogConfig") or {}
    log_config = {k: v for k, v in (log.get("Config") or {}).items()
                  if not (k == "max-size" and v == str(10 << 20)) and not (k == "max-file" and v == "3")}
    host["LogConfig"] = {"Type": "json-file", "Config": log_config}
    config = _filled(CONFIG, view.get("Config"))
    exposed = dict(image_config.get("ExposedPorts") or {})
    for port in (host.get("PortBindings") or {}):
        exposed.setdefault(port, {})
    if exposed:
        config["ExposedPorts"] = exposed
    volumes = dict(image_config.get("Volumes") or {})
    for m in view.get("Mounts") or []:
        if m.get("Type") == "volume" and len(m.get("Name", "")) == 64:  # an anonymous volume the request made
            volumes.setdefault(m["Destination"], {})
    config["Volumes"] = volumes or None
    config["StdinOnce"] = bool(config.get("StdinOnce"))
    settings = _filled(NETWORK_SETTINGS, view.get("NetworkSettings"))
    settings["Networks"] = {name: _endpoint(ep, view["Id"]) for name, ep in (settings.get("Networks") or {}).items()}
    first = next(iter(settings["Networks"].values()), None)
    if first is not None:
        settings["EndpointID"] = first["EndpointID"]
    settings["SandboxID"] = os.path.basename(settings.get("SandboxKey") or "")
    cdir = os.path.dirname(view.get("LogPath") or "")
    out = {
        "Id": view["Id"], "Created": view["Created"], "Path": view["Path"], "Args": view["Args"], "State": view["State"],
        "Image": view["Image"],
        "ResolvConfPath": os.path.join(cdir, "resolv.conf") if cdir else "",
        "HostnamePath": os.path.join(cdir, "hostname") if cdir else "",
        "HostsPath": os.path.join(cdir, "hosts") if cdir else "",
        "LogPath": view.get("LogPath", ""), "Name": view["Name"], "RestartCount": view.get("RestartCount", 0),
        "Driver": "overlay2", "Platform": "linux", "MountLabel": "", "ProcessLabel": "", "AppArmorProfile": "",
        "ExecIDs": list(exec_ids) or None, "HostConfig": host,
        "GraphDriver": {"Data": None, "Name": "overlay2"},
        "Mounts": view.get("Mounts") or [], "Config": config, "NetworkSettings": settings,
    }
    for key, value in view.items():
        out.setdefault(key, value)
    return out


def _endpoint(ep: dict, cid: str) -> dict:
    """An endpoint in dockerd's shape: Aliases are the ones the container was given (dockerd
    answers to the short id in DNS too, but lists it only from API 1.45, as DNSNames)."""
    out = _filled(ENDPOINT, ep)
    aliases = [a for a in (out.get("Aliases") or []) if a != cid[:12]]
    out["Aliases"] = aliases or None
    return out


def _tmpfs_options(m: dict) -> str:
    """A tmpfs mount's options as `--tmpfs` takes them ("size=64m,ro"); sizes in the largest
    unit that divides them, as people write them."""
    options = []
    size = m.get("tmpfs_size")
    if size:
        for unit, factor in (("g", 1 << 30), ("m", 1 << 20), ("k", 1 << 10)):
            if size % factor == 0:
                options.append(f"size={size // factor}{unit.upper() if unit != 'k' else 'k'}")
                break
        else:
            options.append(f"size={size}")
    if m.get("read_only"):
        options.append("ro")
    return ",".join(options)


def _binds(mounts: list[dict]) -> list[str]:
    """HostConfig.Binds as docker shows them for -v: SOURCE:TARGET[:ro]."""
    out = []
    for m in mounts:
        if m.get("Type") == "bind":
            out.append(f"{m['Source']}:{m['Destination']}" + ("" if m.get("RW", True) else ":ro"))
        elif m.get("Type") == "volume" and len(m.get("Name", "")) != 64:
            out.append(f"{m['Name']}:{m['Destination']}" + ("" if m.get("RW", True) else ":ro"))
    return out


def compute_ports(settings: dict | None) -> list[dict]:
    """GET /containers/json's Ports: one entry per published binding, and the exposed ports
    without one (PrivatePort and Type only)."""
    out = []
    for key, bindings in ((settings or {}).get("Ports") or {}).items():
        port, _, proto = key.partition("/")
        if not bindings:
            out.append({"PrivatePort": int(port), "Type": proto or "tcp"})
            continue
        for b in bindings:
            out.append({"IP": b.get("HostIp") or "0.0.0.0", "PrivatePort": int(port), "PublicPort": int(b.get("HostPort") or 0),
                        "Type": proto or "tcp"})
    return out


def compute_list_row(summary: dict, settings: dict | None, mounts: list, rec: dict) -> dict:
    """One row of GET /containers/json."""
    networks = {name: _endpoint(ep, summary["Id"]) for name, ep in ((settings or {}).get("Networks") or {}).items()}
    mode = (rec.get("HostConfig") or {}).get("NetworkMode") or "default"
    if mode == "bridge" and networks.keys() == {"bridge"}:
        mode = "default"
    return {
        "Id": summary["Id"], "Names": summary["Names"], "Image": summary["Image"], "ImageID": summary["ImageID"],
        "Command": shlex.join([rec.get("Path", ""), *rec.get("Args", [])]) if rec.get("Path") else summary["Command"],
        "Created": summary["Created"], "Ports": compute_ports(settings),
        "Labels": summary["Labels"], "State": summary["State"], "Status": summary["Status"],
        "HostConfig": {"NetworkMode": mode}, "NetworkSettings": {"Networks": networks},
        "Mounts": [{k: v for k, v in m.items()} for m in mounts],
    }
