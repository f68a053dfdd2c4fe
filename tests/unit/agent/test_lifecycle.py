"""Every (state, operation) pair of the container lifecycle: allowed ones with the state they
lead to, forbidden ones with the exact message a user sees."""

import itertools

import pytest

from orch.errors import Conflict
from orch.node.runtime import lifecycle
from orch.node.runtime.lifecycle import OPS, STATES, transition

RM_RUNNING = 'cannot remove container "/web": container is running; stop it before removing or force remove (-f)'
RM_PAUSED = 'cannot remove container "/web": container is paused; stop it before removing or force remove (-f)'
NOT_RUNNING = "container web is not running; start it first"
IN_PROGRESS = "removal of container web is already in progress"
DEAD = "container web is dead; remove it with 'orch rm web'"

# (state, op): next state (allowed) or the Conflict message (forbidden). Every pair is listed.
TABLE = {
    ("created", "start"): "running",
    ("created", "stop"): "created",
    ("created", "kill"): NOT_RUNNING,
    ("created", "pause"): NOT_RUNNING,
    ("created", "unpause"): "container web is not paused",
    ("created", "restart"): "running",
    ("created", "exec"): NOT_RUNNING,
    ("created", "remove"): "removing",
    ("created", "force_remove"): "removing",
    ("created", "exit"): "container web cannot take the event 'exit' in state created",
    ("created", "start_failed"): "created",
    ("running", "start"): "running",
    ("running", "stop"): "running",
    ("running", "kill"): "running",
    ("running", "pause"): "paused",
    ("running", "unpause"): "container web is not paused",
    ("running", "restart"): "running",
    ("running", "exec"): "running",
    ("running", "remove"): RM_RUNNING,
    ("running", "force_remove"): "removing",
    ("running", "exit"): "exited",
    ("running", "start_failed"): "container web cannot take the event 'start_failed' in state running",
    ("paused", "start"): "cannot start a paused container web; unpause it first",
    ("paused", "stop"): "paused",
    ("paused", "kill"): "paused",
    ("paused", "pause"): "container web is already paused",
    ("paused", "unpause"): "running",
    ("paused", "restart"): "running",
    ("paused", "exec"): "container web is paused; unpause it before exec",
    ("paused", "remove"): RM_PAUSED,
    ("paused", "force_remove"): "removing",
    ("paused", "exit"): "exited",
    ("paused", "start_failed"): "container web cannot take the event 'start_failed' in state paused",
    ("exited", "start"): "running",
    ("exited", "stop"): "exited",
    ("exited", "kill"): NOT_RUNNING,
    ("exited", "pause"): NOT_RUNNING,
    ("exited", "unpause"): "container web is not paused",
    ("exited", "restart"): "running",
    ("exited", "exec"): NOT_RUNNING,
    ("exited", "remove"): "removing",
    ("exited", "force_remove"): "removing",
    ("exited", "exit"): "container web cannot take the event 'exit' in state exited",
    ("exited", "start_failed"): "exited",
    **{("removing", op): IN_PROGRESS for op in OPS if op != "exit"},
    ("removing", "exit"): "removing",
    **{("dead", op): DEAD for op in OPS if op not in ("remove", "force_remove")},
    ("dead", "remove"): "removing",
    ("dead", "force_remove"): "removing",
}


def test_the_table_lists_every_pair():
    assert set(TABLE) == set(itertools.product(STATES, OPS))


@pytest.mark.parametrize("state,op", sorted(TABLE))
def test_transition(state, op):
    expected = TABLE[(state, op)]
    if expected in STATES:
        assert transition(state, op, "web") == expected
    else:
        with pytest.raises(Conflict) as info:
            transition(state, op, "web")
        assert str(info.value) == expected


def test_unknown_state_or_op_is_a_bug():
    with pytest.raises(ValueError):
        transition("sleeping", "start", "web")
    with pytest.raises(ValueError):
        transition("running", "fly", "web")


def test_is_running_counts_paused():
    assert [s for s in STATES if lifecycle.is_running(s)] == ["running", "paused"]
