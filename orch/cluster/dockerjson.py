"""The cluster's records as the Docker Engine API's swarm JSON, and back: nodes, services
(ServiceSpec, TaskSpec, ContainerSpec) and tasks. The swarm itself and orch's stack deploy body
are in dockerswarm.py; Go's units and the strict reader in jsonread.py.

moby's api/swagger.yaml (and the Go types under api/types/swarm, whose `omitempty` tags decide
what an answer leaves out) is the reference for names, nesting and units:

- an object's `Version.Index` is the record's etcd mod revision, passed beside the record;
- `Mode` is `{"Replicated": {"Replicas": N}}` or `{"Global": {}}`; a replicated service sent
  without `Replicas` has one (the daemon's default);
- CPUs are nano-CPUs, memory bytes, a tmpfs or secret mode an integer (decimal of the octal),
  durations nanoseconds, times RFC 3339.

What orch reads is strict, as docker's daemon is not: a field orch does not know, or knows but
cannot honour, is refused with one line that names its path
(`ServiceSpec.TaskTemplate.ContainerSpec.Groups: orch does not support ...`), never silently
dropped. The exception is what docker's CLI always sends with a zero value (`Init: false`,
`DNSConfig: {}`, `ForceUpdate: 0`): a zero value of a field orch does not support is accepted
and means nothing, as it does in docker.

orch's own extensions, which docker's JSON cannot say: a ServiceSpec's `DependsOn`
(`{"web": {"Condition": "service_healthy", "Required": true}}`, which orch honours across the
cluster and swarm ignores) and a TaskStatus's `Health`.

Pure: no I/O. Records are built through their own validation, so a value that passes here is
one the store accepts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orch.cluster import records as r
from orch.cluster.jsonread import (
    Reader,
    build,
    drop_empty,
    format_time,
    is_zero,
    meta_json,
    parse_time,
    read_meta,
    to_ns,
)
from orch.errors import InvalidArgument

# ---------------------------------------------------------------------------------------------
# Shared parts


def _platform_json(p: r.Platform) -> dict:
    return drop_empty({"Architecture": p.architecture, "OS": p.os})


def _platform(reader: Reader) -> r.Platform:
    p = r.Platform(architecture=reader.str("Architecture"), os=reader.str("OS"))
    reader.done()
    return p


def _driver_json(d: r.Driver) -> dict:
    return drop_empty({"Name": d.name, "Options": dict(d.options)})


def _driver(reader: Reader) -> r.Driver:
    d = r.Driver(name=reader.str("Name"), options=reader.labels("Options"))
    reader.done()
    return d


# ---------------------------------------------------------------------------------------------
# Nodes


def node_spec_to_json(spec: r.NodeSpec) -> dict:
    out = {"Labels": dict(spec.labels), "Role": spec.role, "Availability": spec.availability}
    if spec.name:
        out = {"Name": spec.name, **out}
    return out


def node_spec_from_json(data: Any, path: str = "NodeSpec") -> r.NodeSpec:
    """A NodeSpec as `POST /nodes/{id}/update` takes it: the whole spec, Role and Availability
    included (docker's daemon refuses an empty role too)."""
    reader = Reader(data, path)
    if not reader.has("Role"):
        raise InvalidArgument(f"{path}.Role: required (worker or manager)")
    if not reader.has("Availability"):
        raise InvalidArgument(f"{path}.Availability: required (active, pause or drain)")
    spec = r.NodeSpec(
        name=reader.str("Name"),
        labels=reader.labels("Labels"),
        role=reader.choice("Role", ("worker", "manager"), "worker"),
        availability=reader.choice("Availability", ("active", "pause", "drain"), "active"),
    )
    reader.done()
    return spec


def node_to_json(node: r.Node, index: int) -> dict:
    d = node.description
    description = drop_empty({"Hostname": d.hostname}) | {
        "Platform": _platform_json(d.platform),
        "Resources": drop_empty({"NanoCPUs": d.resources.nano_cpus, "MemoryBytes": d.resources.memory_bytes}),
        "Engine": drop_empty({"EngineVersion": d.engine_version, "Labels": dict(d.engine_labels)}),
        "TLSInfo": {},
    }
    out = {
        **meta_json(node, index),
        "Spec": node_spec_to_json(node.spec),
        "Description": description,
        "Status": drop_empty({"State": node.status.state, "Message": node.status.message, "Addr": node.status.addr}),
    }
    if node.manager_status is not None:
        m = node.manager_status
        out["ManagerStatus"] = drop_empty({"Leader": m.leader, "Reachability": m.reachability, "Addr": m.addr})
    return out


def node_from_json(data: Any, path: str = "Node") -> r.Node:
    reader = Reader(data, path)
    meta = read_meta(reader)
    spec = node_spec_from_json(reader.raw("Spec"), reader.at("Spec")) if reader.has("Spec") else r.NodeSpec()
    description = r.NodeDescription()
    if (d := reader.obj("Description")) is not None:
        resources = r.Resources()
        if (res := d.obj("Resources")) is not None:
            res.unsupported("GenericResources")
            resources = r.Resources(nano_cpus=res.int("NanoCPUs"), memory_bytes=res.int("MemoryBytes"))
            res.done()
        engine_version, engine_labels = "", {}
        if (eng := d.obj("Engine")) is not None:
            engine_version, engine_labels = eng.str("EngineVersion"), eng.labels("Labels")
            eng.unsupported("Plugins")
            eng.done()
        platform = _platform(d.obj("Platform")) if d.has("Platform") else r.NodeDescription().platform
        d.unsupported("TLSInfo", "CSIInfo")
        description = r.NodeDescription(hostname=d.str("Hostname"), platform=platform, resources=resources,
                                        engine_version=engine_version, engine_labels=engine_labels)
        d.done()
    status = r.NodeStatus()
    if (s := reader.obj("Status")) is not None:
        status = build(s.path, lambda: r.NodeStatus(state=s.str("State", "unknown"), message=s.str("Message"), addr=s.str("Addr")))
        s.done()
    manager = None
    if (m := reader.obj("ManagerStatus")) is not None:
        manager = build(m.path, lambda: r.ManagerStatus(leader=m.bool("Leader"), reachability=m.str("Reachability", "unknown"),
                                                         addr=m.str("Addr")))
        m.done()
    reader.done()
    return build(path, lambda: r.Node(**meta, spec=spec, description=description, status=status, manager_status=manager))


# ---------------------------------------------------------------------------------------------
# What a task runs: TaskSpec and ContainerSpec


def _health_json(h: r.HealthConfig) -> dict:
    out: dict = {"Test": list(h.test)} if h.test else {}
    for key, value in (("Interval", h.interval), ("Timeout", h.timeout), ("StartPeriod", h.start_period),
                       ("StartInterval", h.start_interval)):
        if value:
            out[key] = to_ns(value)
    if h.retries:
        out["Retries"] = h.retries
    return out


def _health(reader: Reader) -> r.HealthConfig:
    # 0 means "inherit from the image" (docker), which the record says with None.
    def nonzero(key):
        value = reader.duration(key)
        return value or None

    h = r.HealthConfig(test=reader.strings("Test"), interval=nonzero("Interval"), timeout=nonzero("Timeout"),
                       retries=reader.int("Retries", None, minimum=0) or None, start_period=nonzero("StartPeriod"),
                       start_interval=nonzero("StartInterval"))
    reader.done()
    return h


def _mount_json(m: r.Mount) -> dict:
    out = drop_empty({"Type": m.type, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only})
    # Go leaves out a nil options pointer and writes an empty one as {}.
    if m.volume_options is not None:
        v = m.volume_options
        opts = drop_empty({"NoCopy": v.no_copy, "Labels": dict(v.labels)})
        if v.driver_config is not None:
            opts["DriverConfig"] = _driver_json(v.driver_config)
        out["VolumeOptions"] = opts
    if m.tmpfs_options is not None:
        out["TmpfsOptions"] = drop_empty({"SizeBytes": m.tmpfs_options.size_bytes, "Mode": m.tmpfs_options.mode})
    return out


def _mount(reader: Reader) -> r.Mount:
    kind = reader.str("Type", "volume") or "volume"
    if kind not in ("volume", "bind", "tmpfs"):
        raise InvalidArgument(f"{reader.at('Type')}: mounts of type {kind} are not supported; use volume, bind or tmpfs")
    consistency = reader.str("Consistency")
    if consistency not in ("", "default"):
        raise InvalidArgument(f"{reader.at('Consistency')}: orch does not support consistency {consistency!r} (it has a "
                              f"meaning on Docker Desktop only); remove it")
    reader.unsupported("BindOptions", "ImageOptions", "ClusterOptions")
    volume_options = None
    if (v := reader.obj("VolumeOptions")) is not None:
        if kind != "volume":
            raise InvalidArgument(f"{v.path}: only a volume mount takes VolumeOptions")
        driver = _driver(v.obj("DriverConfig")) if v.has("DriverConfig") else None
        if driver is not None and not driver.name and not driver.options:
            driver = None  # docker's CLI sends DriverConfig: {} for a plain volume
        v.unsupported("Subpath")
        volume_options = r.VolumeOptions(no_copy=v.bool("NoCopy"), labels=v.labels("Labels"), driver_config=driver)
        v.done()
    tmpfs_options = None
    if (t := reader.obj("TmpfsOptions")) is not None:
        if kind != "tmpfs":
            raise InvalidArgument(f"{t.path}: only a tmpfs mount takes TmpfsOptions")
        t.unsupported("Options")
        tmpfs_options = r.TmpfsOptions(size_bytes=t.int("SizeBytes", None, minimum=0), mode=t.int("Mode", None, minimum=0))
        t.done()
    source = reader.str("Source")
    if kind == "tmpfs" and source:
        raise InvalidArgument(f"{reader.at('Source')}: a tmpfs mount has no source")
    target = reader.str("Target")
    if not target:
        raise InvalidArgument(f"{reader.at('Target')}: required (the path in the container)")
    mount = r.Mount(type=kind, source=source, target=target, read_only=reader.bool("ReadOnly"),
                    volume_options=volume_options, tmpfs_options=tmpfs_options)
    reader.done()
    return mount


def _file_json(f: r.FileTarget) -> dict:
    return {"Name": f.name, "UID": f.uid, "GID": f.gid, "Mode": f.mode}


def _file(reader: Reader | None, where: str) -> r.FileTarget:
    if reader is None:
        raise InvalidArgument(f"{where}.File: required (where the file appears in the container)")
    name = reader.str("Name")
    if not name:
        raise InvalidArgument(f"{reader.at('Name')}: required (the file's name or path in the container)")
    f = r.FileTarget(name=name, uid=reader.str("UID", "0") or "0", gid=reader.str("GID", "0") or "0",
                     mode=reader.int("Mode", 0o444, minimum=0))
    reader.done()
    return f


def _secret_ref(reader: Reader) -> r.SecretReference:
    name = reader.str("SecretName")
    if not name:
        raise InvalidArgument(f"{reader.at('SecretName')}: required (the secret's name)")
    ref = r.SecretReference(secret_id=reader.str("SecretID"), secret_name=name, file=_file(reader.obj("File"), reader.path))
    reader.done()
    return ref


def _config_ref(reader: Reader) -> r.ConfigReference:
    name = reader.str("ConfigName")
    if not name:
        raise InvalidArgument(f"{reader.at('ConfigName')}: required (the config's name)")
    reader.unsupported("Runtime", why=" (a config the runtime reads, for Windows credential specs)")
    ref = r.ConfigReference(config_id=reader.str("ConfigID"), config_name=name, file=_file(reader.obj("File"), reader.path))
    reader.done()
    return ref


def container_spec_to_json(c: r.ContainerSpec) -> dict:
    out: dict = {"Image": c.image}
    out.update(drop_empty({"Labels": dict(c.labels)}))
    if c.command is not None:
        out["Command"] = list(c.command)
    if c.args is not None:
        out["Args"] = list(c.args)
    out.update(drop_empty({"Hostname": c.hostname, "Env": list(c.env), "Dir": c.dir, "User": c.user}))
    if c.init is not None:
        out["Init"] = c.init
    out.update(drop_empty({"StopSignal": c.stop_signal, "TTY": c.tty, "OpenStdin": c.open_stdin, "ReadOnly": c.read_only,
                            "Mounts": [_mount_json(m) for m in c.mounts]}))
    if c.stop_grace_period is not None:
        out["StopGracePeriod"] = to_ns(c.stop_grace_period)
    if c.healthcheck is not None:
        out["Healthcheck"] = _health_json(c.healthcheck)
    out.update(drop_empty({"Hosts": list(c.hosts)}))
    if c.dns_config is not None:
        out["DNSConfig"] = drop_empty({"Nameservers": list(c.dns_config.nameservers), "Search": list(c.dns_config.search),
                                        "Options": list(c.dns_config.options)})
    out.update(drop_empty({
        "Secrets": [{"File": _file_json(s.file), **drop_empty({"SecretID": s.secret_id}), "SecretName": s.secret_name}
                    for s in c.secrets],
        "Configs": [{"File": _file_json(s.file), **drop_empty({"ConfigID": s.config_id}), "ConfigName": s.config_name}
                    for s in c.configs],
        "Sysctls": dict(c.sysctls),
        "CapabilityAdd": list(c.cap_add),
        "CapabilityDrop": list(c.cap_drop),
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in c.ulimits],
    }))
    return out


def container_spec_from_json(data: Any, path: str = "ContainerSpec") -> r.ContainerSpec:
    reader = Reader(data, path)
    image = reader.str("Image")
    if not image:
        raise InvalidArgument(f"{reader.at('Image')}: required (the image the service runs)")
    reader.unsupported("Groups", why=" (supplementary groups)")
    reader.unsupported("Privileges", why=" (credential specs, SELinux, seccomp and AppArmor options)")
    reader.unsupported("OomScoreAdj")
    isolation = reader.str("Isolation")
    if isolation not in ("", "default"):
        raise InvalidArgument(f"{reader.at('Isolation')}: isolation {isolation!r} is Windows-only; remove it")
    health = _health(reader.obj("Healthcheck")) if reader.has("Healthcheck") else None
    dns = None
    if (d := reader.obj("DNSConfig")) is not None:
        dns = r.DNSConfig(nameservers=d.strings("Nameservers"), search=d.strings("Search"), options=d.strings("Options"))
        d.done()
        if not (dns.nameservers or dns.search or dns.options):
            dns = None  # docker's CLI sends DNSConfig: {} when no --dns flag is given
    ulimits = []
    for u in reader.objs("Ulimits"):
        name = u.str("Name")
        if not name:
            raise InvalidArgument(f"{u.at('Name')}: required (nofile, nproc, ...)")
        ulimits.append(r.Ulimit(name=name, soft=u.int("Soft"), hard=u.int("Hard")))
        u.done()
    command = reader.strings("Command") if reader.has("Command") else reader.raw("Command")
    args = reader.strings("Args") if reader.has("Args") else reader.raw("Args")
    spec = build(path, lambda: r.ContainerSpec(
        image=image,
        labels=reader.labels("Labels"),
        command=command,
        args=args,
        hostname=reader.str("Hostname"),
        env=reader.strings("Env"),
        dir=reader.str("Dir"),
        user=reader.str("User"),
        tty=reader.bool("TTY"),
        open_stdin=reader.bool("OpenStdin"),
        read_only=reader.bool("ReadOnly"),
        init=reader.bool("Init", None),
        mounts=[_mount(m) for m in reader.objs("Mounts")],
        stop_signal=reader.str("StopSignal"),
        stop_grace_period=reader.duration("StopGracePeriod"),
        healthcheck=health,
        hosts=reader.strings("Hosts"),
        dns_config=dns,
        secrets=[_secret_ref(s) for s in reader.objs("Secrets")],
        configs=[_config_ref(c) for c in reader.objs("Configs")],
        cap_add=reader.strings("CapabilityAdd"),
        cap_drop=reader.strings("CapabilityDrop"),
        sysctls=reader.labels("Sysctls"),
        ulimits=ulimits,
    ))
    reader.done()
    return spec


def task_spec_to_json(t: r.TaskSpec) -> dict:
    limits = drop_empty({"NanoCPUs": t.resources.limits.nano_cpus, "MemoryBytes": t.resources.limits.memory_bytes,
                          "Pids": t.resources.limits.pids})
    reservations = drop_empty({"NanoCPUs": t.resources.reservations.nano_cpus,
                                "MemoryBytes": t.resources.reservations.memory_bytes})
    rp = t.restart_policy
    placement: dict = drop_empty({"Constraints": list(t.placement.constraints),
                                   "Preferences": [{"Spread": {"SpreadDescriptor": p.spread}} for p in t.placement.preferences],
                                   "MaxReplicas": t.placement.max_replicas,
                                   "Platforms": [_platform_json(p) for p in t.placement.platforms]})
    out = {
        "ContainerSpec": container_spec_to_json(t.container_spec),
        "Resources": {"Limits": limits, "Reservations": reservations},
        "RestartPolicy": {"Condition": rp.condition, "Delay": to_ns(rp.delay), "MaxAttempts": rp.max_attempts,
                          "Window": to_ns(rp.window)},
        "Placement": placement,
    }
    if t.networks:
        out["Networks"] = [drop_empty({"Target": n.target, "Aliases": list(n.aliases)}) for n in t.networks]
    if t.log_driver is not None:
        out["LogDriver"] = _driver_json(t.log_driver)
    out["ForceUpdate"] = t.force_update
    return out


def task_spec_from_json(data: Any, path: str = "TaskSpec") -> r.TaskSpec:
    reader = Reader(data, path)
    for key in ("PluginSpec", "NetworkAttachmentSpec"):
        if not is_zero(reader.raw(key)):
            raise InvalidArgument(f"{reader.at(key)}: orch runs containers only; give a ContainerSpec")
    runtime = reader.str("Runtime")
    if runtime not in ("", "container"):
        raise InvalidArgument(f"{reader.at('Runtime')}: orch runs containers only, not {runtime!r}")
    if not reader.has("ContainerSpec"):
        raise InvalidArgument(f"{reader.at('ContainerSpec')}: required (the container every task runs)")
    container = container_spec_from_json(reader.raw("ContainerSpec"), reader.at("ContainerSpec"))
    resources = r.ResourceRequirements()
    if (res := reader.obj("Resources")) is not None:
        limits, reservations = r.Limits(), r.Resources()
        if (lim := res.obj("Limits")) is not None:
            limits = r.Limits(nano_cpus=lim.int("NanoCPUs", minimum=0), memory_bytes=lim.int("MemoryBytes", minimum=0),
                              pids=lim.int("Pids", minimum=0))
            lim.done()
        if (rsv := res.obj("Reservations")) is not None:
            rsv.unsupported("GenericResources", why=" (generic resources such as GPUs)")
            reservations = r.Resources(nano_cpus=rsv.int("NanoCPUs", minimum=0), memory_bytes=rsv.int("MemoryBytes", minimum=0))
            rsv.done()
        res.unsupported("SwapBytes", "MemorySwappiness")
        resources = r.ResourceRequirements(limits=limits, reservations=reservations)
        res.done()
    restart = r.RestartPolicy()
    if (rp := reader.obj("RestartPolicy")) is not None:
        defaults = r.RestartPolicy()
        restart = r.RestartPolicy(condition=rp.choice("Condition", ("none", "on-failure", "any"), "any"),
                                  delay=rp.duration("Delay", defaults.delay), max_attempts=rp.int("MaxAttempts", minimum=0),
                                  window=rp.duration("Window", defaults.window))
        rp.done()
    placement = r.Placement()
    if (pl := reader.obj("Placement")) is not None:
        prefs = []
        for p in pl.objs("Preferences"):
            spread = p.obj("Spread")
            if spread is None:
                raise InvalidArgument(f"{p.path}: only Spread preferences exist; give Spread.SpreadDescriptor")
            descriptor = spread.str("SpreadDescriptor")
            if not descriptor:
                raise InvalidArgument(f"{spread.at('SpreadDescriptor')}: required, e.g. node.labels.zone")
            spread.done()
            p.done()
            prefs.append(r.PlacementPreference(spread=descriptor))
        platforms = [_platform(p) for p in pl.objs("Platforms")]
        placement = r.Placement(constraints=pl.strings("Constraints"), preferences=prefs,
                                max_replicas=pl.int("MaxReplicas", minimum=0), platforms=platforms)
        pl.done()
    networks = []
    for n in reader.objs("Networks"):
        target = n.str("Target")
        if not target:
            raise InvalidArgument(f"{n.at('Target')}: required (a network's name or id)")
        n.unsupported("DriverOpts", why=" (per-attachment driver options)")
        networks.append(r.NetworkAttachmentConfig(target=target, aliases=n.strings("Aliases")))
        n.done()
    log_driver = _driver(reader.obj("LogDriver")) if reader.has("LogDriver") else None
    spec = r.TaskSpec(container_spec=container, resources=resources, restart_policy=restart, placement=placement,
                      networks=networks, log_driver=log_driver, force_update=reader.int("ForceUpdate", minimum=0))
    reader.done()
    return spec


# ---------------------------------------------------------------------------------------------
# Services


def _update_config_json(u: r.UpdateConfig) -> dict:
    out: dict = {"Parallelism": u.parallelism}
    if u.delay:
        out["Delay"] = to_ns(u.delay)
    out["FailureAction"] = u.failure_action
    if u.monitor:
        out["Monitor"] = to_ns(u.monitor)
    out["MaxFailureRatio"] = u.max_failure_ratio
    out["Order"] = u.order
    return out


def _update_config(reader: Reader, *, rollback: bool) -> r.UpdateConfig:
    defaults = r.UpdateConfig()
    actions = ("pause", "continue") if rollback else ("pause", "continue", "rollback")
    ratio = reader.float("MaxFailureRatio")
    if not 0 <= ratio <= 1:
        raise InvalidArgument(f"{reader.at('MaxFailureRatio')}: must be between 0 and 1, not {ratio}")
    u = r.UpdateConfig(
        parallelism=reader.int("Parallelism", minimum=0),
        delay=reader.duration("Delay", 0.0),
        failure_action=reader.choice("FailureAction", actions, defaults.failure_action),
        monitor=reader.duration("Monitor", 0.0) or defaults.monitor,  # 0: the default (swarmkit)
        max_failure_ratio=ratio,
        order=reader.choice("Order", ("stop-first", "start-first"), defaults.order),
    )
    reader.done()
    return u


def _port_json(p: r.PortConfig) -> dict:
    return drop_empty({"Name": p.name, "Protocol": p.protocol, "TargetPort": p.target_port,
                        "PublishedPort": p.published_port, "PublishMode": p.publish_mode})


def _port(reader: Reader) -> r.PortConfig:
    target = reader.int("TargetPort", minimum=1)
    if not target:
        raise InvalidArgument(f"{reader.at('TargetPort')}: required (the port inside the container)")
    published = reader.int("PublishedPort", minimum=0)
    for key, value in (("TargetPort", target), ("PublishedPort", published)):
        if value > 65535:
            raise InvalidArgument(f"{reader.at(key)}: {value} is not a port (1-65535)")
    port = r.PortConfig(name=reader.str("Name"), protocol=reader.choice("Protocol", ("tcp", "udp", "sctp"), "tcp"),
                        target_port=target, published_port=published,
                        publish_mode=reader.choice("PublishMode", ("ingress", "host"), "ingress"))
    reader.done()
    return port


def _endpoint_spec_json(e: r.EndpointSpec) -> dict:
    out: dict = {"Mode": e.mode}
    if e.ports:
        out["Ports"] = [_port_json(p) for p in e.ports]
    return out


def _endpoint_spec(reader: Reader) -> r.EndpointSpec:
    e = r.EndpointSpec(mode=reader.choice("Mode", ("vip", "dnsrr"), "vip"), ports=[_port(p) for p in reader.objs("Ports")])
    if e.mode == "dnsrr" and any(p.publish_mode == "ingress" for p in e.ports):
        raise InvalidArgument(f"{reader.at('Ports')}: a dnsrr service cannot publish ports in ingress mode; "
                              f"use PublishMode host, or Mode vip")
    reader.done()
    return e


def service_spec_to_json(s: r.ServiceSpec) -> dict:
    mode = {"Replicated": {"Replicas": s.replicas}} if s.mode == "replicated" else {"Global": {}}
    out = {
        "Name": s.name,
        "Labels": dict(s.labels),
        "TaskTemplate": task_spec_to_json(s.task_template),
        "Mode": mode,
        "UpdateConfig": _update_config_json(s.update_config),
        "RollbackConfig": _update_config_json(s.rollback_config),
        "EndpointSpec": _endpoint_spec_json(s.endpoint_spec),
    }
    if s.depends_on:
        out["DependsOn"] = {name: {"Condition": d.condition, "Required": d.required} for name, d in sorted(s.depends_on.items())}
    return out


def service_spec_from_json(data: Any, path: str = "ServiceSpec") -> r.ServiceSpec:
    """A ServiceSpec as `POST /services/create` and `/services/{id}/update` take it."""
    reader = Reader(data, path)
    name = reader.str("Name")
    if not name:
        raise InvalidArgument(f"{reader.at('Name')}: required (orch names every service; pass --name)")
    if not reader.has("TaskTemplate"):
        raise InvalidArgument(f"{reader.at('TaskTemplate')}: required (what every task runs)")
    template = task_spec_from_json(reader.raw("TaskTemplate"), reader.at("TaskTemplate"))
    mode, replicas = "replicated", 1
    # A global service's spec leaves `replicas` unset (Control.check_spec refuses one set).
    if (m := reader.obj("Mode")) is not None:
        for job in ("ReplicatedJob", "GlobalJob"):
            if m.raw(job) is not None:
                raise InvalidArgument(f"{m.at(job)}: job services are not supported yet; use Replicated or Global")
        replicated, global_ = m.obj("Replicated"), m.obj("Global")
        if replicated is not None and global_ is not None:
            raise InvalidArgument(f"{m.path}: give either Replicated or Global, not both")
        if global_ is not None:
            mode = "global"
            global_.done()
        elif replicated is not None:
            replicas = replicated.int("Replicas", 1, minimum=0)
            replicated.done()
        m.done()
    if not is_zero(reader.raw("Networks")):
        raise InvalidArgument(f"{reader.at('Networks')}: deprecated since API v1.44 and not read by orch; "
                              f"put the networks in TaskTemplate.Networks")
    update = _update_config(reader.obj("UpdateConfig"), rollback=False) if reader.has("UpdateConfig") else r.UpdateConfig()
    rollback = _update_config(reader.obj("RollbackConfig"), rollback=True) if reader.has("RollbackConfig") else r.UpdateConfig()
    endpoint = _endpoint_spec(reader.obj("EndpointSpec")) if reader.has("EndpointSpec") else r.EndpointSpec()
    depends = {}
    if (deps := reader.obj("DependsOn")) is not None:
        for dep_name in list(deps.data):
            d = deps.obj(dep_name)
            if d is None:
                raise InvalidArgument(f"{deps.at(dep_name)}: expected an object with Condition and Required")
            depends[dep_name] = r.ServiceDependency(
                condition=d.choice("Condition", ("service_started", "service_healthy", "service_completed_successfully"),
                                   "service_started"),
                required=d.bool("Required", True))
            d.done()
        deps.done()
    counts = {"replicas": replicas} if mode == "replicated" else {}
    spec = build(path, lambda: r.ServiceSpec(
        name=name, labels=reader.labels("Labels"), task_template=template, mode=mode, **counts,
        update_config=update, rollback_config=rollback, endpoint_spec=endpoint, depends_on=depends))
    reader.done()
    return spec


_UPDATE_STATES = ("updating", "paused", "completed", "rollback_started", "rollback_paused", "rollback_completed")


@dataclass(frozen=True)
class ServiceStatus:
    """`ServiceStatus` of `GET /services?status=true`: running and desired task counts."""

    running: int
    desired: int
    completed: int = 0


CLIENT_ADDRESS = ("the routing mesh DNATs a connection to a task without SNAT, so the task sees the client's address; "
                  "its replies go back through the node that received it (marked by that node, routed by the mark)")


def service_to_json(service: r.Service, index: int, *, status: ServiceStatus | None = None) -> dict:
    out = {**meta_json(service, index), "Spec": service_spec_to_json(service.spec)}
    if service.previous_spec is not None:
        out["PreviousSpec"] = service_spec_to_json(service.previous_spec)
    # Endpoint.Ports is what the cluster published; until the manager allocates ports (ingress
    # picks a free one for PublishedPort 0) they are the spec's published ones.
    ports = service.endpoint.ports or [p for p in service.spec.endpoint_spec.ports if p.published_port]
    endpoint: dict = {"Spec": _endpoint_spec_json(service.spec.endpoint_spec)}
    if ports:
        endpoint["Ports"] = [_port_json(p) for p in ports]
    if service.endpoint.virtual_ips:
        endpoint["VirtualIPs"] = [{"NetworkID": v.network_id, "Addr": v.addr} for v in service.endpoint.virtual_ips]
    out["Endpoint"] = endpoint
    if any(p.publish_mode == "ingress" for p in ports):
        # orch's own key, beside docker's (whose mesh hides the client: moby/moby#25526).
        out["RoutingMesh"] = {"ClientAddress": "preserved", "How": CLIENT_ADDRESS}
    if service.update_status is not None:
        u = service.update_status
        us: dict = {"State": u.state}
        if u.started_at is not None:
            us["StartedAt"] = format_time(u.started_at)
        if u.completed_at is not None:
            us["CompletedAt"] = format_time(u.completed_at)
        if u.message:
            us["Message"] = u.message
        out["UpdateStatus"] = us
    if status is not None:
        out["ServiceStatus"] = {"RunningTasks": status.running, "DesiredTasks": status.desired,
                                "CompletedTasks": status.completed}
    return out


def service_from_json(data: Any, path: str = "Service") -> r.Service:
    reader = Reader(data, path)
    meta = read_meta(reader)
    if not reader.has("Spec"):
        raise InvalidArgument(f"{reader.at('Spec')}: required")
    spec = service_spec_from_json(reader.raw("Spec"), reader.at("Spec"))
    previous = service_spec_from_json(reader.raw("PreviousSpec"), reader.at("PreviousSpec")) if reader.has("PreviousSpec") else None
    reader.raw("RoutingMesh")  # orch's note (service_to_json), derived from the ports
    endpoint = r.Endpoint()
    if (e := reader.obj("Endpoint")) is not None:
        e.raw("Spec")  # the spec's own EndpointSpec, repeated
        vips = []
        for v in e.objs("VirtualIPs"):
            vips.append(r.VirtualIP(network_id=v.str("NetworkID"), addr=v.str("Addr")))
            v.done()
        endpoint = r.Endpoint(ports=[_port(p) for p in e.objs("Ports")], virtual_ips=vips)
        e.done()
    update_status = None
    if (u := reader.obj("UpdateStatus")) is not None:
        update_status = r.UpdateStatus(
            state=u.choice("State", _UPDATE_STATES, "updating"),
            started_at=parse_time(u.raw("StartedAt"), u.at("StartedAt")) if u.has("StartedAt") else u.raw("StartedAt"),
            completed_at=parse_time(u.raw("CompletedAt"), u.at("CompletedAt")) if u.has("CompletedAt") else u.raw("CompletedAt"),
            message=u.str("Message"))
        u.done()
    reader.raw("ServiceStatus")  # computed for each answer, not part of the record
    reader.unsupported("JobStatus")
    reader.done()
    return build(path, lambda: r.Service(**meta, spec=spec, previous_spec=previous, endpoint=endpoint,
                                          update_status=update_status))


# ---------------------------------------------------------------------------------------------
# Tasks

_TASK_STATES = tuple(s.value for s in r.TaskState)


def task_to_json(task: r.Task, index: int) -> dict:
    s = task.status
    status: dict = {"Timestamp": format_time(s.timestamp), "State": s.state.value}
    status.update(drop_empty({"Message": s.message, "Err": s.err}))
    if s.container_status is not None:
        c = s.container_status
        status["ContainerStatus"] = {"ContainerID": c.container_id, "PID": c.pid, "ExitCode": c.exit_code or 0}
    status["PortStatus"] = drop_empty({"Ports": [_port_json(p) for p in (s.port_status.ports if s.port_status else [])]})
    if s.health != "none":
        status["Health"] = s.health  # orch's: docker holds such a task in "starting" instead
    out = {
        **meta_json(task, index),
        "Labels": {},
        "Spec": task_spec_to_json(task.spec),
        "ServiceID": task.service_id,
    }
    out.update(drop_empty({"Slot": task.slot, "NodeID": task.node_id}))
    out["Status"] = status
    out["DesiredState"] = task.desired_state.value
    if task.networks:
        out["NetworksAttachments"] = [{"Network": {"ID": n.network_id}, "Addresses": list(n.addresses)} for n in task.networks]
    return out


def task_from_json(data: Any, path: str = "Task") -> r.Task:
    """A task as docker describes it. What only orch's manager keeps (the service's name, the
    spec's digest and version, the restart policy's counters) is not in docker's JSON and
    takes its default."""
    reader = Reader(data, path)
    meta = read_meta(reader)
    reader.str("Name")  # docker's daemon leaves it empty; clients name tasks SERVICE.SLOT
    reader.labels("Labels")
    if not reader.has("Spec"):
        raise InvalidArgument(f"{reader.at('Spec')}: required")
    spec = task_spec_from_json(reader.raw("Spec"), reader.at("Spec"))
    status = r.TaskStatus()
    if (s := reader.obj("Status")) is not None:
        container = None
        state = s.choice("State", _TASK_STATES, "new")
        if (c := s.obj("ContainerStatus")) is not None:
            # Go writes ExitCode 0 for a container that has not exited; it means one only at the end.
            exit_code = c.int("ExitCode", None)
            container = r.ContainerStatus(container_id=c.str("ContainerID"), pid=c.int("PID"),
                                          exit_code=exit_code if r.TaskState(state).terminal else None)
            c.done()
        ports = None
        if (p := s.obj("PortStatus")) is not None:
            ports = r.PortStatus(ports=[_port(x) for x in p.objs("Ports")])
            p.done()
        status = r.TaskStatus(
            state=state,
            timestamp=parse_time(s.raw("Timestamp"), s.at("Timestamp")) if s.has("Timestamp") else 0.0,
            message=s.str("Message"), err=s.str("Err"), container_status=container,
            port_status=ports if ports is not None and ports.ports else None,
            health=s.choice("Health", ("none", "starting", "healthy", "unhealthy"), "none"))
        s.done()
    networks = []
    for n in reader.objs("NetworksAttachments"):
        net = n.obj("Network")
        if net is None:
            raise InvalidArgument(f"{n.at('Network')}: required")
        net_id = net.str("ID")
        net.seen.update(net.data)  # the rest describes the network, which its own record holds
        networks.append(r.NetworkAttachment(network_id=net_id, addresses=n.strings("Addresses")))
        n.done()
    reader.unsupported("GenericResources", "AssignedGenericResources", "JobIteration", "Volumes")
    task = build(path, lambda: r.Task(
        **meta, service_id=reader.str("ServiceID"), slot=reader.int("Slot", minimum=0), node_id=reader.str("NodeID"),
        spec=spec, desired_state=reader.choice("DesiredState", _TASK_STATES, "new"), status=status, networks=networks))
    reader.done()
    return task
