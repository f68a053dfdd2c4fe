"""Values the networking library speaks in: a network, a container's endpoint on it, a port.

Frozen dataclasses with to_json()/from_json(), so the agent can persist them as they are and
hand them back after a restart (`orch.net.manager.Networks.restore`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# Linux interface names are at most 15 bytes (IFNAMSIZ 16 with the NUL).
IFNAMSIZ = 15


@dataclass(frozen=True)
class Network:
    """A bridge network: a Linux bridge holding `gateway` on `subnet`."""

    name: str
    id: str
    bridge: str
    subnet: str
    gateway: str
    mtu: int = 1500
    # An internal network has no route out: no masquerade, nothing forwarded in or out, and its
    # DNS server answers only its own names.
    internal: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    # An overlay network (orch.net.overlay) is a bridge like the others plus a VXLAN device on
    # it: `cluster_id` is the cluster's network id, `vni` its VXLAN id; its bridge holds the
    # gateway address on every node, and it exists on a node while a task there needs it.
    driver: str = "bridge"
    cluster_id: str = ""
    vni: int = 0
    vxlan: str = ""
    ingress: bool = False

    @property
    def overlay(self) -> bool:
        return self.driver == "overlay"

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1])

    def to_json(self) -> dict:
        data = asdict(self)
        if not self.overlay:  # a bridge network is stored as it was before overlays existed
            for key in _OVERLAY_FIELDS:
                del data[key]
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Network":
        return cls(**data)


_OVERLAY_FIELDS = ("driver", "cluster_id", "vni", "vxlan", "ingress")


@dataclass(frozen=True)
class Endpoint:
    """A container's attachment to one network: a veth pair and an address."""

    network: str
    container_id: str
    netns_path: str
    ifname: str  # the name inside the container: eth0, eth1, ...
    host_ifname: str  # the bridge's end, in the host's namespace
    address: str
    # The names the network's DNS answers with this address: the container's name, its
    # aliases, its service name (all replicas of a service share it: round-robin).
    names: tuple[str, ...] = ()

    def to_json(self) -> dict:
        data = asdict(self)
        data["names"] = list(self.names)
        return data

    @classmethod
    def from_json(cls, data: dict) -> "Endpoint":
        return cls(**{**data, "names": tuple(data.get("names", ()))})


@dataclass(frozen=True)
class PortMapping:
    """One published port as the user asked for it: `[IP:]HOST:CONTAINER[/PROTO]`.

    `host_port` 0 means "any free port"; the driver chooses one when it reserves it.
    `host_ip` "" means every address of the host.
    """

    container_port: int
    host_port: int = 0
    proto: str = "tcp"
    host_ip: str = ""

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "PortMapping":
        return cls(**data)


@dataclass(frozen=True)
class Publication:
    """A published port bound to a container's address on a network (host_port is chosen)."""

    mapping: PortMapping
    container_id: str
    network: str
    address: str

    def to_json(self) -> dict:
        return {"mapping": self.mapping.to_json(), "container_id": self.container_id,
                "network": self.network, "address": self.address}

    @classmethod
    def from_json(cls, data: dict) -> "Publication":
        return cls(PortMapping.from_json(data["mapping"]), data["container_id"], data["network"], data["address"])
