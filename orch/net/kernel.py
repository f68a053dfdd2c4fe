"""The small door to the kernel's networking: netlink (pyroute2), namespaces, sysctls, nftables.

`Kernel` lists the operations the rest of orch/net needs, coarse enough that a recording fake
says something a test can check ("bridge X made with address Y"). `RealKernel` does them with
pyroute2 (never by running `ip`), `orch.net.netns` and `nft -f -`; `RecordingKernel` records
them and keeps just enough state (links, namespace files) to answer queries, as youki's
network fake does.

Every deletion is idempotent: removing what is already gone is not an error, so a tear-down
after a crash, or a retried one, always completes.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import subprocess
from pathlib import Path
from typing import Protocol

from orch.errors import SystemFailure
from orch.net import netns
from orch.net.overlay import ROUTE_PROTO, RULE_PRIORITY, VXLAN_PORT, node_mark

_NETLINK_ROUTE = 0
_NUD_PERMANENT = 0x80
_NTF_SELF = 0x02
_RTNH_F_ONLINK = 0x04
# /sys/class/net/<link>/addr_assign_type of an address given by someone (NET_ADDR_SET), which
# the kernel never changes; 0 and 1 are addresses it picked and may pick again.
ADDR_SET = "3"


def random_mac() -> str:
    """A random unicast, locally administered MAC (the first byte's low bits are 1 and 0)."""
    octets = bytearray(os.urandom(6))
    octets[0] = (octets[0] & 0xFC) | 0x02
    return ":".join(f"{b:02x}" for b in octets)


class Kernel(Protocol):
    def host_routes(self) -> list[str]: ...
    def link_exists(self, name: str) -> bool: ...
    def links_present(self, names: list[str]) -> list[str]: ...
    def create_bridge(self, name: str, address: str, prefixlen: int, mtu: int, mac: str | None = None) -> None: ...
    def pin_link_address(self, name: str) -> None: ...
    def delete_link(self, name: str) -> None: ...
    def create_veth(self, host_name: str, bridge: str, mtu: int, netns_path: str, ifname: str,
                    peer_mac: str | None = None) -> None: ...
    def create_vxlan(self, name: str, vni: int, local: str, bridge: str, mtu: int) -> None: ...
    def link_mtu_of(self, address: str) -> int: ...
    def links_with_prefix(self, prefix: str) -> list[str]: ...
    def sync_fdb(self, dev: str, want: frozenset[tuple[str, str]]) -> None: ...
    def sync_neigh(self, dev: str, want: frozenset[tuple[str, str]]) -> None: ...
    def sync_routes(self, dev: str, want: frozenset[tuple[str, str]]) -> None: ...
    def sync_return_rules(self, dev: str, want: frozenset[str]) -> None: ...
    def source_route_in_netns(self, netns_path: str, ifname: str, address: str, gateway: str, table: int) -> None: ...
    def apply_nft_in(self, netns_path: str, text: str) -> None: ...
    def configure_in_netns(self, netns_path: str, ifname: str, address: str, prefixlen: int,
                           gateway: str, default_route: bool) -> None: ...
    def loopback_up(self, netns_path: str) -> None: ...
    def create_netns(self, path: str) -> None: ...
    def remove_netns(self, path: str) -> None: ...
    def netns_exists(self, path: str) -> bool: ...
    def write_sysctl(self, key: str, value: str) -> None: ...
    def apply_nft(self, text: str) -> None: ...


def _fail(op: str, err: Exception) -> SystemFailure:
    # pyroute2's NetlinkError carries the kernel's errno as `code`; say it as strerror does.
    code = getattr(err, "code", None) or getattr(err, "errno", None)
    return SystemFailure(f"{op}: {os.strerror(code) if isinstance(code, int) else err}")


class RealKernel:
    """The kernel, through pyroute2's IPRoute (one netlink socket per call, closed after)."""

    def __init__(self, sysctl_root: str = "/proc/sys"):
        self.sysctl_root = Path(sysctl_root)

    def _ipr(self, netns_path: str | None = None):
        from pyroute2 import IPRoute  # imported here: the pure modules import this package

        if not netns_path:
            return IPRoute()
        # A netlink socket made inside the namespace (see netns.socket_in: no fork).
        sock = netns.socket_in(netns_path, socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE)
        return IPRoute(fileno=sock.detach())

    @staticmethod
    def _index(ipr, name: str) -> int | None:
        found = ipr.link_lookup(ifname=name)
        return found[0] if found else None

    def host_routes(self) -> list[str]:
        routes = []
        with self._ipr() as ipr:
            for msg in ipr.get_routes(family=2):
                dst = msg.get_attr("RTA_DST")
                if dst is None:
                    continue
                routes.append(str(ipaddress.IPv4Network(f"{dst}/{msg['dst_len']}", strict=False)))
        return routes

    def link_exists(self, name: str) -> bool:
        # One ioctl (SIOCGIFINDEX) in the host's namespace: microseconds, where a pyroute2
        # socket and lookup cost 1.5-4 ms here.
        try:
            socket.if_nametoindex(name)
            return True
        except OSError:
            return False

    def links_present(self, names: list[str]) -> list[str]:
        return [n for n in names if self.link_exists(n)]

    def create_bridge(self, name: str, address: str, prefixlen: int, mtu: int, mac: str | None = None) -> None:
        # The bridge gets a MAC of its own at creation. Without one, Linux gives a bridge the
        # lowest MAC among its ports and changes it as veths come and go; containers that
        # cached the gateway's old MAC then send to it into the void (DNS queries, replies to
        # published ports, egress) until their ARP entry expires, 5 to 45 s later. A MAC given
        # at creation is "set" (addr_assign_type 3) and the kernel leaves it alone. Docker
        # sets its bridges' MAC for the same reason.
        try:
            with self._ipr() as ipr:
                ipr.link("add", ifname=name, kind="bridge", mtu=mtu, address=mac or random_mac())
                try:
                    index = self._index(ipr, name)
                    ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
                    ipr.link("set", index=index, state="up")
                except Exception:
                    ipr.link("del", index=self._index(ipr, name))
                    raise
        except Exception as err:
            raise _fail(f"create bridge {name} ({address}/{prefixlen}, mtu {mtu})", err) from None

    def pin_link_address(self, name: str) -> None:
        """Give a link the MAC it has now as its own, if the kernel still picks it (a bridge
        made by an orch before `create_bridge` set one): the kernel then stops changing it."""
        try:
            try:
                with open(f"/sys/class/net/{name}/addr_assign_type") as f:
                    if f.read().strip() == ADDR_SET:
                        return
            except FileNotFoundError:
                # /sys shows the namespace that mounted it: an agent that entered its network
                # namespace with setns (a lab host) sees another one there. Netlink answers
                # for ours; giving the link its own MAC again marks it "set" all the same.
                pass
            with self._ipr() as ipr:
                index = self._index(ipr, name)
                mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
                ipr.link("set", index=index, address=mac)
        except Exception as err:
            raise _fail(f"pin the MAC address of {name}", err) from None

    def delete_link(self, name: str) -> None:
        if not self.link_exists(name):
            return  # most calls: connect clearing a leftover that is not there
        try:
            with self._ipr() as ipr:
                index = self._index(ipr, name)
                if index is not None:
                    ipr.link("del", index=index)
        except Exception as err:
            if getattr(err, "code", None) == errno.ENODEV:
                return  # gone meanwhile: the kernel destroyed its namespace (a veth's peer)
            raise _fail(f"delete link {name}", err) from None

    def create_veth(self, host_name: str, bridge: str, mtu: int, netns_path: str, ifname: str,
                    peer_mac: str | None = None) -> None:
        # One message makes the pair with the host end on the bridge and up, and the peer
        # already inside the container's namespace under its final name: no move, no rename
        # (a few ms instead of tens).
        try:
            fd = os.open(netns_path, os.O_RDONLY)
            try:
                peer = {"ifname": ifname, "mtu": mtu, "net_ns_fd": fd}
                if peer_mac:
                    peer["address"] = peer_mac
                with self._ipr() as ipr:
                    ipr.link("add", ifname=host_name, kind="veth", mtu=mtu, master=self._index(ipr, bridge),
                             state="up", peer=peer)
                    # Hairpin: with br_netfilter a container's packet to its own published
                    # port is DNATed on the bridge and must go back out the port it came by.
                    ipr.brport("set", index=self._index(ipr, host_name), mode=1)
            finally:
                os.close(fd)
        except Exception as err:
            raise _fail(f"create veth pair {host_name} (on bridge {bridge}) / {ifname} (in {netns_path})", err) from None

    def configure_in_netns(self, netns_path: str, ifname: str, address: str, prefixlen: int,
                           gateway: str, default_route: bool) -> None:
        try:
            with self._ipr(netns_path) as ipr:
                index = self._index(ipr, ifname)
                ipr.addr("add", index=index, address=address, prefixlen=prefixlen)
                ipr.link("set", index=index, state="up")
                # A new namespace's loopback is down; programs expect 127.0.0.1 to work.
                ipr.link("set", index=self._index(ipr, "lo"), state="up")
                if default_route:
                    ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index)
        except Exception as err:
            raise _fail(f"configure {ifname} ({address}/{prefixlen} via {gateway}) in network namespace {netns_path}", err) from None

    # -- overlays (orch.net.overlay) ------------------------------------------------------------
    def create_vxlan(self, name: str, vni: int, local: str, bridge: str, mtu: int) -> None:
        # nolearning: forwarding entries come from the cluster, never from what arrives; proxy:
        # the device answers ARP from its neighbour table and sends no ARP request anywhere.
        try:
            with self._ipr() as ipr:
                ipr.link("add", ifname=name, kind="vxlan", vxlan_id=vni, vxlan_local=local, vxlan_port=VXLAN_PORT,
                         vxlan_learning=0, vxlan_proxy=1, mtu=mtu, master=self._index(ipr, bridge))
                ipr.link("set", index=self._index(ipr, name), state="up")
        except Exception as err:
            raise _fail(f"create vxlan {name} (id {vni}, local {local}, on bridge {bridge}, mtu {mtu})", err) from None

    def link_mtu_of(self, address: str) -> int:
        with self._ipr() as ipr:
            for a in ipr.get_addr(family=socket.AF_INET):
                if a.get_attr("IFA_ADDRESS") == address:
                    link = ipr.get_links(a["index"])[0]
                    return int(link.get_attr("IFLA_MTU"))
        raise SystemFailure(f"no interface of this host has the address {address} (the node's underlay address)")

    def links_with_prefix(self, prefix: str) -> list[str]:
        with self._ipr() as ipr:
            names = [link.get_attr("IFLA_IFNAME") for link in ipr.get_links()]
        return sorted(n for n in names if n and n.startswith(prefix))

    def sync_fdb(self, dev: str, want: frozenset[tuple[str, str]]) -> None:
        try:
            with self._ipr() as ipr:
                index = self._index(ipr, dev)
                have = set()
                for e in ipr.fdb("dump", ifindex=index):
                    dst = e.get_attr("NDA_DST")
                    if e["ifindex"] == index and e["flags"] & _NTF_SELF and dst:
                        have.add((e.get_attr("NDA_LLADDR"), dst))
                for mac, dst in sorted(have - want):
                    ipr.fdb("del", ifindex=index, lladdr=mac, dst=dst)
                for mac, dst in sorted(want - have):
                    ipr.fdb("append", ifindex=index, lladdr=mac, dst=dst)
        except Exception as err:
            raise _fail(f"program the forwarding entries of {dev}", err) from None

    def sync_neigh(self, dev: str, want: frozenset[tuple[str, str]]) -> None:
        try:
            with self._ipr() as ipr:
                index = self._index(ipr, dev)
                have = {(n.get_attr("NDA_DST"), n.get_attr("NDA_LLADDR")) for n in ipr.get_neighbours(family=socket.AF_INET, ifindex=index)
                        if n["ifindex"] == index and n["state"] & _NUD_PERMANENT}
                for address, mac in sorted(have - want):
                    ipr.neigh("del", ifindex=index, dst=address, lladdr=mac)
                for address, mac in sorted(want - have):
                    ipr.neigh("replace", ifindex=index, dst=address, lladdr=mac, state=_NUD_PERMANENT)
        except Exception as err:
            raise _fail(f"program the neighbour entries of {dev}", err) from None

    def sync_routes(self, dev: str, want: frozenset[tuple[str, str]]) -> None:
        """Host routes `address/32 via node dev <dev> onlink` (orch's protocol, main table)."""
        try:
            with self._ipr() as ipr:
                index = self._index(ipr, dev)
                have = {(r.get_attr("RTA_DST"), r.get_attr("RTA_GATEWAY")) for r in ipr.get_routes(family=socket.AF_INET, table=254)
                        if r["proto"] == ROUTE_PROTO and r.get_attr("RTA_OIF") == index and r["dst_len"] == 32}
                for address, via in sorted(have - want):
                    ipr.route("del", dst=f"{address}/32", gateway=via, oif=index, proto=ROUTE_PROTO)
                for address, via in sorted(want - have):
                    ipr.route("replace", dst=f"{address}/32", gateway=via, oif=index, flags=_RTNH_F_ONLINK, proto=ROUTE_PROTO)
        except Exception as err:
            raise _fail(f"program the routes through {dev}", err) from None

    def sync_return_rules(self, dev: str, want: frozenset[str]) -> None:
        """For each node address N: `fwmark N iif <dev> lookup N` (priority RULE_PRIORITY) and
        table N's `default via N dev <dev> onlink`. Rules of that priority not wanted go."""
        try:
            with self._ipr() as ipr:
                index = self._index(ipr, dev) if dev else None
                marks = {node_mark(v): v for v in want}
                have = {}
                for r in ipr.get_rules(family=socket.AF_INET):
                    if r.get_attr("FRA_PRIORITY") == RULE_PRIORITY:
                        have[(r.get_attr("FRA_FWMARK"), r.get_attr("FRA_TABLE"), r.get_attr("FRA_IIFNAME"))] = r
                for mark, table, iif in sorted(have, key=str):
                    if mark in marks and table == mark and iif == dev:
                        continue
                    ipr.rule("del", priority=RULE_PRIORITY, fwmark=mark, table=table, **({"iifname": iif} if iif else {}))
                    for route in ipr.get_routes(family=socket.AF_INET, table=table):
                        if route["proto"] == ROUTE_PROTO:
                            ipr.route("del", table=table, dst="0.0.0.0/0", proto=ROUTE_PROTO)
                for mark, vtep in sorted(marks.items()):
                    ipr.route("replace", dst="0.0.0.0/0", gateway=vtep, oif=index, flags=_RTNH_F_ONLINK, table=mark, proto=ROUTE_PROTO)
                    if (mark, mark, dev) not in have:
                        ipr.rule("add", priority=RULE_PRIORITY, fwmark=mark, table=mark, iifname=dev)
        except Exception as err:
            raise _fail(f"program the routing mesh's return rules through {dev or 'no bridge'}", err) from None

    def source_route_in_netns(self, netns_path: str, ifname: str, address: str, gateway: str, table: int) -> None:
        # A container's replies from its ingress address leave by its ingress interface, so that
        # they reach the node that forwarded the connection (and its connection mark).
        try:
            with self._ipr(netns_path) as ipr:
                index = self._index(ipr, ifname)
                ipr.route("replace", dst="0.0.0.0/0", gateway=gateway, oif=index, table=table)
                ipr.rule("add", priority=RULE_PRIORITY, src=address, src_len=32, table=table)
        except Exception as err:
            raise _fail(f"route replies from {address} through {ifname} in network namespace {netns_path}", err) from None

    def apply_nft_in(self, netns_path: str, text: str) -> None:
        # nft has no namespace option; nsenter joins the namespace file and runs it (the agent
        # never forks itself into another namespace).
        try:
            result = subprocess.run(["nsenter", f"--net={netns_path}", "nft", "-f", "-"], input=text,
                                    capture_output=True, text=True)
        except FileNotFoundError as err:
            raise SystemFailure(f"load nftables rules in {netns_path}: {err.filename} not found (util-linux, nftables)") from None
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
            raise SystemFailure(f"load nftables rules in network namespace {netns_path}: {first}")

    def loopback_up(self, netns_path: str) -> None:
        # --network none: a namespace with only lo, which programs expect to be up.
        try:
            with self._ipr(netns_path) as ipr:
                ipr.link("set", index=self._index(ipr, "lo"), state="up")
        except Exception as err:
            raise _fail(f"bring lo up in network namespace {netns_path}", err) from None

    def create_netns(self, path: str) -> None:
        netns.create(path)

    def remove_netns(self, path: str) -> None:
        netns.remove(path)

    def netns_exists(self, path: str) -> bool:
        return netns.is_namespace(path)

    def write_sysctl(self, key: str, value: str) -> None:
        target = self.sysctl_root / key.replace(".", "/")
        try:
            if target.read_text().strip() != value:
                target.write_text(value + "\n")
        except OSError as err:
            raise _fail(f"set sysctl {key}={value}", err) from None

    def apply_nft(self, text: str) -> None:
        try:
            result = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
        except FileNotFoundError:
            raise SystemFailure("nft not found: install nftables (apt-get install nftables)") from None
        if result.returncode != 0:
            first = (result.stderr.strip().splitlines() or ["(no message)"])[0]
            raise SystemFailure(f"load nftables rules with 'nft -f -': {first}")


class RecordingKernel:
    """A fake `Kernel`: records every call in `calls` and keeps a set of links and namespaces.

    Removing a namespace deletes the host ends of the veths into it at once, unless
    `background_cleanup` is set: then they stay (in `dying`) until `finish_cleanup()`, as when
    the real kernel has not got round to destroying the namespace yet."""

    def __init__(self, routes: list[str] | None = None, *, background_cleanup: bool = False):
        self.routes = list(routes or ["192.0.2.0/24"])
        self.background_cleanup = background_cleanup
        self.calls: list[tuple] = []
        self.links: set[str] = set()
        self.peers: dict[str, str] = {}  # host end -> the namespace its peer is in
        self.dying: set[str] = set()
        self.namespaces: dict[str, set[str]] = {}
        self.sysctls: dict[str, str] = {}
        self.nft: list[str] = []
        self.macs: dict[str, str] = {}  # link (or container interface "netns:ifname") -> MAC given
        self.fdb: dict[str, frozenset] = {}
        self.neigh: dict[str, frozenset] = {}
        self.routes_via: dict[str, frozenset] = {}
        self.return_rules: frozenset[str] = frozenset()
        self.return_dev = ""
        self.nft_in: dict[str, str] = {}  # namespace -> the last table text loaded there
        self.underlay_mtu = 1500

    def finish_cleanup(self) -> None:
        self.links -= self.dying
        self.dying.clear()

    def host_routes(self) -> list[str]:
        return list(self.routes)

    def link_exists(self, name: str) -> bool:
        return name in self.links

    def links_present(self, names):
        return [n for n in names if n in self.links]

    def create_bridge(self, name, address, prefixlen, mtu, mac=None):
        self.calls.append(("create_bridge", name, address, prefixlen, mtu))
        self.links.add(name)
        if mac:
            self.macs[name] = mac

    def pin_link_address(self, name):
        self.calls.append(("pin_link_address", name))

    def delete_link(self, name):
        self.calls.append(("delete_link", name))
        self.links.discard(name)
        self.dying.discard(name)
        self.peers.pop(name, None)
        for table in (self.fdb, self.neigh, self.routes_via, self.macs):
            table.pop(name, None)

    def create_veth(self, host_name, bridge, mtu, netns_path, ifname, peer_mac=None):
        self.calls.append(("create_veth", host_name, bridge, mtu, netns_path, ifname))
        self.links.add(host_name)
        self.peers[host_name] = netns_path
        self.namespaces[netns_path].add(ifname)
        if peer_mac:
            self.macs[f"{netns_path}:{ifname}"] = peer_mac

    def create_vxlan(self, name, vni, local, bridge, mtu):
        self.calls.append(("create_vxlan", name, vni, local, bridge, mtu))
        self.links.add(name)

    def link_mtu_of(self, address):
        return self.underlay_mtu

    def links_with_prefix(self, prefix):
        return sorted(n for n in self.links if n.startswith(prefix))

    def sync_fdb(self, dev, want):
        self.calls.append(("sync_fdb", dev))
        self.fdb[dev] = frozenset(want)

    def sync_neigh(self, dev, want):
        self.calls.append(("sync_neigh", dev))
        self.neigh[dev] = frozenset(want)

    def sync_routes(self, dev, want):
        self.calls.append(("sync_routes", dev))
        self.routes_via[dev] = frozenset(want)

    def sync_return_rules(self, dev, want):
        self.calls.append(("sync_return_rules", dev))
        self.return_rules, self.return_dev = frozenset(want), dev

    def source_route_in_netns(self, netns_path, ifname, address, gateway, table):
        self.calls.append(("source_route_in_netns", netns_path, ifname, address, gateway, table))

    def apply_nft_in(self, netns_path, text):
        self.calls.append(("apply_nft_in", netns_path))
        self.nft_in[netns_path] = text

    def configure_in_netns(self, netns_path, ifname, address, prefixlen, gateway, default_route):
        self.calls.append(("configure_in_netns", netns_path, ifname, address, prefixlen, gateway, default_route))

    def loopback_up(self, netns_path):
        self.calls.append(("loopback_up", netns_path))

    def create_netns(self, path):
        self.calls.append(("create_netns", path))
        self.namespaces[path] = {"lo"}

    def remove_netns(self, path):
        self.calls.append(("remove_netns", path))
        self.nft_in.pop(path, None)
        if self.namespaces.pop(path, None) is not None:
            peers = {h for h, p in self.peers.items() if p == path}
            for host in peers:
                del self.peers[host]
            self.dying |= peers
            if not self.background_cleanup:
                self.finish_cleanup()

    def netns_exists(self, path):
        return path in self.namespaces

    def write_sysctl(self, key, value):
        self.calls.append(("write_sysctl", key, value))
        self.sysctls[key] = value

    def apply_nft(self, text):
        self.calls.append(("apply_nft",))
        self.nft.append(text)
