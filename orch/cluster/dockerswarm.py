"""The swarm as the Docker Engine API's JSON, and back: GET /swarm (Swarm, ClusterInfo,
SwarmSpec), POST /swarm/init and /swarm/join's requests, the SwarmInfo of GET /info
(/swarm/local), and orch's own body of POST /stacks/deploy.

A SwarmSpec's Raft, CAConfig, TaskDefaults and EncryptionConfig are docker's: orch's consensus
is etcd's and its CA is not configured this way, so they are written with zero values and read
only with zero values (which is what docker's CLI sends back when it updates a swarm orch
described). A SwarmInitRequest may carry orch's `EtcdEndpoints`.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from typing import Any

from orch.cluster import records as r
from orch.cluster.dockerjson import service_spec_from_json, service_spec_to_json
from orch.cluster.jsonread import Reader, build, drop_empty, meta_json, read_meta, to_ns
from orch.cluster.stackspec import StackDeployment
from orch.errors import InvalidArgument

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
    reader = Reader(data, path)
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
        **meta_json(cluster, index),
        "Spec": cluster_spec_to_json(cluster),
        "TLSInfo": drop_empty({"TrustRoot": cluster.ca_certificate}),
        "RootRotationInProgress": False,
        "DefaultAddrPool": list(cluster.settings.default_addr_pool),
        "SubnetSize": cluster.settings.subnet_size,
        "DataPathPort": 4789,
    }
    if join_tokens is not None:
        out["JoinTokens"] = {"Worker": join_tokens[0], "Manager": join_tokens[1]}
    return out


def swarm_from_json(data: Any, path: str = "Swarm") -> tuple[r.Cluster, tuple[str, str] | None]:
    reader = Reader(data, path)
    meta = read_meta(reader)
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
    cluster = build(path, lambda: r.Cluster(**meta, name=name, ca_certificate=ca, settings=settings))
    return cluster, tokens


@dataclass(frozen=True)
class InitRequest:
    """POST /swarm/init: docker's SwarmInitRequest, plus orch's EtcdEndpoints."""

    listen_addr: str = ""  # "": 0.0.0.0 on the advertised port (the node decides)
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
    reader = Reader(data, path)
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
    req = InitRequest(listen_addr=reader.str("ListenAddr"), advertise_addr=reader.str("AdvertiseAddr"),
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
    listen_addr: str = ""  # "": 0.0.0.0 on the advertised port (the node decides)
    advertise_addr: str = ""
    availability: str = "active"


def join_request_to_json(req: JoinRequest) -> dict:
    return {"ListenAddr": req.listen_addr, "AdvertiseAddr": req.advertise_addr, "RemoteAddrs": list(req.remote_addrs),
            "JoinToken": req.join_token, "Availability": req.availability}


def join_request_from_json(data: Any, path: str = "SwarmJoinRequest") -> JoinRequest:
    reader = Reader(data, path)
    reader.unsupported("DataPathAddr", why=" (the data path uses the advertised address)")
    remotes = tuple(reader.strings("RemoteAddrs"))
    if not remotes:
        raise InvalidArgument(f"{reader.at('RemoteAddrs')}: required (a manager's HOST:PORT)")
    token = reader.str("JoinToken")
    if not token:
        raise InvalidArgument(f"{reader.at('JoinToken')}: required (orch swarm join-token worker, on a manager, prints it)")
    req = JoinRequest(remote_addrs=remotes, join_token=token, listen_addr=reader.str("ListenAddr"),
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
    out.update(drop_empty({"Nodes": info.nodes, "Managers": info.managers}))
    if info.cluster is not None:
        out["Cluster"] = swarm_to_json(*info.cluster)
    return out


def swarm_info_from_json(data: Any, path: str = "SwarmInfo") -> LocalInfo:
    reader = Reader(data, path)
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
            "IPAM": {"Driver": "default", "Config": [drop_empty({"Subnet": c.subnet, "IPRange": c.ip_range, "Gateway": c.gateway})
                                                     for c in n.ipam]}}


def _network_spec(reader: Reader) -> r.NetworkSpec:
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


def _file_spec(reader: Reader, model):
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


def stack_deploy_from_json(data: Any, path: str = "StackDeploy") -> tuple[StackDeployment, bool, dict]:
    """(StackDeployment, prune, {service name: (user, password)}) from the body of POST
    /stacks/deploy; "RegistryAuth" carries `--with-registry-auth`'s credentials per service."""
    reader = Reader(data, path)
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
    auths: dict[str, tuple[str, str]] = {}
    if (given := reader.obj("RegistryAuth")) is not None:
        for service in [s.name for s in services]:
            if (one := given.obj(service)) is not None:
                auths[service] = (one.str("username"), one.str("password"))
                one.done()
        given.done()
    reader.done()
    return StackDeployment(name, services, networks, secrets, configs, ext_networks, ext_secrets, ext_configs), prune, auths
