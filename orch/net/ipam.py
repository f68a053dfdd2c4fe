"""IP address management: which subnet a network gets, which address a container gets.

This module is a pure decider. The state is a frozen value (`IpamState`); every function takes
a state and returns a new one, and the caller persists it (as JSON) so that an address is never
handed out twice, also across agent restarts. It imports nothing that touches the kernel: the
caller passes the host's routes in.

Rules, as docker's default IPAM has them:
- A network without an explicit subnet gets the first block of the pool that overlaps neither a
  route of the host nor another network. An explicit subnet may not overlap another network.
- The gateway is the first host address of the subnet unless given.
- A container's address is the next free one after the last handed out (wrapping around), so a
  just-released address is not reused at once and a stale DNS answer or ARP entry is unlikely to
  reach a new container. A fixed `ipv4_address` must lie in the subnet and be free.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound

# Podman's default range, split into /24 blocks: small enough that a node can hold hundreds of
# networks, and away from docker's 172.17.0.0/16 so both can live on one machine.
DEFAULT_POOLS: tuple[tuple[str, int], ...] = (("10.89.0.0/16", 24), ("10.90.0.0/16", 24))


@dataclass(frozen=True)
class Subnet:
    """The addresses of one network: its subnet, gateway and which address went to whom."""

    subnet: str
    gateway: str
    # address -> owner (a container id, or "" for a reserved address).
    allocated: dict[str, str] = field(default_factory=dict)
    last: str = ""

    def to_json(self) -> dict:
        return {"subnet": self.subnet, "gateway": self.gateway, "allocated": dict(self.allocated), "last": self.last}

    @classmethod
    def from_json(cls, data: dict) -> "Subnet":
        return cls(data["subnet"], data["gateway"], dict(data.get("allocated", {})), data.get("last", ""))


@dataclass(frozen=True)
class IpamState:
    """Every network's subnet and addresses, keyed by network name."""

    networks: dict[str, Subnet] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"networks": {name: sub.to_json() for name, sub in sorted(self.networks.items())}}

    @classmethod
    def from_json(cls, data: dict) -> "IpamState":
        return cls({name: Subnet.from_json(sub) for name, sub in data.get("networks", {}).items()})


def _parse_subnet(text: str, what: str) -> IPv4Network:
    try:
        return ipaddress.IPv4Network(text, strict=True)
    except ValueError as err:
        raise InvalidArgument(f"invalid {what} {text!r}: {err}; give an IPv4 network such as 10.89.7.0/24") from None


def _parse_address(text: str, what: str) -> IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(f"invalid {what} {text!r}: give an IPv4 address such as 10.89.7.5") from None


def compute_subnet(
    state: IpamState,
    host_routes: list[str],
    *,
    requested: str | None = None,
    pools: tuple[tuple[str, int], ...] = DEFAULT_POOLS,
) -> IPv4Network:
    """The subnet a new network gets: `requested`, checked, or the first free pool block."""
    taken = [ipaddress.IPv4Network(sub.subnet) for sub in state.networks.values()]
    if requested is not None:
        net = _parse_subnet(requested, "subnet")
        if net.prefixlen > 30:
            raise InvalidArgument(f"subnet {requested} is too small: a network needs at least a /30")
        for other_name, other in state.networks.items():
            if net.overlaps(ipaddress.IPv4Network(other.subnet)):
                raise Conflict(f"subnet {requested} overlaps network {other_name!r} ({other.subnet}); choose another")
        return net
    # Host routes that cover everything (the default route) must not block the whole pool.
    avoid = taken + [r for r in (ipaddress.IPv4Network(x, strict=False) for x in host_routes) if r.prefixlen > 0]
    for pool, prefix in pools:
        for block in ipaddress.IPv4Network(pool).subnets(new_prefix=prefix):
            if not any(block.overlaps(other) for other in avoid):
                return block
    raise Conflict("no free subnet left in the address pools; remove unused networks or give --subnet")


def allocate_network(
    state: IpamState, name: str, subnet: IPv4Network | str, gateway: str | None = None
) -> IpamState:
    """Record a network's subnet and gateway (the gateway's address counts as allocated)."""
    if name in state.networks:
        raise AlreadyExists(f"network {name!r} already has addresses")
    net = subnet if isinstance(subnet, IPv4Network) else _parse_subnet(subnet, "subnet")
    gw = _parse_address(gateway, "gateway") if gateway else next(net.hosts())
    if gw not in net or gw in (net.network_address, net.broadcast_address):
        raise InvalidArgument(f"gateway {gw} is not a host address of subnet {net}")
    sub = Subnet(str(net), str(gw), {str(gw): ""}, str(gw))
    return replace(state, networks={**state.networks, name: sub})


def release_network(state: IpamState, name: str) -> IpamState:
    networks = dict(state.networks)
    networks.pop(name, None)
    return replace(state, networks=networks)


def allocate_address(
    state: IpamState, network: str, owner: str, fixed: str | None = None
) -> tuple[IpamState, str]:
    """Give `owner` an address on `network`: `fixed` if free, else the next free one."""
    sub = _subnet(state, network)
    net = ipaddress.IPv4Network(sub.subnet)
    if fixed is not None:
        addr = _parse_address(fixed, "ipv4_address")
        if addr not in net or addr in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"ipv4_address {addr} is not a host address of network {network!r} ({net})")
        holder = sub.allocated.get(str(addr))
        if holder is not None:
            who = f"container {holder}" if holder else "the gateway"
            raise Conflict(f"address {addr} on network {network!r} is already used by {who}")
        chosen = addr
    else:
        chosen = _next_free(net, sub)
        if chosen is None:
            raise Conflict(f"network {network!r} ({net}) has no free address left")
    allocated = {**sub.allocated, str(chosen): owner}
    new_sub = replace(sub, allocated=allocated, last=str(chosen) if fixed is None else sub.last)
    return replace(state, networks={**state.networks, network: new_sub}), str(chosen)


def release_address(state: IpamState, network: str, address: str) -> IpamState:
    """Free an address (a no-op when it was not allocated, so releases can be retried)."""
    sub = state.networks.get(network)
    if sub is None or address not in sub.allocated or address == sub.gateway:
        return state
    allocated = {a: o for a, o in sub.allocated.items() if a != address}
    return replace(state, networks={**state.networks, network: replace(sub, allocated=allocated)})


def addresses_of(state: IpamState, owner: str) -> dict[str, str]:
    """Network name -> address for every address `owner` holds."""
    return {name: a for name, sub in state.networks.items() for a, o in sub.allocated.items() if o == owner}


def _subnet(state: IpamState, network: str) -> Subnet:
    try:
        return state.networks[network]
    except KeyError:
        raise NotFound(f"no such network: {network}") from None


def _next_free(net: IPv4Network, sub: Subnet) -> IPv4Address | None:
    first = int(net.network_address) + 1
    last = int(net.broadcast_address) - 1
    count = last - first + 1
    start = int(ipaddress.IPv4Address(sub.last)) + 1 if sub.last else first
    for i in range(count):
        candidate = first + (start - first + i) % count
        if str(ipaddress.IPv4Address(candidate)) not in sub.allocated:
            return ipaddress.IPv4Address(candidate)
    return None
