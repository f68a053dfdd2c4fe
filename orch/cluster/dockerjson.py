"""The cluster's records as the Docker Engine API's swarm JSON, and back.

moby's api/swagger.yaml (and the Go types under api/types/swarm, whose `omitempty` tags decide
what an answer leaves out) is the reference for names, nesting and units:

- times are RFC 3339 strings with up to nine fraction digits (Go's `time.Time`); the records
  hold float seconds since the epoch, and 0 is Go's zero time, 0001-01-01T00:00:00Z;
- durations are integer nanoseconds (Go's `time.Duration`); the records hold float seconds;
- an object's `Version.Index` is the record's etcd mod revision, passed beside the record;
- `Mode` is `{"Replicated": {"Replicas": N}}` or `{"Global": {}}`; a replicated service sent
  without `Replicas` has one (the daemon's default);
- CPUs are nano-CPUs, memory bytes, a tmpfs or secret mode an integer (decimal of the octal).

What orch reads is strict, as docker's daemon is not: a field orch does not know, or knows but
cannot honour, is refused with one line that names its path
(`ServiceSpec.TaskTemplate.ContainerSpec.Groups: orch does not support ...`), never silently
dropped. The exception is what docker's CLI always sends with a zero value (`Init: false`,
`DNSConfig: {}`, `ForceUpdate: 0`, a swarm spec's `Raft`, `CAConfig`, `EncryptionConfig`):
a zero value of a field orch does not support is accepted and means nothing, as it does in
docker.

orch's own extensions, which docker's JSON cannot say: a ServiceSpec's `DependsOn`
(`{"web": {"Condition": "service_healthy", "Required": true}}`, which orch honours across the
cluster and swarm ignores), a SwarmInitRequest's `EtcdEndpoints`, a TaskStatus's `Health`,
and the stack deploy body of `POST /stacks/deploy` (CLUSTER-API.md).

Pure: no I/O. Records are built and read through their own validation, so a value that
passes here is one the store accepts.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable

from pydantic import ValidationError

from orch.cluster import records as r
from orch.cluster.stackspec import StackDeployment
from orch.errors import InvalidArgument

# ---------------------------------------------------------------------------------------------
# Units


_ZERO_TIME = "0001-01-01T00:00:00Z"
_TIME = re.compile(r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d{1,9})?(Z|z|[+-]\d\d:\d\d)$")


def format_time(seconds: float | None) -> str:
    """Float seconds since the epoch as Go marshals a time.Time: RFC 3339, nanoseconds with
    trailing zeros trimmed, UTC. 0 (and None) is Go's zero time."""
    if not seconds:
        return _ZERO_TIME
    # The shortest decimal that reads back as the same float (repr's), cut at nanoseconds: a
    # time.time() value prints as Go would print it, not with the float's binary noise.
    exact = Decimal(repr(float(seconds))).quantize(Decimal("1e-9"))
    whole = int(exact // 1)
    nanos = int((exact - whole) * 1_000_000_000)
    text = datetime.fromtimestamp(whole, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


def parse_time(text: str, where: str) -> float:
    """An RFC 3339 time as float seconds since the epoch; Go's zero time is 0."""
    if not isinstance(text, str):
        raise InvalidArgument(f"{where}: expected an RFC 3339 time such as 2016-06-07T21:07:31.171892745Z, got {text!r}")
    if text == _ZERO_TIME:
        return 0.0
    m = _TIME.match(text)
    if m is None:
        raise InvalidArgument(f"{where}: {text!r} is not an RFC 3339 time such as 2016-06-07T21:07:31.171892745Z")
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    try:
        tz = timezone.utc
        if zone not in ("Z", "z"):
            sign = -1 if zone[0] == "-" else 1
            from datetime import timedelta

            tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=tz)
    except ValueError as err:
        raise InvalidArgument(f"{where}: {text!r} is not a valid time ({err})") from None
    return float(Decimal(int(dt.timestamp())) + Decimal(fraction or "0"))


def to_ns(seconds: float | None) -> int:
    """Float seconds as a Go time.Duration (integer nanoseconds)."""
    return int(round((seconds or 0) * 1_000_000_000))


def from_ns(nanoseconds: int) -> float:
    return nanoseconds / 1_000_000_000


# ---------------------------------------------------------------------------------------------
# Reading: every object through one strict reader that names the path of what it refuses


def _is_zero(value: Any) -> bool:
    """Go's zero value, as docker's CLI sends a field it did not set: null, false, 0, "", an
    empty list, or an object of zero values."""
    if value is None or value is False or value == 0 or value == "" or value == []:
        return True
    if isinstance(value, dict):
        return all(_is_zero(v) for v in value.values())
    return False


class _Reader:
    """One JSON object being read: take its fields, then `done()` refuses whatever is left."""

    def __init__(self, data: Any, path: str):
        if not isinstance(data, dict):
            raise InvalidArgument(f"{path}: expected a JSON object, got {_kind(data)}")
        self.data = data
        self.path = path
        self.seen: set[str] = set()

    def at(self, key: str) -> str:
        return f"{self.path}.{key}"

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key)

    def str(self, key: str, default: str = "") -> str:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, str):
            raise InvalidArgument(f"{self.at(key)}: expected a string, got {_kind(value)}")
        return value

    def int(self, key: str, default: int | None = 0, *, minimum: int | None = None) -> int | None:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not value.is_integer()):
            raise InvalidArgument(f"{self.at(key)}: expected an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise InvalidArgument(f"{self.at(key)}: must be {minimum} or more, not {int(value)}")
        return int(value)

    def float(self, key: str, default: float = 0.0) -> float:
        value = self.raw(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidArgument(f"{self.at(key)}: expected a number, got {_kind(value)}")
        return float(value)

    def bool(self, key: str, default: bool | None = False) -> bool | None:
        value = self.raw(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise InvalidArgument(f"{self.at(key)}: expected true or false, got {_kind(value)}")
        return value

    def duration(self, key: str, default: float | None = None) -> float | None:
        """A Go duration in nanoseconds as float seconds; negative is refused."""
        ns = self.int(key, None, minimum=0)
        return default if ns is None else from_ns(ns)

    def strings(self, key: str) -> list[str]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidArgument(f"{self.at(key)}: expected a list of strings, got {_kind(value)}")
        return list(value)

    def labels(self, key: str) -> dict[str, str]:
        value = self.raw(key)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise InvalidArgument(f"{self.at(key)}: expected an object of strings, got {_kind(value)}")
        return dict(value)

    def obj(self, key: str) -> _Reader | None:
        value = self.raw(key)
        return None if value is None else _Reader(value, self.at(key))

    def objs(self, key: str) -> list[_Reader]:
        value = self.raw(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise InvalidArgument(f"{self.at(key)}: expected a list, got {_kind(value)}")
        return [_Reader(v, f"{self.at(key)}[{i}]") for i, v in enumerate(value)]

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.str(key, default) or default
        if value not in choices:
            raise InvalidArgument(f"{self.at(key)}: {value!r} is not one of {', '.join(choices)}")
        return value

    def unsupported(self, *keys: str, why: str = "") -> None:
        """Fields orch does not support: accepted only with their zero value (docker's CLI
        sends some of them always)."""
        for key in keys:
            value = self.raw(key)
            if not _is_zero(value):
                raise InvalidArgument(f"{self.at(key)}: orch does not support this field{why}; remove it")

    def done(self) -> None:
        extra = [k for k in self.data if k not in self.seen]
        if extra:
            raise InvalidArgument(f"{self.at(sorted(extra)[0])}: unknown field; check its spelling against the Docker "
                                  f"Engine API (names are case-sensitive)")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", int: "a number", float: "a number", list: "a list", dict: "an object"}.get(
        type(value), type(value).__name__)


def _build(where: str, make: Callable[[], Any]):
    """Build a record value; a value the record refuses is one line naming `where`."""
    try:
        return make()
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidArgument(f"{where}{'.' + loc if loc else ''}: {first['msg']}") from None


def _version(reader: _Reader) -> None:
    """`Version` of an object a client sends back: read and ignored (the version that counts
    is the `version` query parameter)."""
    version = reader.obj("Version")
    if version is not None:
        version.int("Index", minimum=0)
        version.done()


def _meta(reader: _Reader) -> dict:
    _version(reader)
    out = {"id": reader.str("ID")}
    for key, name in (("CreatedAt", "created_at"), ("UpdatedAt", "updated_at")):
        if reader.has(key):
            out[name] = parse_time(reader.raw(key), reader.at(key))
        else:
            reader.raw(key)
    return out


def _meta_json(record: r.Record, index: int) -> dict:
    return {"ID": record.id, "Version": {"Index": index}, "CreatedAt": format_time(record.created_at),
            "UpdatedAt": format_time(record.updated_at)}


def _drop_empty(d: dict) -> dict:
    """Go's `omitempty`: leave out "", 0, false, null, empty lists and objects."""
    return {k: v for k, v in d.items() if v is True or v not in (None, "", 0, False, [], {})}


# ---------------------------------------------------------------------------------------------
# Shared parts


def _platform_json(p: r.Platform) -> dict:
    return _drop_empty({"Architecture": p.architecture, "OS": p.os})


def _platform(reader: _Reader) -> r.Platform:
    p = r.Platform(architecture=reader.str("Architecture"), os=reader.str("OS"))
    reader.done()
    return p


def _driver_json(d: r.Driver) -> dict:
    return _drop_empty({"Name": d.name, "Options": dict(d.options)})


def _driver(reader: _Reader) -> r.Driver:
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
    reader = _Reader(data, path)
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
    description = _drop_empty({"Hostname": d.hostname}) | {
        "Platform": _platform_json(d.platform),
        "Resources": _drop_empty({"NanoCPUs": d.resources.nano_cpus, "MemoryBytes": d.resources.memory_bytes}),
        "Engine": _drop_empty({"EngineVersion": d.engine_version, "Labels": dict(d.engine_labels)}),
        "TLSInfo": {},
    }
    out = {
        **_meta_json(node, index),
        "Spec": node_spec_to_json(node.spec),
        "Description": description,
        "Status": _drop_empty({"State": node.status.state, "Message": node.status.message, "Addr": node.status.addr}),
    }
    if node.manager_status is not None:
        m = node.manager_status
        out["ManagerStatus"] = _drop_empty({"Leader": m.leader, "Reachability": m.reachability, "Addr": m.addr})
    return out


def node_from_json(data: Any, path: str = "Node") -> r.Node:
    reader = _Reader(data, path)
    meta = _meta(reader)
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
        status = _build(s.path, lambda: r.NodeStatus(state=s.str("State", "unknown"), message=s.str("Message"), addr=s.str("Addr")))
        s.done()
    manager = None
    if (m := reader.obj("ManagerStatus")) is not None:
        manager = _build(m.path, lambda: r.ManagerStatus(leader=m.bool("Leader"), reachability=m.str("Reachability", "unknown"),
                                                         addr=m.str("Addr")))
        m.done()
    reader.done()
    return _build(path, lambda: r.Node(**meta, spec=spec, description=description, status=status, manager_status=manager))


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


def _health(reader: _Reader) -> r.HealthConfig:
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
    out = _drop_empty({"Type": m.type, "Source": m.source, "Target": m.target, "ReadOnly": m.read_only})
    # Go leaves out a nil options pointer and writes an empty one as {}.
    if m.volume_options is not None:
        v = m.volume_options
        opts = _drop_empty({"NoCopy": v.no_copy, "Labels": dict(v.labels)})
        if v.driver_config is not None:
            opts["DriverConfig"] = _driver_json(v.driver_config)
        out["VolumeOptions"] = opts
    if m.tmpfs_options is not None:
        out["TmpfsOptions"] = _drop_empty({"SizeBytes": m.tmpfs_options.size_bytes, "Mode": m.tmpfs_options.mode})
    return out


def _mount(reader: _Reader) -> r.Mount:
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


def _file(reader: _Reader | None, where: str) -> r.FileTarget:
    if reader is None:
        raise InvalidArgument(f"{where}.File: required (where the file appears in the container)")
    name = reader.str("Name")
    if not name:
        raise InvalidArgument(f"{reader.at('Name')}: required (the file's name or path in the container)")
    f = r.FileTarget(name=name, uid=reader.str("UID", "0") or "0", gid=reader.str("GID", "0") or "0",
                     mode=reader.int("Mode", 0o444, minimum=0))
    reader.done()
    return f


def _secret_ref(reader: _Reader) -> r.SecretReference:
    name = reader.str("SecretName")
    if not name:
        raise InvalidArgument(f"{reader.at('SecretName')}: required (the secret's name)")
    ref = r.SecretReference(secret_id=reader.str("SecretID"), secret_name=name, file=_file(reader.obj("File"), reader.path))
    reader.done()
    return ref


def _config_ref(reader: _Reader) -> r.ConfigReference:
    name = reader.str("ConfigName")
    if not name:
        raise InvalidArgument(f"{reader.at('ConfigName')}: required (the config's name)")
    reader.unsupported("Runtime", why=" (a config the runtime reads, for Windows credential specs)")
    ref = r.ConfigReference(config_id=reader.str("ConfigID"), config_name=name, file=_file(reader.obj("File"), reader.path))
    reader.done()
    return ref


def container_spec_to_json(c: r.ContainerSpec) -> dict:
    out: dict = {"Image": c.image}
    out.update(_drop_empty({"Labels": dict(c.labels)}))
    if c.command is not None:
        out["Command"] = list(c.command)
    if c.args is not None:
        out["Args"] = list(c.args)
    out.update(_drop_empty({"Hostname": c.hostname, "Env": list(c.env), "Dir": c.dir, "User": c.user}))
    if c.init is not None:
        out["Init"] = c.init
    out.update(_drop_empty({"StopSignal": c.stop_signal, "TTY": c.tty, "OpenStdin": c.open_stdin, "ReadOnly": c.read_only,
                            "Mounts": [_mount_json(m) for m in c.mounts]}))
    if c.stop_grace_period is not None:
        out["StopGracePeriod"] = to_ns(c.stop_grace_period)
    if c.healthcheck is not None:
        out["Healthcheck"] = _health_json(c.healthcheck)
    out.update(_drop_empty({"Hosts": list(c.hosts)}))
    if c.dns_config is not None:
        out["DNSConfig"] = _drop_empty({"Nameservers": list(c.dns_config.nameservers), "Search": list(c.dns_config.search),
                                        "Options": list(c.dns_config.options)})
    out.update(_drop_empty({
        "Secrets": [{"File": _file_json(s.file), **_drop_empty({"SecretID": s.secret_id}), "SecretName": s.secret_name}
                    for s in c.secrets],
        "Configs": [{"File": _file_json(s.file), **_drop_empty({"ConfigID": s.config_id}), "ConfigName": s.config_name}
                    for s in c.configs],
        "Sysctls": dict(c.sysctls),
        "CapabilityAdd": list(c.cap_add),
        "CapabilityDrop": list(c.cap_drop),
        "Ulimits": [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in c.ulimits],
    }))
    return out


def container_spec_from_json(data: Any, path: str = "ContainerSpec") -> r.ContainerSpec:
    reader = _Reader(data, path)
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
    spec = _build(path, lambda: r.ContainerSpec(
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
    limits = _drop_empty({"NanoCPUs": t.resources.limits.nano_cpus, "MemoryBytes": t.resources.limits.memory_bytes,
                          "Pids": t.resources.limits.pids})
    reservations = _drop_empty({"NanoCPUs": t.resources.reservations.nano_cpus,
                                "MemoryBytes": t.resources.reservations.memory_bytes})
    rp = t.restart_policy
    placement: dict = _drop_empty({"Constraints": list(t.placement.constraints),
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
        out["Networks"] = [_drop_empty({"Target": n.target, "Aliases": list(n.aliases)}) for n in t.networks]
    if t.log_driver is not None:
        out["LogDriver"] = _driver_json(t.log_driver)
    out["ForceUpdate"] = t.force_update
    return out


def task_spec_from_json(data: Any, path: str = "TaskSpec") -> r.TaskSpec:
    reader = _Reader(data, path)
    for key in ("PluginSpec", "NetworkAttachmentSpec"):
        if not _is_zero(reader.raw(key)):
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


def _update_config(reader: _Reader, *, rollback: bool) -> r.UpdateConfig:
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
    return _drop_empty({"Name": p.name, "Protocol": p.protocol, "TargetPort": p.target_port,
                        "PublishedPort": p.published_port, "PublishMode": p.publish_mode})


def _port(reader: _Reader) -> r.PortConfig:
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


def _endpoint_spec(reader: _Reader) -> r.EndpointSpec:
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
    reader = _Reader(data, path)
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
    if not _is_zero(reader.raw("Networks")):
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
    spec = _build(path, lambda: r.ServiceSpec(
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


def service_to_json(service: r.Service, index: int, *, status: ServiceStatus | None = None) -> dict:
    out = {**_meta_json(service, index), "Spec": service_spec_to_json(service.spec)}
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
    reader = _Reader(data, path)
    meta = _meta(reader)
    if not reader.has("Spec"):
        raise InvalidArgument(f"{reader.at('Spec')}: required")
    spec = service_spec_from_json(reader.raw("Spec"), reader.at("Spec"))
    previous = service_spec_from_json(reader.raw("PreviousSpec"), reader.at("PreviousSpec")) if reader.has("PreviousSpec") else None
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
    return _build(path, lambda: r.Service(**meta, spec=spec, previous_spec=previous, endpoint=endpoint,
                                          update_status=update_status))


# ---------------------------------------------------------------------------------------------
# Tasks

_TASK_STATES = tuple(s.value for s in r.TaskState)


def task_to_json(task: r.Task, index: int) -> dict:
    s = task.status
    status: dict = {"Timestamp": format_time(s.timestamp), "State": s.state.value}
    status.update(_drop_empty({"Message": s.message, "Err": s.err}))
    if s.container_status is not None:
        c = s.container_status
        status["ContainerStatus"] = {"ContainerID": c.container_id, "PID": c.pid, "ExitCode": c.exit_code or 0}
    status["PortStatus"] = _drop_empty({"Ports": [_port_json(p) for p in (s.port_status.ports if s.port_status else [])]})
    if s.health != "none":
        status["Health"] = s.health  # orch's: docker holds such a task in "starting" instead
    out = {
        **_meta_json(task, index),
        "Labels": {},
        "Spec": task_spec_to_json(task.spec),
        "ServiceID": task.service_id,
    }
    out.update(_drop_empty({"Slot": task.slot, "NodeID": task.node_id}))
    out["Status"] = status
    out["DesiredState"] = task.desired_state.value
    if task.networks:
        out["NetworksAttachments"] = [{"Network": {"ID": n.network_id}, "Addresses": list(n.addresses)} for n in task.networks]
    return out


def task_from_json(data: Any, path: str = "Task") -> r.Task:
    """A task as docker describes it. What only orch's manager keeps (the service's name, the
    spec's digest and version, the restart policy's counters) is not in docker's JSON and
    takes its default."""
    reader = _Reader(data, path)
    meta = _meta(reader)
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
    task = _build(path, lambda: r.Task(
        **meta, service_id=reader.str("ServiceID"), slot=reader.int("Slot", minimum=0), node_id=reader.str("NodeID"),
        spec=spec, desired_state=reader.choice("DesiredState", _TASK_STATES, "new"), status=status, networks=networks))
    reader.done()
    return task


# ---------------------------------------------------------------------------------------------
# The swarm


def cluster_spec_to_json(cluster: r.Cluster) -> dict:
    """The SwarmSpec: what `swarm update` changes. Raft, CAConfig and the rest are docker's
    and hold zero values (orch's consensus is etcd's; its CA is not configurable this way)."""
    s = cluster.settings
    return {
        "Name": cluster.name,
        "Labels": {},
        "Orchestration": {"TaskHistoryRetentionLimit": s.task_history_limit},
        "Raft": {"ElectionTick": 0, "HeartbeatTick": 0},
        "Dispatcher": {"HeartbeatPeriod": to_ns(s.heartbeat_period)},
        "CAConfig": {},
        "TaskDefaults": {},
        "EncryptionConfig": {"AutoLockManagers": False},
    }


def cluster_settings_from_spec(data: Any, base: r.ClusterSettings, *, path: str = "Spec",
                               name: str = "default") -> r.ClusterSettings:
    """The settings a SwarmSpec sets over `base`: the task history limit and the heartbeat
    period. A field left out (or 0, which Go cannot tell from absent) keeps `base`'s value."""
    reader = _Reader(data, path)
    given_name = reader.str("Name")
    if given_name not in ("", name):
        raise InvalidArgument(f"{reader.at('Name')}: a swarm cannot be renamed (it is {name!r})")
    if reader.labels("Labels"):
        raise InvalidArgument(f"{reader.at('Labels')}: orch does not support swarm labels; remove them")
    update: dict = {}
    if (o := reader.obj("Orchestration")) is not None:
        limit = o.int("TaskHistoryRetentionLimit", None)
        if limit is not None:
            if limit < 0:
                raise InvalidArgument(f"{o.at('TaskHistoryRetentionLimit')}: orch keeps a bounded history; give 0 or more")
            update["task_history_limit"] = limit
        o.done()
    if (d := reader.obj("Dispatcher")) is not None:
        period = d.duration("HeartbeatPeriod")
        if period:
            if period < 0.1:
                raise InvalidArgument(f"{d.at('HeartbeatPeriod')}: {to_ns(period)} ns is too short; give 100ms or more")
            update["heartbeat_period"] = period
        d.done()
    raft = reader.obj("Raft")
    if raft is not None:
        raft.unsupported("SnapshotInterval", "KeepOldSnapshots", "LogEntriesForSlowFollowers", "ElectionTick", "HeartbeatTick",
                         why=" (orch keeps its state in etcd, not raft)")
        raft.done()
    ca = reader.obj("CAConfig")
    if ca is not None:
        ca.unsupported("NodeCertExpiry", "ExternalCAs", "SigningCACert", "SigningCAKey", "ForceRotate")
        ca.done()
    reader.unsupported("TaskDefaults", "EncryptionConfig")
    reader.done()
    return base.model_copy(update=update)


def swarm_to_json(cluster: r.Cluster, index: int, *, join_tokens: tuple[str, str] | None = None) -> dict:
    """GET /swarm (with `join_tokens` (worker, manager)), or the ClusterInfo of GET /info
    (without)."""
    out = {
        **_meta_json(cluster, index),
        "Spec": cluster_spec_to_json(cluster),
        "TLSInfo": _drop_empty({"TrustRoot": cluster.ca_certificate}),
        "RootRotationInProgress": False,
        "DefaultAddrPool": list(cluster.settings.default_addr_pool),
        "SubnetSize": cluster.settings.subnet_size,
        "DataPathPort": 4789,
    }
    if join_tokens is not None:
        out["JoinTokens"] = {"Worker": join_tokens[0], "Manager": join_tokens[1]}
    return out


def swarm_from_json(data: Any, path: str = "Swarm") -> tuple[r.Cluster, tuple[str, str] | None]:
    reader = _Reader(data, path)
    meta = _meta(reader)
    base = r.ClusterSettings()
    name = "default"
    if (spec := reader.raw("Spec")) is not None and isinstance(spec, dict) and isinstance(spec.get("Name"), str) and spec["Name"]:
        name = spec["Name"]
    settings = cluster_settings_from_spec(spec, base, path=reader.at("Spec"), name=name) if spec is not None else base
    ca = ""
    if (tls := reader.obj("TLSInfo")) is not None:
        ca = tls.str("TrustRoot")
        tls.unsupported("CertIssuerSubject", "CertIssuerPublicKey")
        tls.done()
    reader.bool("RootRotationInProgress")
    pool = reader.strings("DefaultAddrPool") or base.default_addr_pool
    subnet_size = reader.int("SubnetSize", base.subnet_size, minimum=0) or base.subnet_size
    port = reader.int("DataPathPort", 4789)
    if port not in (0, 4789):
        raise InvalidArgument(f"{reader.at('DataPathPort')}: orch's VXLAN port is 4789")
    tokens = None
    if (t := reader.obj("JoinTokens")) is not None:
        tokens = (t.str("Worker"), t.str("Manager"))
        t.done()
    reader.done()
    settings = settings.model_copy(update={"default_addr_pool": pool, "subnet_size": subnet_size})
    cluster = _build(path, lambda: r.Cluster(**meta, name=name, ca_certificate=ca, settings=settings))
    return cluster, tokens


@dataclass(frozen=True)
class InitRequest:
    """POST /swarm/init: docker's SwarmInitRequest, plus orch's EtcdEndpoints."""

    listen_addr: str = "0.0.0.0:2377"
    advertise_addr: str = ""
    default_addr_pool: tuple[str, ...] = ()
    subnet_size: int = 24
    settings: r.ClusterSettings = field(default_factory=r.ClusterSettings)
    availability: str = "active"
    etcd_endpoints: tuple[str, ...] = ()


def init_request_to_json(req: InitRequest) -> dict:
    out = {
        "ListenAddr": req.listen_addr,
        "AdvertiseAddr": req.advertise_addr,
        "DefaultAddrPool": list(req.default_addr_pool),
        "SubnetSize": req.subnet_size,
        "Spec": cluster_spec_to_json(r.Cluster(id="", settings=req.settings)) | {"Name": ""},
        "Availability": req.availability,
    }
    if req.etcd_endpoints:
        out["EtcdEndpoints"] = list(req.etcd_endpoints)
    return out


def init_request_from_json(data: Any, path: str = "SwarmInitRequest") -> InitRequest:
    reader = _Reader(data, path)
    reader.unsupported("DataPathAddr", why=" (the data path uses the advertised address)")
    port = reader.int("DataPathPort", 0)
    if port not in (0, 4789):
        raise InvalidArgument(f"{reader.at('DataPathPort')}: orch's VXLAN port is 4789; leave it out")
    reader.unsupported("ForceNewCluster", why=" (to recover, restore etcd from a snapshot)")
    reader.unsupported("AutoLockManagers", why=" (autolock)")
    pool = tuple(reader.strings("DefaultAddrPool"))
    subnet_size = reader.int("SubnetSize", 24, minimum=0) or 24
    if not 1 <= subnet_size <= 29:
        raise InvalidArgument(f"{reader.at('SubnetSize')}: must be between 1 and 29, not {subnet_size}")
    base = r.ClusterSettings()
    settings = cluster_settings_from_spec(reader.raw("Spec"), base, path=reader.at("Spec")) if reader.has("Spec") else base
    reader.raw("Spec")
    settings = settings.model_copy(update={"default_addr_pool": list(pool) or base.default_addr_pool, "subnet_size": subnet_size})
    endpoints = tuple(reader.strings("EtcdEndpoints"))
    req = InitRequest(listen_addr=reader.str("ListenAddr") or "0.0.0.0:2377", advertise_addr=reader.str("AdvertiseAddr"),
                      default_addr_pool=pool, subnet_size=subnet_size, settings=settings,
                      availability=reader.choice("Availability", ("active", "pause", "drain"), "active"),
                      etcd_endpoints=endpoints)
    reader.done()
    return req


@dataclass(frozen=True)
class JoinRequest:
    """POST /swarm/join: docker's SwarmJoinRequest."""

    remote_addrs: tuple[str, ...]
    join_token: str
    listen_addr: str = "0.0.0.0:2377"
    advertise_addr: str = ""
    availability: str = "active"


def join_request_to_json(req: JoinRequest) -> dict:
    return {"ListenAddr": req.listen_addr, "AdvertiseAddr": req.advertise_addr, "RemoteAddrs": list(req.remote_addrs),
            "JoinToken": req.join_token, "Availability": req.availability}


def join_request_from_json(data: Any, path: str = "SwarmJoinRequest") -> JoinRequest:
    reader = _Reader(data, path)
    reader.unsupported("DataPathAddr", why=" (the data path uses the advertised address)")
    remotes = tuple(reader.strings("RemoteAddrs"))
    if not remotes:
        raise InvalidArgument(f"{reader.at('RemoteAddrs')}: required (a manager's HOST:PORT)")
    token = reader.str("JoinToken")
    if not token:
        raise InvalidArgument(f"{reader.at('JoinToken')}: required (orch swarm join-token worker, on a manager, prints it)")
    req = JoinRequest(remote_addrs=remotes, join_token=token, listen_addr=reader.str("ListenAddr") or "0.0.0.0:2377",
                      advertise_addr=reader.str("AdvertiseAddr"),
                      availability=reader.choice("Availability", ("active", "pause", "drain"), "active"))
    reader.done()
    return req


@dataclass(frozen=True)
class LocalInfo:
    """What a node knows of its own membership: the `Swarm` field of GET /info (SwarmInfo).

    `cluster` is the cluster record and its version, known on managers only."""

    node_id: str = ""
    node_addr: str = ""
    local_node_state: str = "inactive"  # "" | inactive | pending | active | error | locked
    control_available: bool = False
    error: str = ""
    remote_managers: tuple[tuple[str, str], ...] = ()  # (node id, addr)
    nodes: int = 0
    managers: int = 0
    cluster: tuple[r.Cluster, int] | None = None


def swarm_info_to_json(info: LocalInfo) -> dict:
    out: dict = {
        "NodeID": info.node_id,
        "NodeAddr": info.node_addr,
        "LocalNodeState": info.local_node_state,
        "ControlAvailable": info.control_available,
        "Error": info.error,
        "RemoteManagers": [{"NodeID": n, "Addr": a} for n, a in info.remote_managers] or None,
    }
    out.update(_drop_empty({"Nodes": info.nodes, "Managers": info.managers}))
    if info.cluster is not None:
        out["Cluster"] = swarm_to_json(*info.cluster)
    return out


def swarm_info_from_json(data: Any, path: str = "SwarmInfo") -> LocalInfo:
    reader = _Reader(data, path)
    remotes = []
    for p in reader.objs("RemoteManagers"):
        remotes.append((p.str("NodeID"), p.str("Addr")))
        p.done()
    cluster = None
    if reader.has("Cluster"):
        raw = reader.raw("Cluster")
        record, _tokens = swarm_from_json(raw, reader.at("Cluster"))
        cluster = (record, int(raw.get("Version", {}).get("Index", 0)))
    reader.strings("Warnings")
    info = LocalInfo(node_id=reader.str("NodeID"), node_addr=reader.str("NodeAddr"),
                     local_node_state=reader.choice("LocalNodeState", ("", "inactive", "pending", "active", "error", "locked"),
                                                    "inactive"),
                     control_available=reader.bool("ControlAvailable"), error=reader.str("Error"),
                     remote_managers=tuple(remotes), nodes=reader.int("Nodes", minimum=0),
                     managers=reader.int("Managers", minimum=0), cluster=cluster)
    reader.done()
    return info


# ---------------------------------------------------------------------------------------------
# orch's stack deploy body (POST /stacks/deploy)


def _network_spec_json(n: r.NetworkSpec) -> dict:
    return {"Name": n.name, "Labels": dict(n.labels), "Driver": n.driver, "Options": dict(n.options), "Internal": n.internal,
            "Attachable": n.attachable,
            "IPAM": {"Driver": "default", "Config": [_drop_empty({"Subnet": c.subnet, "IPRange": c.ip_range, "Gateway": c.gateway})
                                                     for c in n.ipam]}}


def _network_spec(reader: _Reader) -> r.NetworkSpec:
    name = reader.str("Name")
    if not name:
        raise InvalidArgument(f"{reader.at('Name')}: required")
    driver = reader.str("Driver", "overlay") or "overlay"
    if driver != "overlay":
        raise InvalidArgument(f"{reader.at('Driver')}: a stack's networks are overlay networks, not {driver}")
    ipam = []
    if (i := reader.obj("IPAM")) is not None:
        ipam_driver = i.str("Driver")
        if ipam_driver not in ("", "default"):
            raise InvalidArgument(f"{i.at('Driver')}: orch has the default IPAM driver only")
        i.unsupported("Options")
        for c in i.objs("Config"):
            c.unsupported("AuxiliaryAddresses")
            ipam.append(r.IPAMConfig(subnet=c.str("Subnet"), ip_range=c.str("IPRange"), gateway=c.str("Gateway")))
            c.done()
        i.done()
    reader.unsupported("EnableIPv4", "EnableIPv6", "Ingress", "ConfigOnly", "ConfigFrom", "Scope")
    spec = r.NetworkSpec(name=name, labels=reader.labels("Labels"), driver=driver, options=reader.labels("Options"),
                         internal=reader.bool("Internal"), attachable=reader.bool("Attachable"), ipam=ipam)
    reader.done()
    return spec


def _file_spec_json(s: r.SecretSpec | r.ConfigSpec) -> dict:
    return {"Name": s.name, "Labels": dict(s.labels), "Data": base64.b64encode(s.data).decode()}


def _file_spec(reader: _Reader, model):
    name = reader.str("Name")
    if not name:
        raise InvalidArgument(f"{reader.at('Name')}: required")
    try:
        data = base64.b64decode(reader.str("Data"), validate=True)
    except ValueError:
        raise InvalidArgument(f"{reader.at('Data')}: not base64") from None
    reader.unsupported("Driver", "Templating")
    spec = model(name=name, labels=reader.labels("Labels"), data=data)
    reader.done()
    return spec


def stack_deploy_to_json(deployment: StackDeployment, *, prune: bool = False) -> dict:
    """The body of POST /stacks/deploy for an orch.cluster.stackspec.StackDeployment."""
    return {
        "Name": deployment.namespace,
        "Services": [service_spec_to_json(s) for s in deployment.services],
        "Networks": [_network_spec_json(n) for n in deployment.networks],
        "Secrets": [_file_spec_json(s) for s in deployment.secrets],
        "Configs": [_file_spec_json(c) for c in deployment.configs],
        "External": {"Networks": list(deployment.external_networks), "Secrets": list(deployment.external_secrets),
                     "Configs": list(deployment.external_configs)},
        "Prune": prune,
    }


def stack_deploy_from_json(data: Any, path: str = "StackDeploy") -> tuple[StackDeployment, bool]:
    """(StackDeployment, prune) from the body of POST /stacks/deploy."""
    reader = _Reader(data, path)
    name = reader.str("Name")
    if not name or not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", name):
        raise InvalidArgument(f"{reader.at('Name')}: {name!r} is not a stack name (letters, digits, '_', '.', '-')")
    services = tuple(service_spec_from_json(s.data, s.path) for s in reader.objs("Services"))
    networks = tuple(_network_spec(n) for n in reader.objs("Networks"))
    secrets = tuple(_file_spec(s, r.SecretSpec) for s in reader.objs("Secrets"))
    configs = tuple(_file_spec(c, r.ConfigSpec) for c in reader.objs("Configs"))
    ext_networks = ext_secrets = ext_configs = ()
    if (ext := reader.obj("External")) is not None:
        ext_networks, ext_secrets, ext_configs = (tuple(ext.strings(k)) for k in ("Networks", "Secrets", "Configs"))
        ext.done()
    prune = reader.bool("Prune")
    reader.done()
    return StackDeployment(name, services, networks, secrets, configs, ext_networks, ext_secrets, ext_configs), prune
