"""The node's side of a drain: look at the connections to a container until the drain rule
(orch.scheduler.drain.compute_drain) says it may stop.

The agent owns the node's networking, so it is the one that can answer "connections to this
container now": the host's connection tracking (orch.net.conntrack) filtered on each of the
container's addresses. `watch_drain` is the loop; it asks the rule after every look and sleeps
until the rule's `next_check_at` (trio's clock: a MockClock in tests). The routes are in
routes_drain.py.

What the node cannot see, it says (`Visibility`): connections between containers on one bridge
reach the host's table only through br_netfilter (bridge-nf-call-iptables, on by default); a
kernel without ctnetlink sees nothing. A drain that cannot see waits the quiet period only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

import trio

from orch.scheduler.drain import DrainPolicy, DrainState, DrainStep, compute_drain, compute_sample

# One look: (id, open) of each connection to the container.
Look = Callable[[], Awaitable[list[tuple[int, bool]]]]


@dataclass(frozen=True)
class Visibility:
    visible: bool
    why: str = ""  # when not visible: what hides the connections


async def watch_drain(look: Look, policy: DrainPolicy) -> AsyncIterator[DrainStep]:
    """Every step of the drain, the last one with `stop` set."""
    state, seen = DrainState.begin(trio.current_time()), None
    while True:
        connections = await look()
        sample, seen = compute_sample(trio.current_time(), seen, connections)
        step = compute_drain(state, sample, policy)
        state = step.state
        yield step
        if step.stop:
            return
        await trio.sleep_until(step.next_check_at)


def container_addresses(nets, cid: str) -> list[tuple[str, str]]:
    """(address, bridge) of each network the container is on, from the node's `Networks`."""
    found = []
    for ep in nets.endpoints_of(cid):
        try:
            found.append((ep.address, nets.get(ep.network).bridge))
        except Exception:  # the network went meanwhile: nothing to see there
            continue
    return found


def visibility(addresses: list[tuple[str, str]]) -> Visibility:
    from orch.net.conntrack import bridged_flows_visible

    if not addresses:
        return Visibility(False, "it has no address on a network of this node")
    hidden = [bridge for _, bridge in addresses if not bridged_flows_visible(bridge)]
    if hidden:
        return Visibility(False, f"connections from containers on {', '.join(hidden)} do not pass the host's connection "
                                 "tracking (net.bridge.bridge-nf-call-iptables is 0)")
    return Visibility(True)


def connections_now(addresses: list[tuple[str, str]]) -> list:
    """The flows to any of the addresses (blocking: call it in a thread)."""
    from orch.net.conntrack import flows_to

    return [flow for address, _ in addresses for flow in flows_to(address)]


async def drain_container(node, rec, grace: float | None) -> str:
    """Wait until the container's clients are gone (the rule above, at most `grace` seconds,
    the stop timeout when None): a cluster task leaving the balancers before it stops
    (orch.cluster.worker). Returns the reason it may stop ("idle", "grace", "not running")."""
    from orch.scheduler.drain import DEFAULT_GRACE, DrainPolicy

    if rec["State"]["Status"] not in ("running", "paused"):
        return "not running"
    if grace is None:
        grace = rec["Config"].get("StopTimeout")
    policy = DrainPolicy(grace=DEFAULT_GRACE if grace is None else max(float(grace), 0.0))
    addresses = [] if node.net is None else container_addresses(node.net.nets, rec["Id"])
    blind = False

    async def look():
        nonlocal blind
        if blind or not addresses:
            return []
        try:
            flows = await trio.to_thread.run_sync(connections_now, addresses)
        except OSError:
            blind = True  # no ctnetlink: the quiet period only
            return []
        return [(f.id, f.open) for f in flows]

    async for step in watch_drain(look, policy):
        if step.stop:
            return step.reason
    return "idle"
