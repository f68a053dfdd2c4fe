"""The node's networks as one object: what the agent calls, what it persists.

`Networks` keeps the networking state as a value (`NetState`: networks, endpoints, published
ports, IPAM) and after every change brings the kernel in line: bridges, veths, the nftables
table, the DNS servers' listeners and name table. The caller persists `state.to_json()` after
each call (and hands it to `Networks.restore` after an agent restart, which puts back the
rules, the DNS listeners and the port reservations that died with the old process).

Order of work in each operation: check and reserve first (addresses, host ports), so that bad
input or a taken port fails before the kernel is touched; then change the kernel; then the
state. A failure half-way undoes what the operation did.

Releasing a container is cheap on purpose (`orch compose down` releases twenty at once): its
endpoints leave the state (so DNS and rules forget them at once) and its namespace file is
unmounted; the kernel then destroys the namespace in the background, and every veth end in it
with its host peer, many namespaces in one batch (~75 ms for twenty here, where deleting each
veth over netlink waits ~30 ms for the kernel each, one after the other). Until the host end
is gone the endpoint is *retiring*: kept in the state, its address still allocated, so no
address is handed out while a veth that had it exists. `reap` frees those whose veth is gone.
"""

from __future__ import annotations

import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, OrchError
from orch.net import bridge as bridges
from orch.net import endpoint as endpoints
from orch.net import ipam
from orch.net.files import ResolvConf, compute_resolv_conf, render_hostname, render_hosts, render_resolv_conf
from orch.net.firewall import PortReservations, apply_rules
from orch.net.kernel import Kernel
from orch.net.model import IFNAMSIZ, Endpoint, Network, PortMapping, Publication
from orch.net.names import compute_name_table
from orch.net.overlay import (
    VXLAN_OVERHEAD,
    ClusterView,
    Fabric,
    OverlaySpec,
    compute_cluster_names,
    compute_fabric,
    compute_lb_ruleset,
    compute_mesh,
    compute_vips,
    mesh_ports,
    vxlan_name,
)
from orch.net.ports import compute_delete

MTU_OPTION = "com.docker.network.driver.mtu"
# Docker's rule for object names.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


# How long remove_network waits for the kernel to destroy released namespaces (and their veths)
# before it deletes what is left itself.
RETIRE_WAIT = 2.0


@dataclass(frozen=True)
class NetState:
    networks: dict[str, Network] = field(default_factory=dict)
    endpoints: tuple[Endpoint, ...] = ()
    publications: tuple[Publication, ...] = ()
    ipam: ipam.IpamState = field(default_factory=ipam.IpamState)
    # Endpoints of released containers whose host veth may still exist (see the module's doc).
    retiring: tuple[Endpoint, ...] = ()
    # Containers (ids) the DNS does not name: drained before they stop (`Networks.hide`).
    hidden: frozenset[str] = frozenset()
    # What the cluster said last about its overlay networks (orch.net.overlay), kept so that
    # an agent restart programs the same fabric before any manager speaks again.
    cluster: ClusterView = field(default_factory=ClusterView)

    def to_json(self) -> dict:
        return {
            "networks": {n: net.to_json() for n, net in sorted(self.networks.items())},
            "endpoints": [e.to_json() for e in self.endpoints],
            "publications": [p.to_json() for p in self.publications],
            "ipam": self.ipam.to_json(),
            "retiring": [e.to_json() for e in self.retiring],
            "hidden": sorted(self.hidden),
            **({"cluster": self.cluster.to_json()} if self.cluster != ClusterView() else {}),
        }

    @classmethod
    def from_json(cls, data: dict) -> "NetState":
        return cls(
            {n: Network.from_json(v) for n, v in data.get("networks", {}).items()},
            tuple(Endpoint.from_json(e) for e in data.get("endpoints", ())),
            tuple(Publication.from_json(p) for p in data.get("publications", ())),
            ipam.IpamState.from_json(data.get("ipam", {})),
            tuple(Endpoint.from_json(e) for e in data.get("retiring", ())),
            frozenset(data.get("hidden", ())),
            ClusterView.from_json(data.get("cluster", {})),
        )


class Networks:
    """Bridge networks on one node. Thread-safe: one lock around every operation."""

    def __init__(self, kernel: Kernel, *, run_dir: Path, dns=None, table: str = "orch",
                 bridge_prefix: str = "orch-", pools=ipam.DEFAULT_POOLS, host_resolv: ResolvConf | None = None):
        self.kernel = kernel
        self.run_dir = Path(run_dir)
        self.dns = dns  # an orch.net.dns.DnsService, or None for no embedded DNS
        self.table = table
        self.bridge_prefix = bridge_prefix
        self.pools = pools
        self.host_resolv = host_resolv or ResolvConf()
        self.ports = PortReservations()
        self.underlay_mtu: int | None = None  # of the node's underlay link (overlay MTUs are 50 less)
        self.state = NetState()
        self.warnings: list[str] = []
        self._rules: str | None = None  # the nft text loaded last (None: load on next sync)
        self.retire_wait = RETIRE_WAIT
        self._lock = threading.RLock()
        # Overlays: what was programmed last (None or missing: program again). The kernel side
        # reads what is there and changes the difference, so programming again is harmless.
        self._fabric: dict[str, Fabric] = {}  # overlay network name -> its fabric
        self._returns: tuple[str, frozenset[str]] | None = None  # the mesh's return rules
        self._lb: dict[str, str | None] = {}  # container id -> its namespace's VIP table
        self._mesh_held: set[tuple[str, int]] = set()  # host ports the routing mesh holds

    # Networks.

    def create_network(self, name: str, *, subnet: str | None = None, gateway: str | None = None,
                       internal: bool = False, mtu: int = 1500, options: dict[str, str] | None = None,
                       labels: dict[str, str] | None = None, bridge: str | None = None) -> Network:
        with self._lock:
            if not _NAME.fullmatch(name):
                raise InvalidArgument(f"invalid network name {name!r}: use letters, digits, '_', '.', '-', "
                                      "starting with a letter or digit")
            if name in self.state.networks:
                raise AlreadyExists(f"network {name!r} already exists")
            mtu = _mtu(options or {}, mtu)
            net_id = secrets.token_hex(32)
            chosen = ipam.compute_subnet(self.state.ipam, self.kernel.host_routes(), requested=subnet, pools=self.pools)
            new_ipam = ipam.allocate_network(self.state.ipam, name, chosen, gateway)
            sub = new_ipam.networks[name]
            network = Network(name, net_id, bridge or bridges.bridge_name(net_id, self.bridge_prefix),
                              sub.subnet, sub.gateway, mtu, internal, dict(labels or {}))
            if self.kernel.link_exists(network.bridge):
                raise AlreadyExists(f"interface {network.bridge} already exists on this host; "
                                    f"choose another bridge name for network {name!r}")
            bridges.create_bridge(self.kernel, network)
            new_state = replace(self.state, networks={**self.state.networks, name: network}, ipam=new_ipam)
            try:
                self._sync(new_state, start_dns=[network])
            except BaseException:
                bridges.remove_bridge(self.kernel, network)
                self._sync(self.state)
                raise
            self.state = new_state
            return network

    def remove_network(self, name: str) -> None:
        with self._lock:
            network = self._network(name)
            users = sorted({e.container_id for e in self.state.endpoints if e.network == name})
            if users:
                raise Conflict(f"network {name!r} has active endpoints ({', '.join(users)}); disconnect or remove them first")
            new_state = replace(self.state, networks={n: v for n, v in self.state.networks.items() if n != name},
                                ipam=ipam.release_network(self.state.ipam, name),
                                retiring=tuple(e for e in self.state.retiring if e.network != name))
            if self.dns is not None:
                self.dns.stop(name)
            # The rules load (an `nft` process, ~15 ms) while the kernel deletes the bridge
            # (~40 ms): neither needs the other, and both are done before this returns.
            failed: list[BaseException] = []
            loader = threading.Thread(target=_capture, args=(failed, self._sync, new_state), name="orch-net-rules")
            loader.start()
            try:
                bridges.remove_bridge(self.kernel, network)
            finally:
                loader.join()
            if failed:
                raise failed[0]
            # No veth of the network may outlive it: the kernel has had the time the above
            # took to finish the released namespaces; wait a little more, then delete the rest.
            self._wait_gone([e.host_ifname for e in self.state.retiring if e.network == name], self.retire_wait)
            self.state = new_state

    # Overlay networks (orch.net.overlay).

    def set_cluster(self, view: ClusterView) -> list[str]:
        """Take what the cluster says now: make the overlay networks this node needs (a bridge
        and a VXLAN device each), program their forwarding and neighbour entries, the routing
        mesh, the VIPs inside containers' namespaces and the DNS's service names. Returns
        warnings (a local network holding an overlay's name, a mesh port held by another
        program). Overlays no longer needed go with `prune_overlays` once nothing uses them."""
        with self._lock:
            warnings: list[str] = []
            state = replace(self.state, cluster=view)
            made: list[Network] = []
            # Overlays the cluster no longer asks for and nothing uses go first: the managers
            # may have given a removed network's subnet to a new one (a node that was cut off
            # hears of both at once).
            wanted = {spec.name for spec in view.networks}
            for stale in [n for n in state.networks.values() if n.overlay and n.name not in wanted]:
                if not self._in_use(state, stale.name):
                    state = self._without(state, stale)
            try:
                for spec in view.networks:
                    existing = state.networks.get(spec.name)
                    if existing is not None and not existing.overlay:
                        warnings.append(f"network {spec.name}: a local {existing.driver} network has this name; the cluster's "
                                        f"overlay network of that name cannot be made on this node (remove the local one)")
                        continue
                    if existing is not None and (existing.cluster_id, existing.vni, existing.subnet) == (spec.id, spec.vni, spec.subnet):
                        continue
                    if existing is not None:
                        # Another network of the same name (removed and made again): replaced
                        # once its endpoints are gone.
                        if self._in_use(state, existing.name):
                            continue
                        state = self._without(state, existing)
                    try:
                        state, net = self._create_overlay(state, spec, view.vtep)
                    except OrchError as err:  # one network that cannot be made (a local subnet in the way)
                        warnings.append(f"overlay network {spec.name}: {err}")
                        continue
                    made.append(net)
                warnings += self._sync(state, start_dns=made)
            except BaseException:
                for net in made:
                    bridges.remove_bridge(self.kernel, net)
                raise
            self.state = state
        return warnings + self.prune_overlays()

    def prune_overlays(self) -> list[str]:
        """Remove the overlay networks the cluster no longer asks for and nothing uses (their
        VXLAN device, bridge and entries go with them)."""
        with self._lock:
            wanted = {n.name for n in self.state.cluster.networks}
            gone = [n.name for n in self.state.networks.values()
                    if n.overlay and n.name not in wanted and not self._in_use(self.state, n.name)]
            warnings = []
            for name in gone:
                try:
                    self.remove_network(name)
                except OrchError as err:
                    warnings.append(f"remove overlay network {name}: {err}")
            if gone and not wanted <= set(self.state.networks):
                # A network that could not be made while one that went held its subnet: now.
                warnings += self.set_cluster(self.state.cluster)
            return warnings

    def _in_use(self, state: NetState, name: str) -> bool:
        return any(e.network == name for e in state.endpoints + state.retiring)

    def _without(self, state: NetState, network: Network) -> NetState:
        if self.dns is not None:
            self.dns.stop(network.name)
        bridges.remove_bridge(self.kernel, network)
        self._fabric.pop(network.name, None)
        return replace(state, networks={n: v for n, v in state.networks.items() if n != network.name},
                       ipam=ipam.release_network(state.ipam, network.name))

    def overlay_bridge_name(self, cluster_id: str) -> str:
        return f"{self.table}o{cluster_id}"[:IFNAMSIZ]

    def _create_overlay(self, state: NetState, spec: OverlaySpec, vtep: str) -> tuple[NetState, Network]:
        if not vtep:
            raise InvalidArgument(f"overlay network {spec.name}: this node has no underlay address (not in a cluster)")
        if self.underlay_mtu is None:
            self.underlay_mtu = self.kernel.link_mtu_of(vtep)
        chosen = ipam.compute_subnet(state.ipam, [], requested=spec.subnet)  # a Conflict if a local network overlaps
        new_ipam = ipam.allocate_network(state.ipam, spec.name, chosen, spec.gateway)
        network = Network(spec.name, spec.id, self.overlay_bridge_name(spec.id), spec.subnet, spec.gateway,
                          self.underlay_mtu - VXLAN_OVERHEAD, spec.internal, {}, driver="overlay", cluster_id=spec.id,
                          vni=spec.vni, vxlan=vxlan_name(self.table, spec.vni), ingress=spec.ingress)
        for link in (network.bridge, network.vxlan):
            if self.kernel.link_exists(link):  # left by a crash: it is ours (the prefix says so)
                self.kernel.delete_link(link)
        bridges.create_bridge(self.kernel, network, vtep)
        return replace(state, networks={**state.networks, spec.name: network}, ipam=new_ipam), network

    def prune(self, keep: set[str] = frozenset()) -> list[str]:
        """Remove every network without endpoints except those in `keep` (the default bridge)
        and the cluster's overlays (they go when the cluster no longer asks for them)."""
        with self._lock:
            used = {e.network for e in self.state.endpoints}
            gone = sorted(n for n, net in self.state.networks.items() if n not in used and n not in keep and not net.overlay)
            for name in gone:
                self.remove_network(name)
            return gone

    def endpoints_on(self, network: str) -> list[Endpoint]:
        """The endpoints of one network (for `orch network inspect`)."""
        with self._lock:
            self._network(network)
            return [e for e in self.state.endpoints if e.network == network]

    def get(self, name: str) -> Network:
        with self._lock:
            return self._network(name)

    def list(self) -> list[Network]:
        with self._lock:
            return sorted(self.state.networks.values(), key=lambda n: n.name)

    # Namespaces.

    def netns_path(self, container_id: str) -> str:
        return str(self.run_dir / "netns" / container_id)

    def create_netns(self, container_id: str) -> str:
        path = self.netns_path(container_id)
        self.kernel.create_netns(path)
        return path

    # Endpoints.

    def connect(self, network: str, container_id: str, netns_path: str, *, names: tuple[str, ...] = (),
                ipv4_address: str | None = None, publish: list[PortMapping] = ()) -> Endpoint:
        """Attach a container's namespace to a network, and publish ports to its address there."""
        with self._lock:
            net = self._network(network)
            mine = [e for e in self.state.endpoints if e.container_id == container_id]
            if any(e.network == network for e in mine):
                raise AlreadyExists(f"container {container_id} is already connected to network {network!r}")
            if publish and net.internal:
                raise InvalidArgument(f"network {network!r} is internal: ports of its containers cannot be published")
            if net.overlay and ipv4_address is None:
                raise InvalidArgument(f"network {network!r} is a cluster's overlay network: its addresses come from the "
                                      f"cluster's managers; run the container as a service (orch service create --network {network})")
            self.reap()
            new_ipam, address = ipam.allocate_address(self.state.ipam, network, container_id, ipv4_address)
            held = self.ports.reserve(list(publish))
            try:
                used = {e.ifname for e in mine}
                ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
                ep = endpoints.connect(self.kernel, net, container_id, netns_path, address=address,
                                       ifname=ifname, names=tuple(names), default_route=not mine)
                pubs = tuple(Publication(m, container_id, network, address) for m in held)
                # The container's earlier endpoint here, if still retiring, had this veth name:
                # endpoints.connect deleted it, so its address is free now.
                old = [e for e in self.state.retiring if e.host_ifname == ep.host_ifname]
                for e in old:
                    new_ipam = ipam.release_address(new_ipam, e.network, e.address)
                new_state = replace(self.state, endpoints=self.state.endpoints + (ep,),
                                    publications=self.state.publications + pubs, ipam=new_ipam,
                                    retiring=tuple(e for e in self.state.retiring if e not in old))
                try:
                    self._sync(new_state)
                except BaseException:
                    endpoints.disconnect(self.kernel, ep)
                    raise
            except BaseException:
                self.ports.release(held)
                raise
            self.state = new_state
            return ep

    def disconnect(self, network: str, container_id: str) -> None:
        """Detach a container from a network: its veth, address, published ports there, DNS names."""
        with self._lock:
            ep = next((e for e in self.state.endpoints if e.network == network and e.container_id == container_id), None)
            if ep is None:
                raise NotFound(f"container {container_id} is not connected to network {network!r}")
            gone = [p for p in self.state.publications if p.container_id == container_id and p.network == network]
            new_state = replace(
                self.state,
                endpoints=tuple(e for e in self.state.endpoints if e != ep),
                publications=tuple(p for p in self.state.publications if p not in gone),
                ipam=ipam.release_address(self.state.ipam, network, ep.address),
            )
            self._sync(new_state)
            self.ports.release([p.mapping for p in gone])
            endpoints.disconnect(self.kernel, ep)
            self.state = new_state

    def release_container(self, container_id: str) -> None:
        """Everything of a container, also when it died unexpectedly: endpoints, ports, namespace.

        For a container whose processes are gone. Its names and rules go at once; its veths go
        with its namespace, which the kernel destroys in the background once the file is
        unmounted; until then its endpoints are retiring (see the module's doc). A container
        that joined this namespace (`--network container:X`) and still runs keeps it alive:
        `reap(force=True)` deletes such leftovers."""
        with self._lock:
            gone = tuple(e for e in self.state.endpoints if e.container_id == container_id)
            pubs = [p for p in self.state.publications if p.container_id == container_id]
            if gone or pubs:
                new_state = replace(
                    self.state,
                    endpoints=tuple(e for e in self.state.endpoints if e.container_id != container_id),
                    publications=tuple(p for p in self.state.publications if p not in pubs),
                    retiring=self.state.retiring + gone,
                )
                self._sync(new_state)
                self.state = new_state
                self.ports.release([p.mapping for p in pubs])
            self.kernel.remove_netns(self.netns_path(container_id))

    def reap(self, *, force: bool = False) -> int:
        """Free the addresses of retiring endpoints whose veth the kernel has deleted; with
        `force`, delete the veths still there first. Returns how many still retire."""
        with self._lock:
            if not self.state.retiring:
                return 0
            present = set(self.kernel.links_present([e.host_ifname for e in self.state.retiring]))
            if force:
                for host in sorted(present):
                    self.kernel.delete_link(host)
                present = set()
            done = [e for e in self.state.retiring if e.host_ifname not in present]
            if done:
                new_ipam = self.state.ipam
                for e in done:
                    new_ipam = ipam.release_address(new_ipam, e.network, e.address)
                self.state = replace(self.state, ipam=new_ipam,
                                     retiring=tuple(e for e in self.state.retiring if e not in done))
            return len(self.state.retiring)

    def _wait_gone(self, links: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while links := self.kernel.links_present(links):
            if time.monotonic() > deadline:
                for host in links:
                    self.kernel.delete_link(host)
                return
            time.sleep(0.005)

    # DNS draining.

    def rename(self, container_id: str, old: str, new: str) -> None:
        """A container renamed: its endpoints answer to `new` where they answered to `old`
        (its other aliases and its short id stay)."""
        with self._lock:
            endpoints = tuple(
                replace(e, names=tuple(dict.fromkeys(new if n == old else n for n in e.names))) if e.container_id == container_id else e
                for e in self.state.endpoints)
            if endpoints == self.state.endpoints:
                return
            new_state = replace(self.state, endpoints=endpoints)
            self._sync(new_state)
            self.state = new_state

    def hide(self, container_id: str) -> None:
        """The DNS stops naming the container (on every network, also ones it joins later);
        it keeps its addresses and its connections. Kept until `show` or `forget`."""
        self._set_hidden(add={container_id})

    def show(self, container_id: str) -> None:
        """The DNS names the container again (a new replica turned healthy)."""
        self._set_hidden(remove={container_id})

    def forget(self, container_ids) -> None:
        """Drop what is kept about containers that no longer exist (their hidden mark)."""
        self._set_hidden(remove=set(container_ids))

    def is_hidden(self, container_id: str) -> bool:
        return container_id in self.state.hidden

    def _set_hidden(self, *, add=frozenset(), remove=frozenset()) -> None:
        with self._lock:
            hidden = (self.state.hidden | add) - remove
            if hidden == self.state.hidden:
                return
            new_state = replace(self.state, hidden=hidden)
            self._sync(new_state)
            self.state = new_state

    def endpoints_of(self, container_id: str) -> list[Endpoint]:
        with self._lock:
            return [e for e in self.state.endpoints if e.container_id == container_id]

    def publications_of(self, container_id: str) -> list[Publication]:
        with self._lock:
            return [p for p in self.state.publications if p.container_id == container_id]

    # A container's name-resolution files.

    def container_files(self, container_id: str, hostname: str, *, dns: tuple[str, ...] = (),
                        dns_search: tuple[str, ...] = (), dns_options: tuple[str, ...] = (),
                        extra_hosts: tuple[tuple[str, str], ...] = ()) -> dict[str, str]:
        """{"hosts", "hostname", "resolv.conf"}: the text of each, for the runtime to mount."""
        with self._lock:
            eps = self.endpoints_of(container_id)
            first = self.state.networks[eps[0].network] if eps else None
            embedded = first.gateway if first is not None and self.dns is not None else None
            conf = compute_resolv_conf(self.host_resolv, embedded_dns=embedded, dns=dns,
                                       dns_search=dns_search, dns_options=dns_options)
            if embedded is not None and dns:
                # --dns with embedded DNS: the embedded server stays first, as in docker.
                conf = replace(conf, nameservers=(embedded,))
            return {
                "hosts": render_hosts(hostname, tuple(e.address for e in eps), extra_hosts=extra_hosts),
                "hostname": render_hostname(hostname),
                "resolv.conf": render_resolv_conf(conf),
            }

    # Restart.

    def restore(self, state: NetState) -> None:
        """Bring the kernel back in line with persisted state after an agent restart.

        Bridges are recreated if missing; endpoints whose namespace died with their container
        are dropped (with their addresses and ports); rules, DNS and port reservations return.
        """
        with self._lock:
            alive = tuple(e for e in state.endpoints if self.kernel.netns_exists(e.netns_path))
            # Retiring endpoints are done with too: their namespaces were let go before.
            dead = [e for e in state.endpoints if e not in alive] + list(state.retiring)
            new_ipam = state.ipam
            alive_links = {e.host_ifname for e in alive}
            for e in dead:
                new_ipam = ipam.release_address(new_ipam, e.network, e.address)
                if e.host_ifname not in alive_links:
                    self.kernel.delete_link(e.host_ifname)
            pubs = tuple(p for p in state.publications if any(
                e.container_id == p.container_id and e.network == p.network for e in alive))
            for net in state.networks.values():
                bridges.create_bridge(self.kernel, net, state.cluster.vtep)
            # Overlay links a crash left without a network in the state (they carry this
            # node's prefix, so they are ours).
            ours = {link for n in state.networks.values() if n.overlay for link in (n.bridge, n.vxlan)}
            for link in self.kernel.links_with_prefix(self.table + "o") + self.kernel.links_with_prefix(self.table + "v"):
                if link not in ours:
                    self.kernel.delete_link(link)
            for pub in pubs:
                try:
                    self.ports.reserve([pub.mapping])
                except OrchError as err:
                    # The rule still forwards the port; only the guard against other programs
                    # is missing. Refusing to start the agent would be worse.
                    self.warnings.append(f"restore published port of container {pub.container_id}: {err}")
            new_state = NetState(dict(state.networks), alive, pubs, new_ipam, hidden=state.hidden, cluster=state.cluster)
            self._rules = None  # the kernel's table may be anything after a restart: load it
            # Program everything again, the mesh's rules too: a crash may have left rules of an
            # ingress network the state no longer has (rules outlive the bridge they name).
            self._fabric, self._lb = {}, {}
            self._returns = _UNKNOWN if state.cluster.vtep else None
            self.warnings += self._sync(new_state, start_dns=list(state.networks.values()))
            self.state = new_state
        self.warnings += self.prune_overlays()

    def close(self) -> None:
        """Stop the DNS listeners and release the ports (the kernel state stays, for restore)."""
        if self.dns is not None:
            self.dns.close()
        self.ports.close()

    # Internals.

    def _network(self, name: str) -> Network:
        try:
            return self.state.networks[name]
        except KeyError:
            raise NotFound(f"no such network: {name}") from None

    def _sync(self, state: NetState, start_dns: list[Network] = ()) -> list[str]:
        """Bring rules, DNS and overlays in line with `state`; returns warnings about what
        could not be done for the overlays (tried again on the next change)."""
        nets = sorted(state.networks.values(), key=lambda n: n.name)
        view = state.cluster
        ingress = next((n for n in nets if n.overlay and n.ingress), None)
        mesh = compute_mesh(view, ingress.bridge if ingress is not None else None)
        vtep = view.vtep if any(n.overlay for n in nets) else ""  # its VXLAN packets skip conntrack
        self._rules = apply_rules(self.kernel, nets, list(state.publications), table=self.table, last=self._rules,
                                  mesh=mesh, vtep=vtep)
        warnings = self._hold_mesh_ports(mesh_ports(view) if ingress is not None else [])
        warnings += self._program_fabric(nets, view, ingress)
        if self.dns is not None:
            internal = frozenset(n.name for n in nets if n.internal)
            local = {n.cluster_id: n.name for n in nets if n.overlay}
            self.dns.set_table(compute_name_table(list(state.endpoints), internal, state.hidden,
                                                  compute_cluster_names(view, local) if local else None))
            for net in start_dns:
                self.dns.start(net.name, net.gateway)
        warnings += self._program_lbs(state, nets)
        for text in warnings:
            print(f"net: {text}", file=sys.stderr, flush=True)
        return warnings

    def _hold_mesh_ports(self, wanted: list[tuple[str, int]]) -> list[str]:
        """The routing mesh's ports are held like published ports (a socket bound on each), so
        that no program on the node takes one. One already taken is a warning: the node's
        other traffic there is DNATed anyway, and refusing the cluster would be worse."""
        warnings = []
        want = set(wanted)
        gone = self._mesh_held - want
        self.ports.release([PortMapping(0, port, proto) for proto, port in gone])
        self._mesh_held -= gone
        for proto, port in sorted(want - self._mesh_held):
            try:
                self.ports.reserve([PortMapping(0, port, proto)])
                self._mesh_held.add((proto, port))
            except OrchError as err:
                warnings.append(f"routing mesh port {port}/{proto}: {err}")
        return warnings

    def _program_fabric(self, nets: list[Network], view: ClusterView, ingress: Network | None) -> list[str]:
        warnings = []
        overlays = [n for n in nets if n.overlay]
        for net in overlays:
            fabric = compute_fabric(view, net.cluster_id)
            if self._fabric.get(net.name) == fabric:
                continue
            try:
                self.kernel.sync_fdb(net.vxlan, fabric.fdb)
                self.kernel.sync_neigh(net.vxlan, fabric.neigh)
                if net.ingress:
                    self.kernel.sync_neigh(net.bridge, fabric.node_neigh)
                    self.kernel.sync_routes(net.bridge, fabric.routes)
                self._fabric[net.name] = fabric
            except OrchError as err:
                self._fabric.pop(net.name, None)
                warnings.append(str(err))
        for name in set(self._fabric) - {n.name for n in overlays}:
            del self._fabric[name]
        returns = (ingress.bridge, compute_fabric(view, ingress.cluster_id).returns) if ingress is not None else ("", frozenset())
        if self._returns != returns and (returns[1] or self._returns is not None):
            try:
                self.kernel.sync_return_rules(*returns)
                self._returns = returns
            except OrchError as err:
                self._returns = None
                warnings.append(str(err))
        return warnings

    def _program_lbs(self, state: NetState, nets: list[Network]) -> list[str]:
        """Each container on overlay networks gets, in its own namespace, the VIPs of the
        services on those networks (orch.net.overlay.compute_lb_ruleset)."""
        overlay_ids = {n.name: n.cluster_id for n in nets if n.overlay and not n.ingress}
        wanted: dict[str, tuple[str, set[str]]] = {}
        for ep in state.endpoints:
            if ep.network in overlay_ids:
                wanted.setdefault(ep.container_id, (ep.netns_path, set()))[1].add(overlay_ids[ep.network])
        warnings = []
        for cid, (path, ids) in wanted.items():
            text = compute_lb_ruleset(compute_vips(state.cluster, ids))
            last = self._lb.get(cid)
            if text == last and cid in self._lb:
                continue
            try:
                if text is not None or last is not None:
                    self.kernel.apply_nft_in(path, text if text is not None else compute_delete("orch"))
                self._lb[cid] = text
            except OrchError as err:
                self._lb.pop(cid, None)
                warnings.append(f"virtual IPs of container {cid[:12]}: {err}")
        for cid in set(self._lb) - set(wanted):
            del self._lb[cid]
        return warnings


# `Networks._returns` when what the kernel holds is not known (after a restart): sync once.
_UNKNOWN = ("?", frozenset({"?"}))


def _capture(failed: list, fn, *args) -> None:
    try:
        fn(*args)
    except BaseException as err:  # raised again in the caller's thread
        failed.append(err)


def _mtu(options: dict[str, str], default: int) -> int:
    for key, value in options.items():
        if key != MTU_OPTION:
            raise InvalidArgument(f"unknown network option {key!r}: orch knows only {MTU_OPTION}")
        try:
            mtu = int(value)
        except ValueError:
            raise InvalidArgument(f"invalid {MTU_OPTION} {value!r}: give a number such as 1450") from None
        if not 68 <= mtu <= 65535:
            raise InvalidArgument(f"invalid {MTU_OPTION} {mtu}: an MTU goes from 68 to 65535")
        return mtu
    return default
