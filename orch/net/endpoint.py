"""A container's endpoint: a veth pair from the network's bridge into the container's namespace.

The steps (Kernel door), in the order the kernel needs them: make the pair in the host's
namespace with the host end on the bridge and up; move the other end into the container's
namespace; there rename it (eth0, eth1, ...), give it the MTU and the address, bring it and `lo`
up, and on the container's first network add the default route through the gateway. A failure
half-way deletes the host end, which takes the pair with it.
"""

from __future__ import annotations

import hashlib

from orch.net.kernel import Kernel
from orch.net.model import Endpoint, Network


def veth_names(container_id: str, network: str) -> tuple[str, str]:
    """(host end, temporary peer name): 14 bytes each, unique per container and network."""
    digest = hashlib.sha256(f"{container_id}\0{network}".encode()).hexdigest()[:12]
    return "ve" + digest, "vp" + digest


def connect(kernel: Kernel, network: Network, container_id: str, netns_path: str, *, address: str,
            ifname: str, names: tuple[str, ...], default_route: bool) -> Endpoint:
    host, peer = veth_names(container_id, network.name)
    # A leftover pair from a crash would make the add fail; it belongs to this very endpoint.
    kernel.delete_link(host)
    kernel.create_veth(host, peer, network.mtu, network.bridge)
    try:
        kernel.move_to_netns(peer, netns_path)
        kernel.configure_in_netns(netns_path, peer, ifname, address, network.prefixlen,
                                  network.gateway, network.mtu, default_route)
    except BaseException:
        kernel.delete_link(host)
        raise
    return Endpoint(network.name, container_id, netns_path, ifname, host, address, tuple(names))


def disconnect(kernel: Kernel, endpoint: Endpoint) -> None:
    """Delete the pair from the host end (gone already when the namespace died: fine)."""
    kernel.delete_link(endpoint.host_ifname)
