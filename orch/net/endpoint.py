"""A container's endpoint: a veth pair from the network's bridge into the container's namespace.

The steps (Kernel door): make the pair in one go, the host end on the bridge and up, the other
end already in the container's namespace under its name there (eth0, eth1, ...), both with the
network's MTU; then inside give it the address, bring it and `lo` up, and on the container's
first network add the default route through the gateway. A failure half-way deletes the host
end, which takes the pair with it.

On an overlay network the container's MAC is docker's 02:42 + its address, which every node
can compute (orch.net.overlay); on the ingress network its replies from its ingress address
are routed out of its ingress interface (a rule in its namespace), back to the node that
forwarded the connection to it.
"""

from __future__ import annotations

import hashlib

from orch.net.kernel import Kernel
from orch.net.model import Endpoint, Network
from orch.net.overlay import task_mac

# The routing table, inside a container's namespace, of replies from its ingress address.
INGRESS_TABLE = 200


def veth_name(container_id: str, network: str) -> str:
    """The host end's name: 14 bytes, unique per container and network."""
    return "ve" + hashlib.sha256(f"{container_id}\0{network}".encode()).hexdigest()[:12]


def connect(kernel: Kernel, network: Network, container_id: str, netns_path: str, *, address: str,
            ifname: str, names: tuple[str, ...], default_route: bool) -> Endpoint:
    host = veth_name(container_id, network.name)
    # A leftover pair from a crash would make the add fail; it belongs to this very endpoint.
    kernel.delete_link(host)
    kernel.create_veth(host, network.bridge, network.mtu, netns_path, ifname, peer_mac=task_mac(address) if network.overlay else None)
    try:
        kernel.configure_in_netns(netns_path, ifname, address, network.prefixlen, network.gateway, default_route)
        if network.ingress:
            kernel.source_route_in_netns(netns_path, ifname, address, network.gateway, INGRESS_TABLE)
    except BaseException:
        kernel.delete_link(host)
        raise
    return Endpoint(network.name, container_id, netns_path, ifname, host, address, tuple(names))


def disconnect(kernel: Kernel, endpoint: Endpoint) -> None:
    """Delete the pair from the host end (gone already when the namespace died: fine)."""
    kernel.delete_link(endpoint.host_ifname)
