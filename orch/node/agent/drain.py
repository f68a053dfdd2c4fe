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
