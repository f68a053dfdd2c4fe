"""The agent's drain loop on trio's MockClock: a scripted timeline of connections in, the moment
the loop lets the container stop out. No real time passes (autojump)."""

from __future__ import annotations

import trio
import trio.testing

from orch.node.agent.drain import watch_drain
from orch.scheduler.drain import DrainPolicy


class FakeConnections:
    """Connections as a timeline: id -> (arrives at, ends at), times relative to the start."""

    def __init__(self, timeline: dict[int, tuple[float, float]]):
        self.timeline = timeline
        self.start = trio.current_time()
        self.looks = 0

    async def look(self):
        self.looks += 1
        now = trio.current_time() - self.start
        # A connection that has ended stays visible (TIME_WAIT), closed, as conntrack keeps it.
        return [(ident, now < ends) for ident, (arrives, ends) in self.timeline.items() if arrives <= now]


async def drained_after(timeline, policy=DrainPolicy(grace=10.0, quiet=1.0, poll=0.1)):
    """(seconds until the loop let go, its last step, the open counts it reported in order)."""
    fake = FakeConnections(timeline)
    start = trio.current_time()
    counts = []
    async for step in watch_drain(fake.look, policy):
        if not counts or counts[-1] != step.open:
            counts.append(step.open)
        last = step
    return round(trio.current_time() - start, 6), last, counts


async def test_an_idle_replica_waits_only_the_quiet_period(autojump_clock):
    took, step, counts = await drained_after({})
    assert (took, step.reason, counts) == (1.0, "idle", [0])


async def test_a_slow_request_holds_the_replica_until_it_ends_then_the_quiet_period(autojump_clock):
    # Connection 1 was open before the drain and lasts 3.05 s; the loop sees it end at 3.1.
    took, step, counts = await drained_after({1: (-5.0, 3.05)})
    assert (took, step.reason, counts) == (3.1, "idle", [1, 0])


async def test_a_late_client_that_came_and_went_between_two_looks_restarts_the_quiet_period(autojump_clock):
    # Connection 2 arrives at 0.72 and is over at 0.74: the look at 0.8 sees it, closed.
    took, step, counts = await drained_after({2: (0.72, 0.74)})
    assert (took, step.reason, counts) == (1.8, "idle", [0])


async def test_a_connection_held_forever_is_cut_at_the_grace_period(autojump_clock):
    took, step, counts = await drained_after({1: (-1.0, float("inf"))}, DrainPolicy(grace=4.0))
    assert (took, step.reason, step.open, counts) == (4.0, "grace", 1, [1])
