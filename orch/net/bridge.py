"""A network's bridge: a Linux bridge holding the gateway address, up, with the network's MTU.

Thin: the steps, in order, over the `Kernel` door. `route_localnet` lets the host's own
connections to 127.0.0.1:<published port>, DNATed to a container, leave through the bridge
(the kernel otherwise drops a 127.0.0.0/8 source on a non-loopback device as a martian).
The bridge's MAC is its own, given at creation, so the gateway's MAC never changes under the
containers' ARP caches as veths join and leave.
"""

from __future__ import annotations

from orch.net.kernel import Kernel
from orch.net.model import IFNAMSIZ, Network


def bridge_name(network_id: str, prefix: str = "orch-") -> str:
    """The bridge's interface name: the prefix and as much of the id as fits in 15 bytes."""
    return (prefix + network_id)[:IFNAMSIZ]


def create_bridge(kernel: Kernel, network: Network) -> None:
    """Make the bridge (idempotent: an existing bridge is kept, as after an agent restart, and
    its MAC pinned if an earlier orch left it to the kernel: see RealKernel.create_bridge)."""
    if not kernel.link_exists(network.bridge):
        kernel.create_bridge(network.bridge, network.gateway, network.prefixlen, network.mtu)
    else:
        kernel.pin_link_address(network.bridge)
    kernel.write_sysctl(f"net.ipv4.conf.{network.bridge}.route_localnet", "1")


def remove_bridge(kernel: Kernel, network: Network) -> None:
    kernel.delete_link(network.bridge)
