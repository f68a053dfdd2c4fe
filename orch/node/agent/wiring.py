"""Networks and volumes in a container's life: what create, start, exit and rm call.

The agent's own modules (create.py, node.py) call these few functions and nothing else of
networking or volumes: `prepare_create` checks the request and returns what goes into the
ContainerConfig and the record; `setup_network` and `release_network` follow the container's
process; `remove_volumes` and `volume_users` serve `rm -v` and `volume rm`.
The deciders are netspec.py and mountspec.py; the drivers are networking.py and
orch.node.runtime.volumes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from orch.errors import InvalidArgument, NotFound
from orch.node.agent.mountspec import compute_mount_plan, compute_mounts_view, volumes_in
from orch.node.agent.netspec import compute_net_plan
from orch.node.runtime.mount import Mount


@dataclass
class Prepared:
    net: dict  # the network plan (record key _net)
    mounts_plan: list[dict]  # the mount entries, anonymous volumes named (the record's orch.mounts)
    drop_namespaces: tuple[str, ...]
    netns_path: str | None
    mounts: tuple[Mount, ...]  # for ContainerConfig.mounts
    rootfs_mounts: tuple[Mount, ...]  # the store's, with the init layer on top (see with_init_layer)
    joined: dict | None  # the record whose network namespace a container: mode joins
    hostname: str | None = None  # the joined container's: docker copies it (Config.Hostname)


def _field(req, name, default):
    return getattr(req, name, default) or default


def prepare_create(node, cid: str, req, image, rootfs_mounts) -> Prepared:
    """Check the request's network and mount fields, create and fill its volumes, and return
    what the container's config and record need. Runs in the agent's worker thread."""
    inner = image.config.get("config") or {}
    net = compute_net_plan(
        network_mode=_field(req, "network_mode", None) or _field(req, "network", None),
        networks=[n.model_dump() for n in _field(req, "networks", [])],
        ports=[p.model_dump() for p in _field(req, "ports", [])], publish_all=_field(req, "publish_all", False),
        exposed=inner.get("ExposedPorts") or {}, dns=_field(req, "dns", []), dns_search=_field(req, "dns_search", []),
        extra_hosts=_field(req, "extra_hosts", []), hostname=_field(req, "hostname", None))
    joined = None
    if net["mode"] == "container":
        joined = node.get(net["container"])
        # A container that itself shares another's namespace: the namespace is that other's.
        while (joined.orch.net or {}).get("mode") == "container" and joined.orch.net["container"] in node.records:
            joined = node.records[joined.orch.net["container"]]
        net["container"] = joined["Id"]
    volumes_from = []
    for spec in _field(req, "volumes_from", []):
        other = node.get(spec.partition(":")[0])
        volumes_from.append((spec, other.orch.mounts))
    entries = compute_mount_plan([m.model_dump() for m in _field(req, "mounts", [])],
                                 image_volumes=inner.get("Volumes") or {}, volumes_from=volumes_from)
    layers = _image_layers(rootfs_mounts)
    mounts = []
    for e in entries:
        if e["type"] == "volume":
            meta = node.volumes.create(e["source"] or None, anonymous=e["anonymous"])
            e["source"] = meta["Name"]
            if not e["nocopy"]:
                node.volumes.prefill(e["source"], layers, e["target"])
            mounts.append(Mount("bind", str(node.volumes.data_path(e["source"])), e["target"], ("ro",) if e["read_only"] else ()))
        elif e["type"] == "bind":
            if not os.path.exists(e["source"]):
                raise InvalidArgument(f"bind source path does not exist: {e['source']} (for {e['target']}); create it first")
            mounts.append(Mount("bind", e["source"], e["target"], ("ro",) if e["read_only"] else ()))
        else:
            options = ("nosuid", "nodev") + ((f"size={e['tmpfs_size']}",) if e["tmpfs_size"] else ()) + (("ro",) if e["read_only"] else ())
            mounts.append(Mount("tmpfs", "tmpfs", e["target"], options))
    drop, netns_path, files = node.net.config_parts(net, cid, node.store.path(cid), joined)
    # The /etc files first: a user's bind over /etc/hosts must win, so theirs comes later.
    return Prepared(net, entries, drop, netns_path, files + tuple(mounts), with_init_layer(rootfs_mounts, init_layer(node.root)), joined,
                    hostname=joined["Config"]["Hostname"] if joined else None)


INIT_FILES = ("etc/hosts", "etc/hostname", "etc/resolv.conf")


def init_layer(root: Path) -> Path:
    """The node's init layer directory, made once: its files are empty and it is a read-only
    lower layer, so every container can share the one copy (docker makes one per container)."""
    init = root / "init-layer"
    if not (init / INIT_FILES[-1]).exists():
        for rel in INIT_FILES:
            path = init / rel
            path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            path.touch(mode=0o644)
    return init


def with_init_layer(rootfs_mounts, init: Path) -> tuple[Mount, ...]:
    """Docker's init layer: empty /etc/hosts, /etc/hostname and /etc/resolv.conf in a read-only
    layer between the image and the container's upper dir. The bind mounts of the real files
    then land on files that exist, so the kernel never creates them in the upper dir, and
    `orch diff` and `orch commit` do not see them (an image without /etc/hostname stays so)."""
    out = []
    for m in rootfs_mounts:
        if m.type == "overlay" and any(o.startswith("lowerdir=") for o in m.options):
            m = Mount(m.type, m.source, m.target, tuple(f"lowerdir={init}:{o[len('lowerdir='):]}" if o.startswith("lowerdir=") else o
                                                          for o in m.options))
        out.append(m)
    return tuple(out)


def undo_volumes(node, prep: Prepared) -> None:
    """A create that failed after its volumes were made: its anonymous volumes go (named ones
    stay, as docker keeps a volume a failed `run -v name:/x` created)."""
    for e in prep.mounts_plan:
        if e["type"] == "volume" and e["anonymous"] and e["source"]:
            node.volumes.remove(e["source"], force=True)


def _image_layers(rootfs_mounts) -> list[str]:
    from orch.node.runtime.kernel import split_overlay_options

    for m in rootfs_mounts:
        if m.type == "overlay":
            return split_overlay_options(m.options)[0]
    return []


def record_fields(prep: Prepared, req) -> tuple[dict, dict]:
    """(HostConfig additions in docker's inspect names, the record's private plans: net, mounts)."""
    net = prep.net
    mode = {"bridge": net["networks"][0]["name"] if net["networks"] else "bridge", "none": "none", "host": "host",
            "container": f"container:{net['container']}"}[net["mode"]]
    ports: dict[str, list] = {}
    for p in net["ports"]:
        ports.setdefault(f"{p['container_port']}/{p['proto']}", []).append(
            {"HostIp": p["host_ip"], "HostPort": str(p["host_port"]) if p["host_port"] else ""})
    host = {"NetworkMode": mode, "PortBindings": ports, "PublishAllPorts": bool(getattr(req, "publish_all", False)),
            "Dns": list(net["dns"]), "DnsSearch": list(net["dns_search"]),
            "ExtraHosts": [f"{n}:{ip}" for n, ip in net["extra_hosts"]],
            "VolumesFrom": list(getattr(req, "volumes_from", None) or [])}
    return host, {"net": net, "mounts": prep.mounts_plan}


def mounts_view(node, rec: dict) -> list[dict]:
    entries = rec.orch.mounts
    return compute_mounts_view(entries, {n: str(node.volumes.data_path(n)) for n in volumes_in(entries)})


def setup_network(node, rec: dict, joined: dict | None = None) -> None:
    """Before a container's process starts (create, start): its namespace, endpoints, files."""
    if node.net is None or rec.orch.net is None:
        return
    if rec.orch.net["mode"] == "container" and joined is None:
        joined = node.records.get(rec.orch.net["container"])
        if joined is None:
            raise NotFound(f"cannot join the network of container {rec.orch.net['container'][:12]}: it was removed")
    node.net.setup(rec, joined)


def release_network(node, cid: str) -> None:
    if node.net is not None:
        node.net.release(cid)


def volume_users(node, name: str) -> list[str]:
    return sorted(node.display(r) for r in node.records.values() if name in volumes_in(r.orch.mounts))


def anonymous_volumes(node, rec: dict) -> list[str]:
    """What `rm -v` (and `run --rm`) removes: the container's anonymous volumes that no other
    container uses. Called in the agent's trio thread, after the record left node.records."""
    if node.volumes is None:
        return []
    return [e["source"] for e in rec.orch.mounts
            if e["type"] == "volume" and e.get("anonymous") and not volume_users(node, e["source"])]
