"""Published ports and the node's packet filter, as data.

Pure: `parse_publish` reads a `-p` value, `compute_ruleset` turns the node's networks and
published ports into the text of one nftables table that `nft -f -` loads atomically (the thin
driver is `orch.net.firewall`). orch owns that table entirely and rewrites it whole on every
change, so a crash between two changes can never leave half of a rule set behind.

Why nftables DNAT and no userland proxy: see orch/net/README.md. In short, the kernel forwards
without a process per port and keeps the client's source address; loopback is covered by an
output-hook DNAT plus `route_localnet` on the bridge, and hairpin by masquerade.
"""

from __future__ import annotations

import ipaddress

from orch.errors import InvalidArgument
from orch.net.model import Network, PortMapping, Publication
from orch.net.overlay import VXLAN_PORT, Mesh, node_mac, node_mark

PROTOS = ("tcp", "udp")


def _port_range(text: str, spec: str) -> range:
    lo, sep, hi = text.partition("-")
    try:
        first, last = int(lo), int(hi) if sep else int(lo)
    except ValueError:
        raise InvalidArgument(f"invalid port {text!r} in published port {spec!r}: give a number or a range like 8000-8010") from None
    if not (1 <= first <= last <= 65535):
        raise InvalidArgument(f"invalid port {text!r} in published port {spec!r}: ports go from 1 to 65535, low to high")
    return range(first, last + 1)


def parse_publish(spec: str) -> list[PortMapping]:
    """`[IP:][HOST:]CONTAINER[/tcp|/udp]`, with ranges (`8000-8001:80-81`), as docker's -p.

    Without HOST the port goes to a free host port (0 here). A HOST range with a single
    CONTAINER port is refused (docker picks one port of the range; orch keeps it explicit).
    """
    body, _, proto = spec.partition("/")
    proto = proto or "tcp"
    if proto not in PROTOS:
        raise InvalidArgument(f"invalid protocol {proto!r} in published port {spec!r}: use tcp or udp")
    host_ip = ""
    if body.startswith("["):
        raise InvalidArgument(f"published port {spec!r}: IPv6 host addresses are not supported")
    parts = body.split(":")
    if len(parts) == 3:
        host_ip, host, container = parts
        if host_ip:
            try:
                ipaddress.IPv4Address(host_ip)
            except ValueError:
                raise InvalidArgument(f"invalid host address {host_ip!r} in published port {spec!r}") from None
    elif len(parts) == 2:
        host, container = parts
    elif len(parts) == 1:
        host, container = "", parts[0]
    else:
        raise InvalidArgument(f"invalid published port {spec!r}: use [IP:]HOST:CONTAINER[/PROTO]")
    if host_ip == "0.0.0.0":
        host_ip = ""
    containers = _port_range(container, spec)
    if not host:
        return [PortMapping(c, 0, proto, host_ip) for c in containers]
    hosts = _port_range(host, spec)
    if len(hosts) != len(containers):
        raise InvalidArgument(f"published port {spec!r}: host range and container range differ in length")
    return [PortMapping(c, h, proto, host_ip) for h, c in zip(hosts, containers)]


def _q(name: str) -> str:
    return f'"{name}"'


# Per container (source address): far above what a program's resolver asks (a busy crawler
# asks tens a second), far below what the agent answers (thousands a second).
DNS_UDP_RATE = 500
DNS_TCP_RATE = 50


def compute_ruleset(networks: list[Network], publications: list[Publication], *, table: str = "orch",
                    mesh: Mesh = Mesh(), vtep: str = "") -> str:
    """The whole `ip <table>` nftables table, as `nft -f` input that replaces it atomically.

    Chains:
    - prerouting/output (nat): packets to any local address on a published port are DNATed to
      the container. The output hook catches the host's own connections, 127.0.0.1 included.
    - postrouting (nat): masquerade what leaves a non-internal network for elsewhere (egress);
      masquerade what enters a bridge from 127.0.0.0/8 (loopback publish: the container must
      answer the gateway, not its own loopback) and DNATed traffic from the bridge's own subnet
      (hairpin: the reply must come back through the host to be un-NATed).
    - forward (filter): internal bridges pass nothing in or out; published ports are open to
      all; into any other bridge only replies to its own containers' connections pass, which
      isolates networks from each other and from the outside.
    - input (filter): queries to the embedded DNS are limited per source address in the kernel
      (DNS_UDP_RATE datagrams and DNS_TCP_RATE new connections a second, each with as much
      burst), before they reach the agent's socket: a container that floods it fills its own
      budget, not the socket's receive buffer that its neighbours' queries share.
    - the routing mesh (orch.net.overlay explains it): its published ports DNAT to a serving
      task's ingress address like a published port, without SNAT; `mesh_mark` (prerouting,
      before routing) marks a connection that another node sent here over the ingress network
      with that node's underlay address, and copies the mark onto the replies, which policy
      routing sends back to that node; in postrouting, a connection this node's mesh DNATed
      leaves for the ingress network with the node's underlay address when it came from the
      node itself (its gateway address is every node's, and a reply to 127.0.0.1 could not
      come back) or from another node's own underlay address (a container there, masqueraded:
      were the task on that node, the reply would be that node's local traffic and never come
      back here to be un-NATed); nothing else is NATed there: a client's address reaches the
      task.
    - forward (filter) starts by accepting what a bridge forwards between its own ports
      (bridged traffic between containers, or between a container and an overlay's VXLAN
      device, reaches this hook through br_netfilter): no rule below drops it, and one set
      lookup per packet is cheaper than two interface-name matches per network.
    - vxlan_in/vxlan_out (raw, before connection tracking): with `vtep` (the node's underlay
      address, given when it has overlay networks) the VXLAN packets it receives and sends
      are not tracked. Nothing NATs or filters them by state, a flow of them never ends (the
      source port follows the inner flow's hash), and tracking each one cost the overlay
      about 1.5% of its throughput here (bench/overlay.py); the frames inside are tracked as
      usual once decapsulated, which is what the drain and the routing mesh read.
    """
    lines = [f"table ip {table}", f"delete table ip {table}", f"table ip {table} {{"]
    lines += ["\tset dns_udp { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 10s; }",
              "\tset dns_tcp { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 10s; }"]
    lines += ["\tchain input {", "\t\ttype filter hook input priority filter; policy accept;"]
    for net in networks:
        br = _q(net.bridge)
        lines.append(f"\t\tiifname {br} udp dport 53 update @dns_udp "
                     f"{{ ip saddr limit rate over {DNS_UDP_RATE}/second burst {DNS_UDP_RATE} packets }} drop")
        lines.append(f"\t\tiifname {br} tcp dport 53 ct state new update @dns_tcp "
                     f"{{ ip saddr limit rate over {DNS_TCP_RATE}/second burst {DNS_TCP_RATE} packets }} drop")
    lines.append("\t}")

    if vtep:
        lines += ["\tchain vxlan_in {", "\t\ttype filter hook prerouting priority raw; policy accept;",
                  f"\t\tip daddr {vtep} udp dport {VXLAN_PORT} notrack", "\t}"]
        lines += ["\tchain vxlan_out {", "\t\ttype filter hook output priority raw; policy accept;",
                  f"\t\tip saddr {vtep} udp dport {VXLAN_PORT} notrack", "\t}"]

    if mesh.bridge and mesh.origins:
        br = _q(mesh.bridge)
        marks = ", ".join(f"{node_mac(v)} : {node_mark(v):#010x}" for v in mesh.origins)
        lines += ["\tchain mesh_mark {", "\t\ttype filter hook prerouting priority mangle; policy accept;",
                  f"\t\tiifname {br} ct state new ct mark set ether saddr map {{ {marks} }}",
                  f"\t\tiifname {br} ct direction reply ct mark != 0 meta mark set ct mark", "\t}"]

    lines += ["\tchain prerouting {", "\t\ttype nat hook prerouting priority dstnat; policy accept;",
              "\t\tfib daddr type local jump publish", "\t}"]
    lines += ["\tchain output {", "\t\ttype nat hook output priority -100; policy accept;",
              "\t\tfib daddr type local jump publish", "\t}"]

    lines.append("\tchain publish {")
    for pub in sorted(publications, key=lambda p: (p.mapping.proto, p.mapping.host_port, p.mapping.host_ip)):
        m = pub.mapping
        match = f"ip daddr {m.host_ip} " if m.host_ip else ""
        lines.append(f"\t\t{match}{m.proto} dport {m.host_port} dnat to {pub.address}:{m.container_port}")
    for rule in mesh.rules:
        if rule.backends:
            pairs = ", ".join(f"{i} : {a}" for i, a in enumerate(rule.backends))
            lines.append(f"\t\t{rule.protocol} dport {rule.published} dnat to numgen inc mod {len(rule.backends)} "
                         f"map {{ {pairs} }} : {rule.target}")
    lines.append("\t}")

    lines += ["\tchain postrouting {", "\t\ttype nat hook postrouting priority srcnat; policy accept;"]
    if mesh.bridge:
        br = _q(mesh.bridge)
        sources = ", ".join(["127.0.0.0/8", mesh.gateway, *mesh.origins])
        lines.append(f"\t\toifname {br} ct status dnat ip saddr {{ {sources} }} snat ip to {mesh.vtep}")
        lines.append(f"\t\toifname {br} return")
    for net in networks:
        br = _q(net.bridge)
        lines.append(f"\t\toifname {br} ip saddr 127.0.0.0/8 masquerade")
        lines.append(f"\t\toifname {br} ip saddr {net.subnet} ct status dnat masquerade")
        if not net.internal:
            lines.append(f"\t\tip saddr {net.subnet} oifname != {br} masquerade")
    lines.append("\t}")

    lines += ["\tchain forward {", "\t\ttype filter hook forward priority filter; policy accept;"]
    if networks:
        pairs = ", ".join(f"{_q(n.bridge)} . {_q(n.bridge)}" for n in networks)
        lines.append(f"\t\tiifname . oifname {{ {pairs} }} accept")
    for net in networks:
        if net.internal:
            br = _q(net.bridge)
            lines.append(f"\t\tiifname {br} oifname != {br} drop")
            lines.append(f"\t\toifname {br} iifname != {br} drop")
    lines.append("\t\tct status dnat accept")
    for net in networks:
        if not net.internal:
            br = _q(net.bridge)
            lines.append(f"\t\toifname {br} iifname != {br} ct state established,related accept")
            lines.append(f"\t\toifname {br} iifname != {br} drop")
    lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


def compute_delete(table: str = "orch") -> str:
    """`nft -f` input that removes the table if it exists (creating it first makes it idempotent)."""
    return f"table ip {table}\ndelete table ip {table}\n"
