"""The cluster's network allocator: VNIs and subnets of overlay networks, the services' virtual
IPs and published ports, the tasks' addresses. A pure decider the leader runs inside each
orchestrator pass (orch.scheduler.orchestrate), so what it allocates is committed in the same
fenced transactions as the tasks and services that carry it.

There is no allocation table of its own: what is in use is read from the records every pass
(a network's VNI, subnet and gateway; each service's VIPs and published ports; each task's
addresses), and a new allocation takes what is free. So nothing can leak, and a plan that
fails to commit allocated nothing. Within a pass the allocator remembers what it handed out,
so two tasks of one pass never get one address.

Rules (docker's, swarmkit's allocator):
- A network gets the lowest VNI from 4096 up that no other network has, and its requested
  subnet (checked against the others) or the first block of the cluster's default address
  pool (`swarm init --default-addr-pool`, /24 blocks by default) that overlaps no other
  network's; its gateway is the requested one or the subnet's first address.
- A task's address stays taken until the task is terminal as its node reported it (a task on
  a node that is down may still run there, so its address is not reused meanwhile). A new
  address is the next free one after the highest taken, wrapping around, so an address just
  freed is not the next one handed out.
- A service in endpoint mode vip gets one VIP per network it is attached to (not on the
  ingress network: the routing mesh sends straight to tasks); a port published in ingress mode
  without a number gets the lowest free one from 30000 (docker's range, to 32767).
- A service with a port published in ingress mode is attached to the ingress network too (its
  tasks get an address there, which the routing mesh sends to).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network
from typing import Mapping

from orch.cluster.records import (
    ClusterSettings,
    Endpoint,
    IPAMConfig,
    Network,
    NetworkAttachment,
    PortConfig,
    Service,
    Task,
    VirtualIP,
)

VNI_FIRST = 4096
VNI_LAST = (1 << 24) - 1
PORT_FIRST, PORT_LAST = 30000, 32767


@dataclass(frozen=True)
class ServiceNetworks:
    """A service's networks as this pass sees them: ready, waiting for an allocation, or wrong."""

    networks: tuple[Network, ...] = ()  # in attachment order, the ingress network last
    endpoint: Endpoint | None = None  # what the service record should hold
    waiting: str = ""
    failed: str = ""


def holds_addresses(task: Task) -> bool:
    """A task's addresses stay taken until its node has said it ended."""
    return not task.status.state.terminal


@dataclass
class NetAllocator:
    networks: Mapping[str, Network]
    services: Mapping[str, Service]
    tasks: Mapping[str, Task]
    settings: ClusterSettings = field(default_factory=ClusterSettings)
    _used: dict[str, set[int]] = field(default_factory=dict)  # network id -> addresses taken
    _ports: set[tuple[str, int]] = field(default_factory=set)
    _vnis: set[int] = field(default_factory=set)
    _subnets: list[tuple[IPv4Network, str]] = field(default_factory=list)  # (subnet, network name)
    _by_name: dict[str, Network] = field(default_factory=dict)
    _memo: dict[str, ServiceNetworks] = field(default_factory=dict)
    _tasks_read: bool = False

    def __post_init__(self) -> None:
        for net in sorted(self.networks.values(), key=lambda n: (n.created_at, n.id)):
            self._by_name.setdefault(net.spec.name, net)
            if net.vni:
                self._vnis.add(net.vni)
            for sub in net.subnets:
                self._subnets.append((IPv4Network(sub.subnet), net.spec.name))
                if sub.gateway:
                    self._take(net.id, sub.gateway)
        for svc in self.services.values():
            for vip in svc.endpoint.virtual_ips:
                self._take(vip.network_id, vip.addr)
            for p in list(svc.endpoint.ports) + list(svc.spec.endpoint_spec.ports):
                if p.publish_mode == "ingress" and p.published_port:
                    self._ports.add((p.protocol, p.published_port))

    def _read_task_addresses(self) -> None:
        """The addresses tasks hold, read once per pass and only by a pass that gives one out
        (a pass over 100,000 tasks that places nothing on an overlay reads none of them)."""
        if self._tasks_read:
            return
        self._tasks_read = True
        for task in self.tasks.values():
            if holds_addresses(task):
                for att in task.networks:
                    for addr in att.addresses:
                        self._take(att.network_id, addr)

    def _take(self, network_id: str, addr: str) -> None:
        self._used.setdefault(network_id, set()).add(int(IPv4Address(addr.split("/")[0])))

    # -- networks ---------------------------------------------------------------------------------
    def resolve(self, target: str) -> Network | None:
        """A network by id, name, or unique id prefix (docker's rules for --network)."""
        if target in self.networks:
            return self.networks[target]
        if target in self._by_name:
            return self._by_name[target]
        found = [n for nid, n in self.networks.items() if target and nid.startswith(target)]
        return found[0] if len(found) == 1 else None

    def ingress(self) -> Network | None:
        return next((n for n in sorted(self.networks.values(), key=lambda n: (n.created_at, n.id)) if n.spec.ingress), None)

    def allocate_networks(self, now: float) -> tuple[list[Network], dict[str, str]]:
        """Networks not allocated yet, allocated: (changed records, network id -> why not)."""
        changed, errors = [], {}
        for net in sorted(self.networks.values(), key=lambda n: (n.created_at, n.id)):
            if net.allocated:
                continue
            try:
                subnet, gateway = self._subnet_for(net)
            except ValueError as err:
                errors[net.id] = str(err)
                continue
            vni = next((v for v in range(VNI_FIRST, VNI_LAST + 1) if v not in self._vnis), None)
            if vni is None:
                errors[net.id] = "no VXLAN id left"
                continue
            self._vnis.add(vni)
            self._subnets.append((subnet, net.spec.name))
            changed.append(net.model_copy(update={
                "vni": vni, "subnets": [IPAMConfig(subnet=str(subnet), gateway=str(gateway))], "updated_at": now}))
        return changed, errors

    def _subnet_for(self, net: Network) -> tuple[IPv4Network, IPv4Address]:
        asked = net.spec.ipam[0] if net.spec.ipam else IPAMConfig()
        if asked.subnet:
            try:
                subnet = IPv4Network(asked.subnet, strict=True)
            except ValueError as err:
                raise ValueError(f"invalid subnet {asked.subnet}: {err}") from None
            for other, name in self._subnets:
                if subnet.overlaps(other):
                    raise ValueError(f"subnet {subnet} overlaps network {name} ({other})")
        else:
            subnet = self._free_block()
        if subnet.prefixlen > 29:
            raise ValueError(f"subnet {subnet} is too small for an overlay network (at most /29)")
        if asked.gateway:
            gateway = IPv4Address(asked.gateway)
            if gateway not in subnet or gateway in (subnet.network_address, subnet.broadcast_address):
                raise ValueError(f"gateway {gateway} is not a host address of subnet {subnet}")
        else:
            gateway = next(subnet.hosts())
        return subnet, gateway

    def _free_block(self) -> IPv4Network:
        size = self.settings.subnet_size
        for pool in self.settings.default_addr_pool:
            base = IPv4Network(pool, strict=False)
            if size < base.prefixlen:
                continue
            step = 1 << (32 - size)
            start, end = int(base.network_address), int(base.broadcast_address)
            addr = start
            while addr + step - 1 <= end:
                block = IPv4Network((addr, size))
                clash = next((other for other, _ in self._subnets if block.overlaps(other)), None)
                if clash is None:
                    return block
                # Jump past the block in the way (a larger one covers many of ours).
                addr = max(addr + step, (int(clash.broadcast_address) + 1 + step - 1) // step * step)
        raise ValueError(f"the default address pool ({', '.join(self.settings.default_addr_pool)}) has no free "
                         f"/{size} left; remove networks or give --subnet")

    # -- services ---------------------------------------------------------------------------------
    def service_networks(self, service: Service) -> ServiceNetworks:
        """The service's networks and the endpoint its record should hold (VIPs, ports)."""
        memo = self._memo.get(service.id)
        if memo is not None:
            return memo
        result = self._service_networks(service)
        self._memo[service.id] = result
        return result

    def _service_networks(self, service: Service) -> ServiceNetworks:
        spec = service.spec
        nets: list[Network] = []
        for att in spec.task_template.networks:
            net = self.resolve(att.target)
            if net is None:
                return ServiceNetworks(failed=f"network {att.target} not found; create it (orch network create -d overlay "
                                              f"{att.target}) or attach the service to another")
            if net.spec.ingress:
                return ServiceNetworks(failed=f"network {net.spec.name} is the routing mesh's; a service cannot attach to it")
            if net not in nets:
                nets.append(net)
        ingress_ports = [p for p in spec.endpoint_spec.ports if p.publish_mode == "ingress"]
        if ingress_ports:
            ingress = self.ingress()
            if ingress is None:
                return ServiceNetworks(failed="ports published in ingress mode need the ingress network, and this cluster has "
                                              "none; create it (orch network create -d overlay --ingress ingress) or publish "
                                              "with mode=host")
            nets.append(ingress)
        waiting = [n.spec.name for n in nets if not n.allocated]
        if waiting:
            return ServiceNetworks(waiting=f"network {', '.join(waiting)} is being allocated")
        ports = self._ports_of(service)
        if isinstance(ports, str):
            return ServiceNetworks(failed=ports)
        vips = []
        if spec.endpoint_spec.mode == "vip":
            have = {v.network_id: v.addr for v in service.endpoint.virtual_ips}
            for net in nets:
                if net.spec.ingress:
                    continue
                sub = IPv4Network(net.subnets[0].subnet)
                old = have.get(net.id)
                if old and IPv4Address(old.split("/")[0]) in sub:
                    vips.append(VirtualIP(network_id=net.id, addr=old))
                    continue
                addr = self._next_address(net)
                if addr is None:
                    return ServiceNetworks(failed=f"network {net.spec.name} ({sub}) has no free address for a virtual IP")
                vips.append(VirtualIP(network_id=net.id, addr=f"{addr}/{sub.prefixlen}"))
        return ServiceNetworks(tuple(nets), Endpoint(ports=ports, virtual_ips=vips))

    def _ports_of(self, service: Service) -> list[PortConfig] | str:
        out = []
        before = {(p.protocol, p.target_port): p.published_port for p in service.endpoint.ports if p.publish_mode == "ingress"}
        for p in service.spec.endpoint_spec.ports:
            if p.publish_mode == "ingress" and not p.published_port:
                port = before.get((p.protocol, p.target_port)) or next(
                    (n for n in range(PORT_FIRST, PORT_LAST + 1) if (p.protocol, n) not in self._ports), None)
                if port is None:
                    return f"no free port left in {PORT_FIRST}-{PORT_LAST} to publish {p.target_port}/{p.protocol}"
                self._ports.add((p.protocol, port))
                p = p.model_copy(update={"published_port": port})
            out.append(p)
        return out

    # -- tasks ------------------------------------------------------------------------------------
    def attach(self, task: Task, service: Service) -> list[NetworkAttachment] | str:
        """The task's addresses, one per network of its service; a reason when it cannot have them."""
        nets = self.service_networks(service)
        if nets.failed or nets.waiting:
            return nets.failed or nets.waiting
        out = []
        for net in nets.networks:
            sub = IPv4Network(net.subnets[0].subnet)
            addr = self._next_address(net)
            if addr is None:
                return f"network {net.spec.name} ({sub}) has no free address"
            out.append(NetworkAttachment(network_id=net.id, addresses=[f"{addr}/{sub.prefixlen}"]))
        return out

    def _next_address(self, net: Network) -> IPv4Address | None:
        sub = IPv4Network(net.subnets[0].subnet)
        self._read_task_addresses()
        used = self._used.setdefault(net.id, set())
        first, last = int(sub.network_address) + 1, int(sub.broadcast_address) - 1
        count = last - first + 1
        start = max((u for u in used if first <= u <= last), default=first - 1) + 1
        for i in range(count):
            candidate = first + (start - first + i) % count
            if candidate not in used:
                used.add(candidate)
                return IPv4Address(candidate)
        return None


def address_of(attachment: NetworkAttachment) -> str:
    """The first address of an attachment, without its prefix length."""
    return attachment.addresses[0].split("/")[0] if attachment.addresses else ""
