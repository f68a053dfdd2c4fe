"""The node's networks in the agent: one `orch.net.manager.Networks`, persisted, and a
container's network set up from its plan (netspec.py) when it starts and released when it ends.

Life of a container's network:
- create (`config_parts`): the namespace path and the /etc files' mounts go into config.json;
  nothing of the kernel is touched yet except by `setup`, which create calls too so that a
  taken port fails `orch run` before a container exists (docker fails at start; with `run`
  that is the same moment). The runtime joins the pinned namespace (ContainerConfig.netns_path)
  and bind-mounts hosts, hostname and resolv.conf from the container's directory.
- start (`setup`): make the namespace, connect to each network with the container's name, its
  aliases and its short id, publish ports on the first network, write the three files.
  Idempotent: a namespace that exists means it is set up already.
- exit, rm, an unexpected death, or found dead after an agent restart (`release`): endpoints,
  ports and namespace go; the plan stays in the record, so a restart sets it up again. It
  costs well under a millisecond: the kernel destroys the namespace and its veths in the
  background (orch.net.manager), and a timer (`REAP_AFTER`) frees their addresses afterwards,
  deleting any veth still there (a `container:` joiner that still runs keeps the namespace).
- drain (`hide`/`show`): the DNS stops naming a container that is about to be replaced, or
  that is new and not healthy yet (created with the START_DRAINED label, so that its names
  never answer before it listens); kept in the state, so an agent restart keeps it, and
  forgotten when the container is removed.

Every change is followed by writing ORCH_ROOT/networks/state.json atomically, so a `kill -9`
of the agent at any moment leaves a state that `Networks.restore` can bring back: bridges,
nftables rules, the DNS listeners and the sockets holding published ports. A release is the
exception: it is written by the reaper a moment later (or by the next change), not at once,
because a state that missed it still lists the released endpoints, and `restore` drops every
endpoint whose namespace is gone (with its address, ports and any veth left).
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path

from orch import paths
from orch.api.labels import START_DRAINED  # a container with it is drained from its first setup on
from orch.atomic import write_json_atomic
from orch.errors import Conflict, InvalidArgument, NotFound, OrchError
from orch.net.model import PortMapping
from orch.node.agent.netspec import DEFAULT_NETWORK, compute_network_settings, compute_ports_text
from orch.node.runtime.mount import Mount

FILES = (("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"), ("resolv.conf", "/etc/resolv.conf"))
# The nftables table's name and the bridges' prefix. Each node on a host needs its own, since
# a node rewrites its table whole: the node at the default root is "orch", any other (a test's,
# a bench's) "orch" + 4 hex digits of its root's path, unless ORCH_NET_PREFIX says otherwise.
PREFIX_ENV = "ORCH_NET_PREFIX"
DEFAULT_ROOT = Path("/var/lib/orch")
# Seconds after a release when the reaper frees the addresses of veths the kernel deleted
# (and deletes those it did not: a namespace kept alive by a process that joined it).
REAP_AFTER = 2.0


def default_prefix(root: Path) -> str:
    import hashlib

    path = Path(root).resolve()
    if path == DEFAULT_ROOT:
        return "orch"
    return "orch" + hashlib.sha256(str(path).encode()).hexdigest()[:4]


class NodeNetworking:
    def __init__(self, root: Path, run_dir: Path, *, prefix: str | None = None, networks=None):
        self.state_path = Path(root) / "networks" / "state.json"
        self.containers_dir = Path(root) / "containers"
        self.prefix = prefix or os.environ.get(PREFIX_ENV) or default_prefix(root)
        if networks is None:
            networks = _real_networks(Path(run_dir), self.prefix)
        self.nets = networks
        self._lock = threading.RLock()
        self._reaper: threading.Timer | None = None

    @property
    def dns(self):
        """The embedded DNS service (orch.net.dns), which the agent serves in its nursery."""
        return self.nets.dns

    def open(self) -> None:
        """Restore the persisted state (bridges, rules, DNS, held ports) after an agent start."""
        from orch.node.agent.records import load_networks

        try:
            text = self.state_path.read_bytes()
        except FileNotFoundError:
            return
        self.nets.restore(load_networks(text, str(self.state_path)))
        self._save()  # also writes a state of an older format in the current one

    def close(self) -> None:
        """At a clean agent stop: DNS listeners and held ports go. With no container attached
        anywhere, the bridges and the table go too (the state stays: the next agent's `open`
        makes them again), so a stopped node with nothing running leaves no trace in the kernel;
        otherwise they stay, and published ports keep working while no agent runs."""
        with self._lock:
            if self._reaper is not None:
                self._reaper.cancel()
                self._reaper = None
            self.nets.close()
            if self.nets.state.endpoints:
                self._save()  # releases not written yet
                return
            from orch.net import bridge
            from orch.net.ports import compute_delete

            try:
                self.nets.reap(force=True)
                self._save()
                for net in self.nets.state.networks.values():
                    bridge.remove_bridge(self.nets.kernel, net)
                if self.nets.state.networks:
                    self.nets.kernel.apply_nft(compute_delete(self.nets.table))
                if any(n.overlay and n.ingress for n in self.nets.state.networks.values()):
                    self.nets.kernel.sync_return_rules("", frozenset())  # the routing mesh's policy rules
            except OrchError as err:  # the next agent's restore takes it from here
                print(f"agent: removing idle bridges at stop: {err}", file=sys.stderr, flush=True)

    def _save(self) -> None:
        paths.private_dir(self.state_path.parent)
        from orch.node.agent.records import dump_networks

        write_json_atomic(self.state_path, dump_networks(self.nets.state))

    # -- the cluster's overlay networks ----------------------------------------------------------
    def set_cluster(self, entries: list[dict], vtep: str) -> list[str]:
        """What the cluster's worker was told (orch.cluster.netview entries): the overlay
        networks this node needs, their endpoints, services and the nodes; `Networks.set_cluster`
        makes and programs them. Returns warnings for the worker's log."""
        from orch.net.overlay import compute_view

        with self._lock:
            try:
                return self.nets.set_cluster(compute_view(entries, vtep))
            finally:
                self._save()

    # -- networks ----------------------------------------------------------------------------
    def ensure(self, name: str) -> None:
        """The default `bridge` network is made on first use; any other must exist."""
        with self._lock:
            if name in self.nets.state.networks:
                return
            if name != DEFAULT_NETWORK:
                raise NotFound(f"network {name} not found; create it with 'orch network create {name}'")
            self.create_network(DEFAULT_NETWORK)

    def create_network(self, name: str, *, subnet: str | None = None, gateway: str | None = None, **kw):
        """A network; without --subnet, a subnet whose gateway's port 53 another program still
        holds (a DNS server left by another tool, seen here: podman's aardvark-dns outliving
        its network) is skipped for the next free one instead of failing."""
        from orch.net import ipam

        with self._lock:
            skipped: list[str] = []
            try:
                while True:
                    chosen = subnet
                    if subnet is None:
                        chosen = str(ipam.compute_subnet(self.nets.state.ipam, self.nets.kernel.host_routes() + skipped,
                                                         pools=self.nets.pools))
                    try:
                        return self.nets.create_network(name, subnet=chosen, gateway=gateway, **kw)
                    except Conflict as err:
                        if subnet is not None or gateway is not None or ":53 is already in use" not in str(err) or len(skipped) >= 8:
                            raise
                        skipped.append(chosen)
            finally:
                self._save()

    def remove_network(self, name: str, users: list[str]) -> None:
        with self._lock:
            self.nets.get(name)
            if users:
                raise Conflict(f"network {name} has active endpoints ({', '.join(users)}); "
                               f"stop them or run 'orch network disconnect {name} CONTAINER' first")
            try:
                self.nets.remove_network(name)
            finally:
                self._save()

    def prune(self) -> list[str]:
        with self._lock:
            try:
                return self.nets.prune(keep={DEFAULT_NETWORK})
            finally:
                self._save()

    # -- a container -------------------------------------------------------------------------
    def netns_path(self, cid: str) -> str:
        return self.nets.netns_path(cid)

    def config_parts(self, plan: dict, cid: str, cdir: Path, joined: dict | None) -> tuple[tuple[str, ...], str | None, tuple[Mount, ...]]:
        """(namespaces to drop, netns_path, mounts) for the ContainerConfig of a new container.
        `joined` is the record of the container whose namespace a container: mode joins."""
        if plan["mode"] == "host":
            return ("net",), None, _file_mounts(cdir)
        if plan["mode"] == "container":
            other = joined.orch.net if joined else {}
            if other.get("mode") == "host":
                return ("net",), None, _file_mounts(self.containers_dir / joined["Id"])
            if other.get("mode") == "none":
                # Its namespace is its pid 1's own (no file of ours); setup checks it runs.
                return (), f"/proc/{joined['State'].get('Pid', 0)}/ns/net", _file_mounts(self.containers_dir / joined["Id"])
            return (), self.netns_path(joined["Id"]), _file_mounts(self.containers_dir / joined["Id"])
        if plan["mode"] == "none":
            # A namespace with only `lo`: the container unshares its own and its init brings lo
            # up. Nothing to create here, hold, or release later: this is `run`'s fast path.
            return (), None, _file_mounts(cdir)
        return (), self.netns_path(cid), _file_mounts(cdir)

    def setup(self, rec: dict, joined: dict | None = None) -> None:
        """Make the container's network (see the module's doc); undone if any step fails."""
        plan, cid, cdir = rec.orch.net, rec["Id"], self.containers_dir / rec["Id"]
        hostname = rec["Config"]["Hostname"]
        if plan["mode"] == "container":
            if joined is None or not joined["State"]["Running"]:
                other = joined["Name"].lstrip("/") if joined else plan["container"][:12]
                raise Conflict(f"cannot join the network of container {other}: it is not running; start it first")
            return
        if plan["mode"] == "host":
            _write_files(cdir, _host_files(hostname, plan))
            return
        if plan["mode"] == "none":
            self.write_files(rec)
            return
        with self._lock:
            path = self.netns_path(cid)
            if self.nets.kernel.netns_exists(path):
                return
            # At create only: a restart later keeps whatever `show` said since.
            drained = rec["State"].get("Status") == "created" and (rec["Config"].get("Labels") or {}).get(START_DRAINED) == "true"
            if drained:
                self.nets.hide(cid)
            try:
                self.nets.create_netns(cid)
                if plan["mode"] == "none":
                    self.nets.kernel.loopback_up(path)
                for i, entry in enumerate(plan["networks"]):
                    self.ensure(entry["name"])
                    self._connect(rec, entry, publish=plan["ports"] if i == 0 else ())
                self.write_files(rec)
            except BaseException:
                self.nets.release_container(cid)
                if drained:
                    self.nets.forget([cid])
                raise
            finally:
                self._save()

    def setup_build(self, build_id: str) -> tuple[str, str]:
        """A network namespace on the default bridge for one build's RUN steps, as docker's
        classic builder gives them (NAT out, nothing of the host's loopback): (its path, the
        resolv.conf text the steps get). Undone by `release(build_id)`."""
        with self._lock:
            self.ensure(DEFAULT_NETWORK)
            path = self.nets.create_netns(build_id)
            try:
                self.nets.connect(DEFAULT_NETWORK, build_id, path)
                resolv = self.nets.container_files(build_id, build_id[:12])["resolv.conf"]
            except BaseException:
                self.nets.release_container(build_id)
                raise
            finally:
                self._save()
        return path, resolv

    def _connect(self, rec: dict, entry: dict, publish=()) -> None:
        name = rec["Name"].lstrip("/")
        names = tuple(dict.fromkeys((name, *entry.get("aliases", ()), rec["Id"][:12])))
        self.nets.connect(entry["name"], rec["Id"], self.netns_path(rec["Id"]), names=names,
                          ipv4_address=entry.get("ipv4_address"), publish=[PortMapping.from_json(p) for p in publish])

    def write_files(self, rec: dict) -> None:
        plan = rec.orch.net
        files = self.nets.container_files(
            rec["Id"], rec["Config"]["Hostname"], dns=tuple(plan.get("dns", ())), dns_search=tuple(plan.get("dns_search", ())),
            extra_hosts=tuple(tuple(h) for h in plan.get("extra_hosts", ())))
        _write_files(self.containers_dir / rec["Id"], files)

    def release(self, cid: str) -> None:
        """Everything of a container's network; safe to repeat, and for containers never set up.
        A container that is gone for good (its directory was removed) is forgotten too."""
        with self._lock:
            before = self.nets.state
            # Nothing held (network none or host, or released already): nothing to do.
            if self.nets.endpoints_of(cid) or self.is_set_up(cid):
                self.nets.release_container(cid)
            if self.nets.is_hidden(cid) and not (self.containers_dir / cid).exists():
                self.nets.forget([cid])
            if self.nets.state is not before:
                self._schedule_reap()  # which saves the state (see the module's doc)

    def _schedule_reap(self) -> None:
        if self._reaper is None:
            self._reaper = threading.Timer(REAP_AFTER, self.reap)
            self._reaper.daemon = True
            self._reaper.start()

    def reap(self) -> None:
        """The timer's work: free what the kernel has finished, delete what it left, save."""
        with self._lock:
            if self._reaper is not None:
                self._reaper.cancel()  # when called before the timer (tests, close)
                self._reaper = None
            try:
                self.nets.reap(force=True)
                # An overlay network whose last container went, and that the cluster no
                # longer asks for, goes now (its VXLAN device, bridge and entries).
                for warning in self.nets.prune_overlays():
                    print(f"agent: {warning}", file=sys.stderr, flush=True)
                self._save()
            except (OrchError, OSError) as err:  # the next change, or the next agent, repairs it
                print(f"agent: reaping released veths: {err}", file=sys.stderr, flush=True)

    def rename(self, cid: str, old: str, new: str) -> None:
        """`orch rename`: the DNS names the container by its new name."""
        with self._lock:
            self.nets.rename(cid, old, new)
            self._save()

    def hide(self, cid: str) -> None:
        """Drain: the DNS stops naming the container (orch.node.agent.routes_drain)."""
        with self._lock:
            self.nets.hide(cid)
            self._save()

    def show(self, cid: str) -> None:
        with self._lock:
            self.nets.show(cid)
            self._save()

    def is_set_up(self, cid: str) -> bool:
        return self.nets.kernel.netns_exists(self.netns_path(cid))

    def connect(self, rec: dict, network: str, aliases: list[str], ipv4_address: str | None) -> dict:
        """`orch network connect`: the plan gains the network; a running container joins it now."""
        with self._lock:
            self.ensure(network)
            plan = rec.orch.net
            if plan["mode"] != "bridge":
                raise InvalidArgument(f"container {rec['Name'].lstrip('/')} uses network mode {plan['mode']}; "
                                      "only containers on bridge networks can join other networks")
            if any(n["name"] == network for n in plan["networks"]):
                raise Conflict(f"container {rec['Name'].lstrip('/')} is already connected to network {network}")
            entry = {"name": network, "aliases": list(aliases), "ipv4_address": ipv4_address}
            if self.is_set_up(rec["Id"]):
                # The container's published ports go with it: a container whose ports went with
                # the network it left (compose v1 disconnects and connects a created container
                # to set its aliases) publishes them again on the network it joins.
                publish = [] if self.nets.publications_of(rec["Id"]) else list(plan.get("ports") or [])
                try:
                    self._connect(rec, entry, publish)
                    self.write_files(rec)
                finally:
                    self._save()
            return dict(plan, networks=plan["networks"] + [entry])

    def disconnect(self, rec: dict, network: str) -> dict:
        with self._lock:
            plan = rec.orch.net
            if not any(n["name"] == network for n in plan["networks"]):
                raise NotFound(f"container {rec['Name'].lstrip('/')} is not connected to network {network}")
            if any(e.network == network for e in self.nets.endpoints_of(rec["Id"])):
                try:
                    self.nets.disconnect(network, rec["Id"])
                    self.write_files(rec)
                finally:
                    self._save()
            return dict(plan, networks=[n for n in plan["networks"] if n["name"] != network])

    def reconcile(self, keep: set[str]) -> None:
        """After an agent start: release every container's network but those in `keep`
        (running or created ones), and namespace files no container owns."""
        with self._lock:
            owners = {e.container_id for e in self.nets.state.endpoints}
            netns_dir = Path(self.nets.run_dir) / "netns"
            if netns_dir.is_dir():
                owners |= {p.name for p in netns_dir.iterdir()}
            for cid in sorted(owners - keep):
                self.nets.release_container(cid)
            self.nets.forget([cid for cid in self.nets.state.hidden if not (self.containers_dir / cid).exists()])
            self._save()
            if self.nets.state.retiring:
                self._schedule_reap()

    # -- views -------------------------------------------------------------------------------
    def ports_text(self, cid: str) -> str:
        return compute_ports_text(self.nets.publications_of(cid))

    def settings(self, rec: dict) -> dict:
        cid = rec["Id"]
        up = self.is_set_up(cid)
        return compute_network_settings(rec.orch.net, self.nets.endpoints_of(cid), dict(self.nets.state.networks),
                                        self.nets.publications_of(cid), self.netns_path(cid) if up else "")


def _file_mounts(cdir: Path) -> tuple[Mount, ...]:
    # Read-write as docker mounts them (programs such as `hostname -F` or resolvconf write them).
    return tuple(Mount("bind", str(cdir / name), target, ("bind",)) for name, target in FILES)


def _write_files(cdir: Path, files: dict[str, str]) -> None:
    """Rewrite in place: a file bind-mounted into a running container is one inode, and a
    rename would leave the container with the old text."""
    for name, text in files.items():
        with open(cdir / name, "w") as f:
            f.write(text)


def _host_files(hostname: str, plan: dict) -> dict[str, str]:
    """--network host: the host's hosts (plus --add-host) and resolv.conf, as docker copies them."""
    hosts = _read("/etc/hosts") or "127.0.0.1\tlocalhost\n"
    hosts += "".join(f"{ip}\t{name}\n" for name, ip in plan.get("extra_hosts", ()))
    resolv = _read("/etc/resolv.conf")
    if plan.get("dns"):
        resolv = "".join(f"nameserver {d}\n" for d in plan["dns"])
    return {"hosts": hosts, "hostname": hostname + "\n", "resolv.conf": resolv}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _real_networks(run_dir: Path, prefix: str):
    from orch.net.dns import DnsService, host_upstreams
    from orch.net.files import parse_resolv_conf
    from orch.net.kernel import RealKernel
    from orch.net.manager import Networks

    return Networks(RealKernel(), run_dir=run_dir, dns=DnsService(host_upstreams()), table=prefix,
                    bridge_prefix=prefix + "-", host_resolv=parse_resolv_conf(_read("/etc/resolv.conf")))
