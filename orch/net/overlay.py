"""Overlay networks on one node, as values: what the cluster says, and what the kernel must hold.

Pure. The node's worker hands `Networks.set_cluster` a `ClusterView` (made from the entries of
its assignments: the overlay networks this node needs, every endpoint on them, the services
with their virtual IPs and published ports, the nodes' underlay addresses); this module turns
it into what the driver programs:

- `compute_fabric`: per overlay network, the VXLAN device's forwarding entries (each remote
  MAC -> the underlay address of its node, no flooding: no all-zeros entry, so nothing is ever
  sent to every node, and `nolearning`) and neighbour entries (each remote address -> its MAC,
  which the VXLAN device's ARP proxy answers locally); for the ingress network also the routes
  and the return path of the routing mesh (below).
- `compute_mesh`: the published ports of the routing mesh, with the addresses that serve them.
- `compute_lb_ruleset`: the nftables table inside a container's namespace that sends its
  connections to a virtual IP to one of the service's serving tasks.
- `compute_cluster_names`: what the node's DNS answers for services on overlay networks.

Addresses and MACs. A task's MAC is 02:42 and its IPv4 address (docker's rule), so every node
computes every peer's MAC from the address it was told. A node's bridge on an overlay network
has the MAC 02:4e and the node's underlay address: unique per node with no allocation, and
known to every other node. The bridge holds the network's gateway address on every node (an
anycast gateway): a container's ARP for it is answered by its own node's bridge, because
ARP requests never cross the VXLAN device (its proxy answers from the neighbour table, which
holds only remote tasks, and drops the rest).

The routing mesh (ingress network). A connection to a published port on any node (A) is
DNATed to a serving task's ingress address, without SNAT, so the task sees the client. A task
on another node (B) is reached by a route `T/32 via B dev <ingress bridge> onlink` (B's
"address" there is its underlay address, with a permanent neighbour entry pointing at B's
bridge MAC), so B routes the packet to the task and its connection tracking sees it. B marks
the connection with A's underlay address (`ct mark`, chosen by the frame's source MAC, which is
A's bridge MAC), and the task's replies, which come back through B (the task routes replies
from its ingress address through its ingress gateway), carry that mark into policy routing:
`fwmark A iif <bridge> lookup A`, a table whose default route goes back to A over the
overlay. A un-DNATs and answers the client. The `iif` matters: without it the VXLAN device's
own encapsulated packet, which inherits the mark, would be routed into the bridge again.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

INGRESS = "ingress"
VXLAN_PORT = 4789
VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
# `ip rule` priority of the mesh's return rules: every rule with it is orch's.
RULE_PRIORITY = 4789
# Routes orch programs carry this protocol number (rtnetlink's rtm_protocol), so a restart can
# tell them from anyone else's and remove those that should no longer be there.
ROUTE_PROTO = 0x4F


def task_mac(address: str) -> str:
    """docker's MAC for a container address: 02:42 and the four bytes of the address."""
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(address).packed)


def node_mac(underlay: str) -> str:
    """A node's bridge MAC on every overlay network: 02:4e and its underlay address."""
    return "02:4e:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(underlay).packed)


def node_mark(underlay: str) -> int:
    """The connection mark (and routing table) of mesh traffic that came from this node."""
    return int(ipaddress.IPv4Address(underlay))


def vxlan_name(prefix: str, vni: int) -> str:
    return f"{prefix}v{vni:x}"[:15]


@dataclass(frozen=True)
class OverlaySpec:
    """An overlay network as the cluster allocated it."""

    id: str
    name: str
    vni: int
    subnet: str
    gateway: str
    internal: bool = False
    ingress: bool = False


@dataclass(frozen=True)
class Peer:
    """A task's address on an overlay network, and where it runs."""

    network: str  # the cluster network's id
    task: str
    service: str
    address: str
    vtep: str  # the underlay address of its node
    serving: bool  # running, healthy (or without a healthcheck), not told to stop

    @property
    def mac(self) -> str:
        return task_mac(self.address)


@dataclass(frozen=True)
class ServiceNet:
    network: str  # the cluster network's id
    vip: str = ""  # empty in dnsrr mode
    names: tuple[str, ...] = ()  # the service's name and its aliases on this network


@dataclass(frozen=True)
class MeshPort:
    protocol: str
    published: int
    target: int


@dataclass(frozen=True)
class ServiceView:
    id: str
    name: str
    mode: str = "vip"  # or "dnsrr"
    networks: tuple[ServiceNet, ...] = ()
    ports: tuple[MeshPort, ...] = ()  # published in ingress mode


@dataclass(frozen=True)
class ClusterView:
    """What this node knows of the cluster's overlay networks (from its assignments)."""

    vtep: str = ""  # this node's underlay address
    networks: tuple[OverlaySpec, ...] = ()  # the overlay networks this node needs
    peers: tuple[Peer, ...] = ()
    services: tuple[ServiceView, ...] = ()
    nodes: tuple[str, ...] = ()  # the underlay addresses of the cluster's nodes (the mesh's origins)

    def network(self, cluster_id: str) -> OverlaySpec | None:
        return next((n for n in self.networks if n.id == cluster_id), None)

    def ingress(self) -> OverlaySpec | None:
        return next((n for n in self.networks if n.ingress), None)

    def to_json(self) -> dict:
        return {
            "vtep": self.vtep,
            "networks": [vars(n) for n in self.networks],
            "peers": [vars(p) for p in self.peers],
            "services": [{"id": s.id, "name": s.name, "mode": s.mode,
                          "networks": [{"network": n.network, "vip": n.vip, "names": list(n.names)} for n in s.networks],
                          "ports": [vars(p) for p in s.ports]} for s in self.services],
            "nodes": list(self.nodes),
        }

    @classmethod
    def from_json(cls, data: dict) -> "ClusterView":
        return cls(
            data.get("vtep", ""),
            tuple(OverlaySpec(**n) for n in data.get("networks", ())),
            tuple(Peer(**p) for p in data.get("peers", ())),
            tuple(ServiceView(s["id"], s["name"], s.get("mode", "vip"),
                              tuple(ServiceNet(n["network"], n.get("vip", ""), tuple(n.get("names", ()))) for n in s.get("networks", ())),
                              tuple(MeshPort(**p) for p in s.get("ports", ()))) for s in data.get("services", ())),
            tuple(data.get("nodes", ())),
        )


def compute_view(entries: list[dict], vtep: str) -> ClusterView:
    """The view from a worker's assignment entries (orch.cluster.netview's shapes: kind network,
    endpoint, service or node). Entries of unknown kinds are left out (a newer manager)."""
    networks, peers, services, nodes = [], [], [], []
    for e in sorted(entries, key=lambda e: e["id"]):
        kind = e.get("kind")
        if kind == "network":
            networks.append(OverlaySpec(e["network_id"], e["name"], int(e["vni"]), e["subnet"], e["gateway"],
                                        bool(e.get("internal")), bool(e.get("ingress"))))
        elif kind == "endpoint":
            peers.append(Peer(e["network_id"], e["task_id"], e.get("service_id", ""), e["address"], e["vtep"],
                              bool(e.get("serving"))))
        elif kind == "service":
            services.append(ServiceView(
                e["service_id"], e["name"], e.get("mode", "vip"),
                tuple(ServiceNet(n["network_id"], n.get("vip", ""), tuple(n.get("names", ()))) for n in e.get("networks", ())),
                tuple(MeshPort(p.get("protocol", "tcp"), int(p["published_port"]), int(p["target_port"])) for p in e.get("ports", ()))))
        elif kind == "node":
            nodes.append(e["vtep"])
    return ClusterView(vtep, tuple(networks), tuple(peers), tuple(services), tuple(sorted(set(nodes))))


# -- the fabric ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fabric:
    """What one overlay network needs in the kernel of this node."""

    fdb: frozenset[tuple[str, str]] = frozenset()  # on the VXLAN device: (MAC, remote underlay address)
    neigh: frozenset[tuple[str, str]] = frozenset()  # on the VXLAN device: (address, MAC), answered by its ARP proxy
    # The mesh (ingress only): on the bridge, neighbour entries of the other nodes' "addresses"
    # (their underlay addresses, pointing at their bridge MACs), routes to remote tasks through
    # their nodes, and the return path to each node that can send mesh traffic here.
    node_neigh: frozenset[tuple[str, str]] = frozenset()
    routes: frozenset[tuple[str, str]] = frozenset()  # (task address, its node's underlay address)
    returns: frozenset[str] = frozenset()  # underlay addresses of the nodes to route replies back to


def compute_fabric(view: ClusterView, cluster_id: str) -> Fabric:
    """The fabric of one overlay network on this node: only remote things are programmed (a
    local container is on the bridge itself). Peers with no address, or on a node the view
    does not place (no vtep), are left out."""
    net = view.network(cluster_id)
    if net is None or not view.vtep:
        return Fabric()
    remote = [p for p in view.peers if p.network == cluster_id and p.vtep and p.vtep != view.vtep and p.address]
    fdb = {(p.mac, p.vtep) for p in remote}
    neigh = {(p.address, p.mac) for p in remote}
    if not net.ingress:
        return Fabric(frozenset(fdb), frozenset(neigh))
    others = {v for v in view.nodes if v != view.vtep} | {p.vtep for p in remote}
    fdb |= {(node_mac(v), v) for v in others}
    return Fabric(frozenset(fdb), frozenset(neigh), frozenset((v, node_mac(v)) for v in others),
                  frozenset((p.address, p.vtep) for p in remote), frozenset(others))


# -- the routing mesh -----------------------------------------------------------------------------

@dataclass(frozen=True)
class MeshRule:
    protocol: str
    published: int
    target: int
    backends: tuple[str, ...]  # ingress addresses of the serving tasks, in a stable order


@dataclass(frozen=True)
class Mesh:
    """The routing mesh on this node: empty when no service publishes a port in ingress mode or
    the ingress network is not here."""

    bridge: str = ""
    vtep: str = ""
    gateway: str = ""  # the ingress network's gateway (its bridge's address on every node)
    rules: tuple[MeshRule, ...] = ()
    origins: tuple[str, ...] = ()  # underlay addresses of the other nodes (connection marks)


def compute_mesh(view: ClusterView, ingress_bridge: str | None) -> Mesh:
    ingress = view.ingress()
    if ingress is None or not ingress_bridge or not view.vtep:
        return Mesh()
    rules = []
    for s in sorted(view.services, key=lambda s: s.name):
        backends = tuple(sorted((p.address for p in view.peers if p.service == s.id and p.network == ingress.id and p.serving),
                                key=lambda a: ipaddress.IPv4Address(a)))
        for port in s.ports:
            rules.append(MeshRule(port.protocol, port.published, port.target, backends))
    origins = tuple(sorted({v for v in view.nodes if v != view.vtep} | {p.vtep for p in view.peers if p.vtep and p.vtep != view.vtep}))
    return Mesh(ingress_bridge, view.vtep, ingress.gateway, tuple(sorted(rules, key=lambda r: (r.protocol, r.published))), origins)


def mesh_ports(view: ClusterView) -> list[tuple[str, int]]:
    """(protocol, port) of every port the mesh publishes on this node (held like published ports)."""
    if view.ingress() is None:
        return []
    return sorted({(p.protocol, p.published) for s in view.services for p in s.ports})


# -- load balancing inside a container's namespace -----------------------------------------------

def compute_vips(view: ClusterView, cluster_ids: set[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(VIP, serving backends) of every service in vip mode on the given networks (the
    container's), backends on the VIP's own network."""
    out = []
    for s in view.services:
        if s.mode != "vip":
            continue
        for n in s.networks:
            if n.network in cluster_ids and n.vip:
                backends = tuple(sorted((p.address for p in view.peers if p.service == s.id and p.network == n.network and p.serving),
                                        key=lambda a: ipaddress.IPv4Address(a)))
                out.append((n.vip, backends))
    return sorted(out, key=lambda item: ipaddress.IPv4Address(item[0]))


def compute_lb_ruleset(vips: list[tuple[str, tuple[str, ...]]], *, table: str = "orch") -> str | None:
    """The nftables table of a container's namespace for its VIPs; None when it has none.

    A new connection to a VIP is DNATed, in the container's own output path, to one of the
    service's serving tasks in turn (numgen inc: round-robin per client, as IPVS's default);
    the port is kept (a VIP forwards every port, as docker's does). The client's namespace does
    the NAT, so its connection tracking un-NATs the replies, which come straight from the task
    on the overlay: no SNAT, no hairpin through a node, and the task sees the client's address.
    A VIP with no serving task refuses at once (ICMP port unreachable: ECONNREFUSED) instead of
    sending into the void."""
    if not vips:
        return None
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{",
             "\tchain output {", "\t\ttype nat hook output priority -100; policy accept;"]
    empty = []
    for vip, backends in vips:
        if backends:
            pairs = ", ".join(f"{i} : {a}" for i, a in enumerate(backends))
            lines.append(f"\t\tip daddr {vip} dnat to numgen inc mod {len(backends)} map {{ {pairs} }}")
        else:
            empty.append(vip)
    lines.append("\t}")
    if empty:
        lines += ["\tchain refuse {", "\t\ttype filter hook output priority filter; policy accept;",
                  f"\t\tip daddr {{ {', '.join(empty)} }} reject", "\t}"]
    lines.append("}")
    return "\n".join(lines) + "\n"


# -- names ------------------------------------------------------------------------------------------

def compute_cluster_names(view: ClusterView, local_names: dict[str, str]) -> dict[str, dict[str, tuple[str, ...]]]:
    """network (local name) -> DNS name -> addresses, for services on overlay networks.

    `local_names` maps a cluster network id to its name on this node. A service answers with
    its VIP (vip mode) or its serving tasks' addresses (dnsrr), under its name and its aliases
    on that network (a stack's short names); `tasks.NAME` answers every serving task's address.
    Nothing is named on the ingress network (docker's rule: it carries only the mesh)."""
    ingress = view.ingress()
    out: dict[str, dict[str, tuple[str, ...]]] = {}
    for s in view.services:
        for n in s.networks:
            local = local_names.get(n.network)
            if local is None or (ingress is not None and n.network == ingress.id):
                continue
            tasks = tuple(sorted((p.address for p in view.peers if p.service == s.id and p.network == n.network and p.serving),
                                 key=lambda a: ipaddress.IPv4Address(a)))
            answer = (n.vip,) if s.mode == "vip" and n.vip else tasks
            table = out.setdefault(local, {})
            for name in dict.fromkeys(x.lower() for x in (s.name, *n.names)):
                table[name] = answer
                table["tasks." + name] = tasks
    return out
