"""A network's bridge: a Linux bridge holding the gateway address, up, with the network's MTU.

Thin: the steps, in order, over the `Kernel` door. `route_localnet` lets the host's own
connections to 127.0.0.1:<published port>, DNATed to a container, leave through the bridge
(the kernel otherwise drops a 127.0.0.0/8 source on a non-loopback device as a martian).
The bridge's MAC is its own, given at creation, so the gateway's MAC never changes under the
containers' ARP caches as veths join and leave.

An overlay network's bridge (orch.net.overlay) gets the node's MAC (02:4e and its underlay
address) and a VXLAN device as a port; it forwards between the overlay and the node's other
networks, so loose reverse-path filtering (mesh traffic from a client elsewhere enters by it)
and no ICMP redirects (the mesh's replies leave by the bridge they came in on, on purpose).
"""

from __future__ import annotations

from orch.net.kernel import Kernel
from orch.net.model import IFNAMSIZ, Network
from orch.net.overlay import node_mac


def bridge_name(network_id: str, prefix: str = "orch-") -> str:
    """The bridge's interface name: the prefix and as much of the id as fits in 15 bytes."""
    return (prefix + network_id)[:IFNAMSIZ]


def create_bridge(kernel: Kernel, network: Network, vtep: str = "") -> None:
    """Make the bridge (idempotent: an existing bridge is kept, as after an agent restart, and
    its MAC pinned if an earlier orch left it to the kernel: see RealKernel.create_bridge), and
    an overlay's VXLAN device on it (`vtep`: the node's underlay address)."""
    if not kernel.link_exists(network.bridge):
        mac = node_mac(vtep) if network.overlay and vtep else None
        kernel.create_bridge(network.bridge, network.gateway, network.prefixlen, network.mtu, mac)
    else:
        kernel.pin_link_address(network.bridge)
    kernel.write_sysctl(f"net.ipv4.conf.{network.bridge}.route_localnet", "1")
    if network.overlay:
        kernel.write_sysctl(f"net.ipv4.conf.{network.bridge}.rp_filter", "2")
        kernel.write_sysctl(f"net.ipv4.conf.{network.bridge}.send_redirects", "0")
        if vtep and not kernel.link_exists(network.vxlan):
            kernel.create_vxlan(network.vxlan, network.vni, vtep, network.bridge, network.mtu)


def remove_bridge(kernel: Kernel, network: Network) -> None:
    if network.vxlan:
        kernel.delete_link(network.vxlan)
    kernel.delete_link(network.bridge)
