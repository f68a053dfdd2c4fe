"""Service discovery as a pure lookup: which addresses a name has, seen from a container.

The embedded DNS server (`orch.net.dns`) holds a `NameTable` built from the node's endpoints and
asks `compute_answer` for every query. The rules, as docker's embedded DNS has them:
- A container on network N resolves the names (container name, aliases, service name) of
  every endpoint on the networks it is on, and nothing of the networks it is not on.
- Several endpoints with one name (the replicas of a service) give all their addresses; the
  server rotates the list on every query (round-robin), `rotation` says by how much.
- Names are case-insensitive; a trailing dot and the `.<network>` suffix are accepted
  (`db.backend` is `db` on network `backend`).
- A name the table does not know is forwarded upstream, except from an internal network,
  which has no way out (the answer is NXDOMAIN).
- A hidden (drained) container's names are left out, so nobody is sent to it any more; it
  still resolves the others' names (its own addresses still scope its view).
- On a cluster's overlay network, a service's name (and its stack-local short name) answers
  its virtual IP, or its tasks' addresses in dnsrr mode; `tasks.NAME` answers the addresses of
  the tasks that serve. A name known but with no address (a service with no serving task)
  answers NXDOMAIN, as docker's does.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from orch.net.model import Endpoint


@dataclass(frozen=True)
class NameTable:
    # network -> name (lower case) -> addresses, in the order the endpoints were given.
    names: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    # address -> networks the owner of that address is on (to scope a client's view).
    networks_of: dict[str, frozenset[str]] = field(default_factory=dict)
    internal: frozenset[str] = frozenset()


def compute_name_table(endpoints: list[Endpoint], internal: frozenset[str] = frozenset(),
                       hidden: frozenset[str] = frozenset(),
                       cluster: dict[str, dict[str, tuple[str, ...]]] | None = None) -> NameTable:
    """The table for `endpoints`; containers in `hidden` (ids) are not named. `cluster` adds
    the names a cluster gives on its overlay networks (network -> name -> addresses: services,
    `tasks.NAME`; orch.net.overlay.compute_cluster_names); they take precedence over a local
    container's alias of the same name."""
    names: dict[str, dict[str, list[str]]] = {}
    by_container: dict[str, set[str]] = {}
    addresses_of: dict[str, list[str]] = {}
    for ep in endpoints:
        table = names.setdefault(ep.network, {})
        shown = () if ep.container_id in hidden else ep.names
        for name in dict.fromkeys(n.lower() for n in shown):
            table.setdefault(name, [])
            if ep.address not in table[name]:
                table[name].append(ep.address)
        by_container.setdefault(ep.container_id, set()).add(ep.network)
        addresses_of.setdefault(ep.container_id, []).append(ep.address)
    for net, table in (cluster or {}).items():
        mine = names.setdefault(net, {})
        for name, addrs in table.items():
            mine[name] = list(addrs)
    networks_of = {
        addr: frozenset(by_container[cid]) for cid, addrs in addresses_of.items() for addr in addrs
    }
    frozen = {net: {n: tuple(a) for n, a in t.items()} for net, t in names.items()}
    return NameTable(frozen, networks_of, frozenset(internal))


@dataclass(frozen=True)
class Answer:
    addresses: tuple[str, ...]  # empty: the name is not ours
    forward: bool  # ask the upstream resolvers


def compute_answer(table: NameTable, network: str, client: str, qname: str, rotation: int = 0) -> Answer:
    """The addresses of `qname` for a query from `client` that reached the server of `network`."""
    name = qname.rstrip(".").lower()
    visible = table.networks_of.get(client) or frozenset({network})
    # The network the query came in on first, then the client's others in a stable order.
    order = [network] + sorted(visible - {network}) if network in visible else sorted(visible)
    found: list[str] = []
    known = False
    for net in order:
        candidates = [name]
        suffix = "." + net.lower()
        if name.endswith(suffix):
            candidates.append(name[: -len(suffix)])
        for cand in candidates:
            addrs = table.names.get(net, {}).get(cand)
            known = known or addrs is not None
            for addr in addrs or ():
                if addr not in found:
                    found.append(addr)
    if found:
        shift = rotation % len(found)
        return Answer(tuple(found[shift:] + found[:shift]), False)
    if known:
        return Answer((), False)  # ours, with no address now (a service whose tasks all left)
    # A client with any non-internal network may reach the outside, so its queries may too.
    return Answer((), bool(visible - table.internal))
