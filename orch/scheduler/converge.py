"""The converge loop: observe, plan, apply, again, until a pass finds nothing left to do.

One loop for every driver of the reconciler: the compose executor (orch.compose.engine) runs
it against the agent's API and the wall clock, the tests run it against FakeNode
(orch.scheduler.testing), which plays containers forward on a mock clock, and a cluster
manager will run it against its nodes. What differs is the node behind the `ConvergeNode`
interface; the loop is the same code.

It is level-triggered, like the reconciler it drives: every pass observes the whole state
afresh and plans from it, so an interrupted loop needs no repair (the next one sees what is
there). A pass whose plan has actions applies them and observes again at once; a pass without
waits until the plan's `next_check_at` or the node's next change. Every pass is handed to the
caller first (this is a generator): the caller reports it and stops the loop when it has what
it wants (converged, failed, healthy, out of time).

Restarts that a restart policy asks for belong to the node (the agent's supervision, which
goes on when no executor runs): the loop never applies them, and a plan that waits only for
such restarts is `settled`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Protocol

from orch.scheduler.model import WAIT_RESTART_BACKOFF, Action, DesiredState, ObservedState, Plan, ReconcileOptions
from orch.scheduler.reconcile import plan_reconcile


class ConvergeNode(Protocol):
    """What the loop drives: a node's containers, as observed state and plans to apply."""

    def now(self) -> float: ...

    def observe(self) -> ObservedState: ...

    def apply(self, plan: Plan) -> None: ...

    def wait(self, until: float | None) -> bool:
        """Return at `until`, or earlier when the node may have changed; False when nothing
        can change any more (a fake node with no event ahead), which ends the loop."""
        ...


@dataclass(frozen=True)
class Pass:
    """One turn of the loop: what it saw, what it planned, and the actions it applies next
    (the plan's, less those left to the node)."""

    observed: ObservedState
    plan: Plan
    now: float
    todo: tuple[Action, ...]
    acted: bool  # an earlier pass of this loop applied actions

    @property
    def settled(self) -> bool:
        """Nothing for the loop to do now or later: converged, or only the node's own restarts
        are pending (plan_reconcile's WAIT_RESTART_BACKOFF)."""
        return not self.todo and all(w.kind == WAIT_RESTART_BACKOFF for w in self.plan.waiting)


def left_to_node(action: Action) -> bool:
    """A restart the restart policy asks for (it carries the attempt): the node performs it."""
    return action.kind == "restart" and action.attempt is not None


def converge(desired: DesiredState, node: ConvergeNode, *, options: ReconcileOptions = ReconcileOptions()) -> Iterator[Pass]:
    """Observe, plan, hand the pass to the caller, apply; wait when there is nothing to apply.
    Ends when the caller stops iterating or the node says nothing will change any more."""
    acted = False
    while True:
        now = node.now()
        observed = node.observe()
        plan = plan_reconcile(desired, observed, now=now, options=options)
        todo = tuple(a for a in plan.actions if not left_to_node(a))
        yield Pass(observed, plan, now, todo, acted)
        if todo:
            node.apply(replace(plan, actions=todo))
            acted = True
        elif not node.wait(plan.next_check_at):
            return
