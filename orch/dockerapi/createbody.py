"""docker's container create body (Config, HostConfig, NetworkingConfig) as orch's create
request (orch.api.models.CreateRequest's fields), and the warnings to answer with (pure).

The rule for what orch does not do, field by field:
- a value equal to docker's default (zero, empty, null) is no request at all: accepted;
- a knob that only tunes scheduling or accounting (CPU shares, block I/O weights, OOM score,
  memory reservation, cpusets, /dev/shm size, swappiness, the cgroup parent) is accepted with a
  warning in the create answer, which the docker CLI prints as `WARNING: ...`: the container
  runs as asked in every other respect, and nothing pretends the knob took effect (inspect shows
  orch's values, not the request's);
- anything that would change what the program can do or see (devices, GPUs, groups, another
  runtime, storage options, unmasked /proc paths, a log driver other than json-file) is refused
  in one line (400), as the orch CLI refuses the same flag.

Shapes follow the docker CLI 28's requests and docker-py's, checked against dockerd 20.10's
answers on this machine (tests/unit/dockerapi/test_createbody.py).
"""

from __future__ import annotations

from orch.api.netflags import parse_tmpfs, parse_volume
from orch.errors import InvalidArgument

NS = 1_000_000_000
DEFAULT_SHM = 64 << 20

# HostConfig knobs accepted with a warning when set (see the module's rule).
TUNING = ("CpuShares", "CpuPeriod", "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "BlkioWeight",
          "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps",
          "MemoryReservation", "KernelMemory", "KernelMemoryTCP", "OomScoreAdj", "OomKillDisable", "CpuCount",
          "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth", "CgroupParent", "DnsOptions")
# Refused when set: what orch does not do, and why, in the words a user can act on.
REFUSED = {
    "Devices": "a device needs a devices cgroup rule and a node in the container's /dev, which orch does not make; "
               "bind-mount what the program needs from a directory instead",
    "DeviceRequests": "orch gives containers no GPUs or other device requests",
    "DeviceCgroupRules": "orch keeps docker's default device allow-list",
    "GroupAdd": "orch runs the program with the groups of its user only",
    "StorageOpt": "orch's overlay store takes no per-container storage options",
    "Links": "legacy links are not supported; put the containers on one user-defined network and use their names",
    "MaskedPaths": "orch masks docker's default /proc paths (security-opt systempaths=unconfined is not supported)",
    "ReadonlyPaths": "orch keeps docker's default read-only /proc paths (security-opt systempaths=unconfined is not supported)",
    "UTSMode": "a container has its own hostname (UTS namespace); --uts host is not supported",
}


CONFIG_KEYS = ("Hostname", "Domainname", "User", "AttachStdin", "AttachStdout", "AttachStderr", "ExposedPorts", "Tty", "OpenStdin",
               "StdinOnce", "Env", "Cmd", "Healthcheck", "ArgsEscaped", "Image", "Volumes", "WorkingDir", "Entrypoint",
               "NetworkDisabled", "MacAddress", "OnBuild", "Labels", "StopSignal", "StopTimeout", "Shell", "HostConfig",
               "NetworkingConfig")
HOST_KEYS = ("Binds", "ContainerIDFile", "LogConfig", "NetworkMode", "PortBindings", "RestartPolicy", "AutoRemove", "VolumeDriver",
             "VolumesFrom", "ConsoleSize", "Annotations", "CapAdd", "CapDrop", "CgroupnsMode", "Dns", "DnsOptions", "DnsSearch",
             "ExtraHosts", "GroupAdd", "IpcMode", "Cgroup", "Links", "OomScoreAdj", "PidMode", "Privileged", "PublishAllPorts",
             "ReadonlyRootfs", "SecurityOpt", "StorageOpt", "Tmpfs", "UTSMode", "UsernsMode", "ShmSize", "Sysctls", "Runtime",
             "Isolation", "CpuShares", "Memory", "NanoCpus", "CgroupParent", "BlkioWeight", "BlkioWeightDevice",
             "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps", "BlkioDeviceWriteIOps", "CpuPeriod", "CpuQuota",
             "CpuRealtimePeriod", "CpuRealtimeRuntime", "CpusetCpus", "CpusetMems", "Devices", "DeviceCgroupRules",
             "DeviceRequests", "KernelMemory", "KernelMemoryTCP", "MemoryReservation", "MemorySwap", "MemorySwappiness",
             "OomKillDisable", "PidsLimit", "Ulimits", "CpuCount", "CpuPercent", "IOMaximumIOps", "IOMaximumBandwidth", "Mounts",
             "MaskedPaths", "ReadonlyPaths", "Init")


def _canonical(body: dict, keys) -> dict:
    """Keys spelled as docker's types spell them: Go's JSON decoder (dockerd's) matches field
    names case-insensitively, and clients rely on it."""
    spelled = {k.lower(): k for k in keys}
    return {spelled.get(str(k).lower(), k): v for k, v in body.items()}


def compute_create_request(body: dict, name: str | None = None) -> tuple[dict, list[str]]:
    """(CreateRequest's fields, warnings) for docker's create `body` and `?name=`."""
    if not isinstance(body, dict):
        raise InvalidArgument("POST /containers/create: the body must be a JSON object with the container's Config")
    body = _canonical(body, CONFIG_KEYS)
    if isinstance(body.get("HostConfig"), dict):
        body["HostConfig"] = _canonical(body["HostConfig"], HOST_KEYS)
    host = body.get("HostConfig") or {}
    netcfg = (body.get("NetworkingConfig") or {}).get("EndpointsConfig") or {}
    if not isinstance(host, dict) or not isinstance(netcfg, dict):
        raise InvalidArgument("POST /containers/create: HostConfig and NetworkingConfig.EndpointsConfig must be JSON objects")
    image = body.get("Image")
    if not image:
        raise InvalidArgument("Config.Image is empty: give the image to create the container from")
    warnings: list[str] = []
    req: dict = {"image": image}
    if name:
        req["name"] = name
    _config(body, req, warnings)
    _host(host, req, warnings)
    _networks(body, host, netcfg, req)
    _mounts(body, host, req)
    return req, warnings


def _strings(value, what: str) -> list[str] | None:
    """docker's StrSlice: a list of strings, or one string."""
    if value is None:
        return None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise InvalidArgument(f"{what} must be a list of strings")


def _config(body: dict, req: dict, warnings: list[str]) -> None:
    cmd = _strings(body.get("Cmd"), "Config.Cmd")
    if cmd:
        req["cmd"] = cmd
    entrypoint = _strings(body.get("Entrypoint"), "Config.Entrypoint")
    if entrypoint is not None:
        # The CLI's --entrypoint "" is [""]: no entrypoint at all (the image's is dropped).
        req["entrypoint"] = [] if entrypoint == [""] else entrypoint
    for key, field in (("Hostname", "hostname"), ("User", "user"), ("WorkingDir", "workdir"), ("StopSignal", "stop_signal")):
        if body.get(key):
            req[field] = body[key]
    if body.get("Domainname"):
        warnings.append(f"orch does not set a domain name (Domainname {body['Domainname']!r} is ignored)")
    req["env"] = list(_strings(body.get("Env"), "Config.Env") or [])
    req["tty"] = bool(body.get("Tty"))
    req["open_stdin"] = bool(body.get("OpenStdin"))
    if body.get("Labels"):
        req["labels"] = {str(k): str(v) for k, v in body["Labels"].items()}
    if body.get("StopTimeout") is not None:
        req["stop_timeout"] = body["StopTimeout"]
    if body.get("NetworkDisabled"):
        req["network"] = "none"
    if body.get("MacAddress"):
        raise InvalidArgument("Config.MacAddress: orch gives each endpoint its own address and cannot set a MAC address")
    check = body.get("Healthcheck")
    if check:
        req["healthcheck"] = _healthcheck(check)


def _healthcheck(check: dict) -> dict | None:
    test = _strings(check.get("Test"), "Config.Healthcheck.Test") or []
    if not test:
        return None  # the image's check, as docker's empty Test means
    out: dict = {"test": test}
    for key, field in (("Interval", "interval"), ("Timeout", "timeout"), ("StartPeriod", "start_period"),
                       ("StartInterval", "start_interval")):
        if check.get(key):
            out[field] = check[key] / NS
    if check.get("Retries"):
        out["retries"] = check["Retries"]
    return out


def _host(host: dict, req: dict, warnings: list[str]) -> None:
    for key, why in REFUSED.items():
        # [] is a request too for the /proc paths (the CLI's systempaths=unconfined): only
        # null (docker's defaults) is none.
        if host.get(key) or (key in ("MaskedPaths", "ReadonlyPaths") and host.get(key) is not None):
            raise InvalidArgument(f"HostConfig.{key}: {why}")
    for key in TUNING:
        value = host.get(key)
        if value and not (key == "CgroupParent" and value == "") and not (key == "OomKillDisable" and value is False):
            warnings.append(f"orch does not apply HostConfig.{key} ({value!r}); the container runs without it")
    if host.get("ShmSize") not in (None, 0, DEFAULT_SHM):
        warnings.append(f"orch's /dev/shm is docker's default size (64 MiB); HostConfig.ShmSize {host['ShmSize']} is not applied")
    if host.get("MemorySwappiness") not in (None, -1):
        warnings.append("orch does not apply HostConfig.MemorySwappiness; the kernel's default holds")
    if host.get("Runtime") not in (None, "", "runc"):
        raise InvalidArgument(f"HostConfig.Runtime {host['Runtime']!r}: orch runs containers itself (docker's runc defaults)")
    if host.get("VolumeDriver") not in (None, "", "local"):
        raise InvalidArgument(f"HostConfig.VolumeDriver {host['VolumeDriver']!r}: orch has the local volume driver only")
    if host.get("Isolation") not in (None, "", "default"):
        raise InvalidArgument(f"HostConfig.Isolation {host['Isolation']!r}: Linux containers have no isolation modes")
    if host.get("CgroupnsMode") == "host":
        warnings.append("orch gives every container a private cgroup namespace; CgroupnsMode \"host\" is not applied")
    for key, field in (("Memory", "memory"), ("NanoCpus", "nano_cpus")):
        if host.get(key):
            req[field] = host[key]
    if host.get("MemorySwap"):
        req["memory_swap"] = host["MemorySwap"]
    if host.get("CpuQuota") and not host.get("NanoCpus"):
        period = host.get("CpuPeriod") or 100_000
        req["nano_cpus"] = int(host["CpuQuota"] * NS / period)
        warnings[:] = [w for w in warnings if "CpuPeriod" not in w]
    if host.get("PidsLimit") and host["PidsLimit"] > 0:  # 0 and -1: unlimited
        req["pids_limit"] = host["PidsLimit"]
    for key, field in (("AutoRemove", "auto_remove"), ("Init", "init"), ("PublishAllPorts", "publish_all"),
                       ("ReadonlyRootfs", "read_only"), ("Privileged", "privileged")):
        if host.get(key):
            req[field] = True
    for key, field in (("PidMode", "pid_mode"), ("IpcMode", "ipc_mode"), ("UsernsMode", "userns_mode")):
        if host.get(key):
            req[field] = host[key]
    for key, field in (("CapAdd", "cap_add"), ("CapDrop", "cap_drop"), ("Dns", "dns"), ("DnsSearch", "dns_search"),
                       ("ExtraHosts", "extra_hosts"), ("SecurityOpt", "security_opt"), ("VolumesFrom", "volumes_from")):
        values = _strings(host.get(key), f"HostConfig.{key}")
        if values:
            req[field] = values
    if host.get("Sysctls"):
        req["sysctls"] = {str(k): str(v) for k, v in host["Sysctls"].items()}
    if host.get("Ulimits"):
        req["ulimits"] = [{"name": u.get("Name"), "soft": u.get("Soft"), "hard": u.get("Hard")} for u in host["Ulimits"]]
    policy = host.get("RestartPolicy") or {}
    if policy.get("Name"):
        req["restart_policy"] = {"name": policy["Name"], "maximum_retry_count": policy.get("MaximumRetryCount") or 0}
    _log_config(host.get("LogConfig") or {}, req, warnings)


def _log_config(log: dict, req: dict, warnings: list[str]) -> None:
    from orch.api.runflags import parse_bytes

    kind = log.get("Type")
    if kind in ("none", "local"):
        # Both keep (or drop) what `docker logs` reads; orch keeps it in json-file, which
        # changes nothing the program sees.
        warnings.append(f"orch logs in docker's json-file format; log driver {kind!r} is not applied")
        return
    if kind not in (None, "", "json-file"):
        # dockerd's words first (clients match them), then what orch has.
        raise InvalidArgument(f"logger: no log driver named '{kind}' is registered; orch logs in docker's json-file format only")
    for key, value in (log.get("Config") or {}).items():
        if key == "max-size":
            req["log_max_size"] = parse_bytes(value, "log-opt max-size")
        elif key == "max-file":
            if not str(value).isdigit() or int(value) < 1:
                raise InvalidArgument(f"invalid log-opt max-file={value!r}: give a whole number of files, 1 or more")
            req["log_max_file"] = int(value)
        else:
            raise InvalidArgument(f"unknown log option {key!r}; json-file takes max-size and max-file")


def check_endpoint(where: str, endpoint: dict) -> None:
    """Refuse what an endpoint's settings ask that orch does not do (a create's
    EndpointsConfig, a connect's EndpointConfig): orch gives an endpoint one IPv4 address, its
    own MAC address, and no legacy links; dropping these would give the program less than it
    asked for without a word."""
    if endpoint.get("Links"):
        raise InvalidArgument(f"{where}.Links: {REFUSED['Links']}")
    if endpoint.get("MacAddress"):
        raise InvalidArgument(f"{where}.MacAddress: orch cannot set a MAC address")
    ipam = endpoint.get("IPAMConfig") or {}
    if ipam.get("IPv6Address"):
        raise InvalidArgument(f"{where}.IPAMConfig.IPv6Address: orch's networks are IPv4 only; leave it out")
    if ipam.get("LinkLocalIPs"):
        raise InvalidArgument(f"{where}.IPAMConfig.LinkLocalIPs: orch gives an endpoint one IPv4 address and no "
                              "link-local ones; leave them out")


def _networks(body: dict, host: dict, endpoints: dict, req: dict) -> None:
    mode = host.get("NetworkMode") or ""
    if mode and mode != "default" and "network" not in req:
        req["network"] = mode
    networks = []
    for name, endpoint in endpoints.items():
        endpoint = endpoint or {}
        check_endpoint(f"NetworkingConfig.EndpointsConfig.{name}", endpoint)
        ipv4 = (endpoint.get("IPAMConfig") or {}).get("IPv4Address") or None
        aliases = list(endpoint.get("Aliases") or [])
        target = req.get("network") if name == "default" else name
        if target in (None, "none", "host") or str(target).startswith("container:"):
            if aliases or ipv4:
                raise InvalidArgument(f"network {name!r}: aliases and addresses need a network of the container's own")
            continue
        networks.append({"name": target, "aliases": aliases, "ipv4_address": ipv4})
    if networks and any(n["aliases"] or n["ipv4_address"] or n["name"] != req.get("network") for n in networks):
        req["networks"] = networks
    ports = []
    for key, bindings in (host.get("PortBindings") or {}).items():
        port, _, proto = str(key).partition("/")
        for binding in bindings or [{}]:
            binding = binding or {}
            ports.append({"host_ip": binding.get("HostIp") or "", "host_port": binding.get("HostPort") or "",
                          "container_port": port, "protocol": proto or "tcp"})
    if ports:
        req["ports"] = ports


def _mounts(body: dict, host: dict, req: dict) -> None:
    mounts = [parse_volume(spec) for spec in _strings(host.get("Binds"), "HostConfig.Binds") or []]
    for m in host.get("Mounts") or []:
        kind = (m.get("Type") or "volume").lower()
        if kind not in ("bind", "volume", "tmpfs"):
            raise InvalidArgument(f"HostConfig.Mounts: type {kind!r} is not supported; use bind, volume or tmpfs")
        if not m.get("Target"):
            raise InvalidArgument("HostConfig.Mounts: a mount has no Target; give the path in the container")
        if (m.get("VolumeOptions") or {}).get("Subpath") or (m.get("BindOptions") or {}).get("Subpath"):
            raise InvalidArgument(f"HostConfig.Mounts {m['Target']}: a subpath of a volume is not supported by orch; mount the volume whole")
        propagation = (m.get("BindOptions") or {}).get("Propagation")
        if propagation not in (None, "", "rprivate", "private"):
            raise InvalidArgument(f"HostConfig.Mounts {m['Target']}: bind propagation {propagation!r} is not supported; orch's binds are private")
        if (m.get("VolumeOptions") or {}).get("DriverConfig", {}) and (m["VolumeOptions"]["DriverConfig"].get("Name") or "local") != "local":
            raise InvalidArgument(f"HostConfig.Mounts {m['Target']}: orch has the local volume driver only")
        entry = {"type": kind, "source": m.get("Source") or "", "target": m["Target"], "read_only": bool(m.get("ReadOnly"))}
        if (m.get("VolumeOptions") or {}).get("NoCopy"):
            entry["nocopy"] = True
        size = (m.get("TmpfsOptions") or {}).get("SizeBytes")
        if size:
            entry["tmpfs_size"] = size
        mounts.append(entry)
    for target, options in (host.get("Tmpfs") or {}).items():
        mounts.append(parse_tmpfs(f"{target}:{options}" if options else target))
    taken = {m["target"].rstrip("/") or "/" for m in mounts}
    for target in body.get("Volumes") or {}:
        # Config.Volumes: anonymous volumes, unless a bind or mount already serves the path.
        if (target.rstrip("/") or "/") not in taken:
            mounts.append({"type": "volume", "source": "", "target": target})
    if mounts:
        req["mounts"] = mounts
