"""Draining a replica before it stops: when may it stop? A pure rule over what the node sees.

A replica being replaced (a rolling update, a scale-down, a node set to drain) is first unnamed
in DNS, so that new clients go to the others. It keeps serving until nobody needs it:

1. No client holds a connection to it. The node counts them in its connection tracking
   (orch.net.conntrack); a connection that is over (TCP TIME_WAIT) is no longer held.
2. No new connection has arrived for `quiet` seconds. A client that resolved the replica's
   address just before the DNS changed connects a moment later; every arrival restarts the
   wait. The wait starts with the drain, so even a replica nobody talks to waits `quiet`.
3. The whole drain lasts at most `grace` seconds, the service's stop_grace_period: a client
   that keeps its connection open (a long poll, a stream, a pool of idle connections) does not
   hold an update forever. At the bound the replica is stopped with its connections, as docker
   stops a container that outlives its grace period.

The rule is `compute_drain(state, sample, policy) -> DrainStep`: the clock is the samples'
times, so tests are tables of samples. Its drivers: the node agent's drain loop
(orch.node.agent.drain), which samples conntrack and asks again at `next_check_at`, and the
cluster's orchestrator, whose stop gate asks the same rule with the counts a node reports.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable

# Long enough for a client that resolved the old address just before the drain to connect
# (milliseconds, even on a loaded machine), short enough that an update of a service nobody
# uses costs about a second per replaced replica.
QUIET_SECONDS = 1.0
# How often a driver looks at the connections while it waits: arrivals are timed to this.
POLL_SECONDS = 0.1
DEFAULT_GRACE = 10.0  # docker's stop timeout, when a service gives no stop_grace_period


@dataclass(frozen=True)
class DrainPolicy:
    grace: float = DEFAULT_GRACE  # the longest a drain lasts (the service's stop_grace_period)
    quiet: float = QUIET_SECONDS  # no connection held and none arriving for this long: done
    poll: float = POLL_SECONDS  # how soon to look again while connections are held


@dataclass(frozen=True)
class ConnectionSample:
    """What the node saw at one moment."""

    at: float
    open: int  # connections to the replica that clients hold now
    arrived: int = 0  # connections that appeared since the previous sample


@dataclass(frozen=True)
class DrainState:
    started: float
    last_arrival: float  # when the drain started, or the last sample that saw an arrival

    @classmethod
    def begin(cls, at: float) -> DrainState:
        return cls(started=at, last_arrival=at)


@dataclass(frozen=True)
class DrainStep:
    state: DrainState
    stop: bool
    reason: str  # "idle", "grace", or why it waits
    open: int
    next_check_at: float | None = None  # when to sample again (None once it may stop)


def compute_drain(state: DrainState, sample: ConnectionSample, policy: DrainPolicy) -> DrainStep:
    """May the replica stop now? If not, when to look again."""
    now = sample.at
    state = replace(state, last_arrival=now) if sample.arrived > 0 else state
    deadline = state.started + max(policy.grace, 0.0)
    quiet_until = state.last_arrival + policy.quiet
    if sample.open == 0 and now >= quiet_until:
        return DrainStep(state, True, "idle", 0)
    if now >= deadline:
        return DrainStep(state, True, "grace", sample.open)
    if sample.open:
        s = "" if sample.open == 1 else "s"
        return DrainStep(state, False, f"{sample.open} connection{s} open", sample.open,
                         next_check_at=min(now + policy.poll, deadline))
    return DrainStep(state, False, f"no connection; quiet until {quiet_until:g}", 0,
                     next_check_at=min(now + policy.poll, quiet_until, deadline))


def compute_sample(at: float, seen: frozenset[int] | None, connections: Iterable[tuple[int, bool]]
                   ) -> tuple[ConnectionSample, frozenset[int]]:
    """Counts from one look at the connections, given as (id, open) pairs, and the ids seen so
    far: an id not seen before is an arrival, also one already over (it came and went between
    two looks). The first look (`seen` None) is the baseline: it counts no arrival."""
    connections = list(connections)
    ids = frozenset(ident for ident, _ in connections)
    arrived = 0 if seen is None else len(ids - seen)
    opened = sum(1 for _, held in connections if held)
    return ConnectionSample(at, opened, arrived), ids if seen is None else seen | ids
