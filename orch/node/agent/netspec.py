"""A container's networking as docker's flags ask for it, and how `ps` and `inspect` show it.

Pure: `compute_net_plan` turns the create request's network fields (network_mode, networks,
ports, publish_all, dns, dns_search, extra_hosts) and the image's ExposedPorts into a plan
(plain JSON, kept in the container's record as `_net`), checking everything a user can get
wrong before anything is made. `compute_ports_text`, `compute_port_bindings` and
`compute_network_settings` render the live state (orch.net values) in docker's shapes.
The driver that carries a plan out is orch/node/agent/networking.py.
"""

from __future__ import annotations

import ipaddress

from orch.errors import InvalidArgument
from orch.net.model import Endpoint, Network, PortMapping, Publication
from orch.net.ports import parse_publish

DEFAULT_NETWORK = "bridge"
# Modes that are not a network's name. "default" is docker's other spelling of "bridge".
SPECIAL_MODES = ("none", "host")


def compute_net_plan(*, network_mode: str | None, networks: list[dict] = (), ports: list[dict] = (),
                     publish_all: bool = False, exposed: dict | None = None, dns: list[str] = (),
                     dns_search: list[str] = (), extra_hosts: list[str] = (), hostname: str | None = None) -> dict:
    """{"mode", "container", "networks": [{name, aliases, ipv4_address}], "ports": [PortMapping
    json], "dns", "dns_search", "extra_hosts": [[name, ip]]}.

    mode is "bridge" (connected to `networks`, the first one primary), "none" (a namespace with
    only lo), "host" (no namespace of its own) or "container" (join `container`'s namespace:
    its addresses, its ports on localhost, its /etc files and, as docker gives it, its
    hostname; no endpoint or DNS name of its own).
    """
    extra = [_network_entry(n) for n in networks]
    # No mode but networks (a stack's service): the first network is the primary one, and the
    # container is not also put on the default bridge, as compose does.
    mode = (network_mode or (extra[0]["name"] if extra else DEFAULT_NETWORK)).strip()
    if mode == "default":
        mode = DEFAULT_NETWORK
    joined = ""
    if mode.startswith("container:"):
        joined = mode[len("container:"):]
        if not joined:
            raise InvalidArgument("--network container: needs a container name or id, e.g. container:web")
        kind, attached = "container", []
    elif mode in SPECIAL_MODES:
        kind, attached = mode, []
    else:
        kind = "bridge"
        first = next((e for e in extra if e["name"] == mode), None)
        attached = [first or {"name": mode, "aliases": [], "ipv4_address": None}]
        attached += [e for e in extra if e is not first]
    if kind != "bridge" and extra:
        raise InvalidArgument(f"container cannot be connected to other networks with network mode {mode!r}; "
                              "drop the extra networks or use a bridge network")
    seen = set()
    for entry in attached:
        if entry["name"] in seen:
            raise InvalidArgument(f"network {entry['name']!r} is given twice for one container")
        seen.add(entry["name"])
    mappings = _mappings(ports, publish_all, exposed or {})
    if mappings and kind in ("none", "container"):
        raise InvalidArgument(f"published ports need a network of the container's own; network mode {mode!r} has none "
                              "(drop -p/-P or use a bridge network)")
    if kind == "host":
        mappings = []  # docker discards published ports with host networking: every port is the host's
    if kind == "container" and hostname:
        raise InvalidArgument("--hostname cannot be used with --network container:NAME: the container takes the other one's "
                              "hostname; drop --hostname")
    if kind == "container" and (dns or dns_search or extra_hosts):
        raise InvalidArgument("--dns, --dns-search and --add-host cannot be used with --network container:NAME: "
                              "the container shares the other one's files")
    return {
        "mode": kind, "container": joined, "networks": attached, "ports": [m.to_json() for m in mappings],
        "dns": [_address(d, "--dns") for d in dns], "dns_search": list(dns_search),
        "extra_hosts": [list(_extra_host(h)) for h in extra_hosts],
    }


def _network_entry(entry: dict) -> dict:
    name = (entry.get("name") or "").strip()
    if not name or name in SPECIAL_MODES or name.startswith("container:"):
        raise InvalidArgument(f"invalid extra network {name!r}: give the name of a network made with 'orch network create'")
    ip = entry.get("ipv4_address") or None
    if ip is not None:
        _address(ip, "--ip")
    return {"name": name, "aliases": [str(a) for a in entry.get("aliases") or ()], "ipv4_address": ip}


def _address(text: str, flag: str) -> str:
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise InvalidArgument(f"invalid {flag} address {text!r}: give an IPv4 address such as 10.89.0.5") from None


def _extra_host(text: str) -> tuple[str, str]:
    name, sep, ip = text.partition(":")
    if not sep or not name or not ip:
        raise InvalidArgument(f"invalid --add-host {text!r}: use NAME:IP, e.g. db.local:10.0.0.5")
    return name, _address(ip, "--add-host")


def _mappings(ports: list[dict], publish_all: bool, exposed: dict) -> list[PortMapping]:
    out: list[PortMapping] = []
    for p in ports:
        container = str(p.get("container_port") or "").strip()
        if not container:
            raise InvalidArgument(f"published port {p!r} has no container port; use -p [IP:][HOST:]CONTAINER[/PROTO]")
        spec = f"{p.get('host_ip') or ''}:{p.get('host_port') or ''}:{container}/{p.get('protocol') or 'tcp'}"
        out += parse_publish(spec)
    if publish_all:
        done = {(m.container_port, m.proto) for m in out}
        for key in sorted(exposed):
            port, _, proto = key.partition("/")
            for m in parse_publish(f"{port}/{proto or 'tcp'}"):
                if (m.container_port, m.proto) not in done:
                    out.append(m)
    fixed = [(m.proto, m.host_ip, m.host_port) for m in out if m.host_port]
    if len(fixed) != len(set(fixed)):
        raise InvalidArgument("the same host port is published twice; give each -p its own host port")
    return out


# -- views -------------------------------------------------------------------------------------
def compute_ports_text(publications: list[Publication]) -> str:
    """docker ps's PORTS column: "0.0.0.0:8080->80/tcp, 127.0.0.1:5353->53/udp"."""
    items = sorted(publications, key=lambda p: (p.mapping.container_port, p.mapping.proto, p.mapping.host_ip, p.mapping.host_port))
    return ", ".join(f"{p.mapping.host_ip or '0.0.0.0'}:{p.mapping.host_port}->{p.mapping.container_port}/{p.mapping.proto}"
                     for p in items)


def compute_port_bindings(plan: dict, publications: list[Publication]) -> dict:
    """NetworkSettings.Ports: {"80/tcp": [{"HostIp", "HostPort"}]}; requested but not (yet)
    published ports show null, as docker shows a stopped container's."""
    ports: dict[str, list | None] = {}
    for m in (PortMapping.from_json(j) for j in plan.get("ports", ())):
        ports.setdefault(f"{m.container_port}/{m.proto}", None)
    for p in sorted(publications, key=lambda p: (p.mapping.host_ip, p.mapping.host_port)):
        key = f"{p.mapping.container_port}/{p.mapping.proto}"
        ports[key] = (ports.get(key) or []) + [{"HostIp": p.mapping.host_ip or "0.0.0.0", "HostPort": str(p.mapping.host_port)}]
    return ports


def compute_network_settings(plan: dict, endpoints: list[Endpoint], networks: dict[str, Network],
                             publications: list[Publication], sandbox: str) -> dict:
    """docker's NetworkSettings for inspect: one entry per network the container belongs to
    (addresses only while it has an endpoint there), and its published ports."""
    by_net = {e.network: e for e in endpoints}
    entries = {}
    names = [n["name"] for n in plan.get("networks", ())] or ([plan["mode"]] if plan.get("mode") in SPECIAL_MODES else [])
    for name in names:
        ep, net = by_net.get(name), networks.get(name)
        wanted = next((n for n in plan.get("networks", ()) if n["name"] == name), {})
        entries[name] = {
            "IPAMConfig": {"IPv4Address": wanted["ipv4_address"]} if wanted.get("ipv4_address") else None,
            "Aliases": list(ep.names[1:]) if ep else list(wanted.get("aliases", ())),
            "NetworkID": net.id if net else "",
            "EndpointID": ep.host_ifname if ep else "",
            "Gateway": net.gateway if (ep and net) else "",
            "IPAddress": ep.address if ep else "",
            "IPPrefixLen": net.prefixlen if (ep and net) else 0,
            "MacAddress": "",
        }
    primary = by_net.get(names[0]) if names else None
    primary_net = networks.get(names[0]) if names else None
    return {
        "SandboxKey": sandbox,
        "Ports": compute_port_bindings(plan, publications),
        "IPAddress": primary.address if primary else "",
        "Gateway": primary_net.gateway if (primary and primary_net) else "",
        "IPPrefixLen": primary_net.prefixlen if (primary and primary_net) else 0,
        "MacAddress": "",
        "Networks": entries,
    }
