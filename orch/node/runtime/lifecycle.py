"""A container's lifecycle as a table of allowed transitions (pure: no I/O).

Rules, in the manner of h11's `_state.py` and runc's `state_linux.go`:

- States: created (made, never started or a start failed), running, paused (frozen by the
  cgroup freezer), exited (pid 1 is gone; the exit code is kept), removing (an `rm` is under
  way), dead (a removal failed half-way; only another `rm` helps).
- Operations come from users (start, stop, kill, pause, unpause, restart, exec, remove,
  force_remove) or from the supervisor (exit: pid 1 was reaped; start_failed: the runtime
  could not start the program).
- `transition(state, op, name)` returns the state to record at once, or raises Conflict with
  the one-line message a user sees. Operations that end in another state later (stop: running
  until the exit event arrives) return the state that holds meanwhile.
- Idempotent operations are allowed, as docker allows them: start of a running container and
  stop of a stopped one do nothing.
"""

from orch.errors import Conflict

STATES = ("created", "running", "paused", "exited", "removing", "dead")
OPS = ("start", "stop", "kill", "pause", "unpause", "restart", "exec", "remove", "force_remove", "exit", "start_failed")

# (state, op) -> the state recorded once the operation is accepted.
ALLOWED: dict[tuple[str, str], str] = {
    ("created", "start"): "running",
    ("created", "stop"): "created",
    ("created", "restart"): "running",
    ("created", "remove"): "removing",
    ("created", "force_remove"): "removing",
    ("created", "start_failed"): "created",
    ("running", "start"): "running",
    ("running", "stop"): "running",
    ("running", "kill"): "running",
    ("running", "pause"): "paused",
    ("running", "restart"): "running",
    ("running", "exec"): "running",
    ("running", "force_remove"): "removing",
    ("running", "exit"): "exited",
    ("paused", "stop"): "paused",
    ("paused", "kill"): "paused",
    ("paused", "unpause"): "running",
    ("paused", "restart"): "running",
    ("paused", "force_remove"): "removing",
    ("paused", "exit"): "exited",
    ("exited", "start"): "running",
    ("exited", "stop"): "exited",
    ("exited", "restart"): "running",
    ("exited", "remove"): "removing",
    ("exited", "force_remove"): "removing",
    ("exited", "start_failed"): "exited",
    ("removing", "exit"): "removing",
    ("dead", "remove"): "removing",
    ("dead", "force_remove"): "removing",
}


def transition(state: str, op: str, name: str) -> str:
    """The state after `op` on container `name` in `state`; Conflict if not allowed."""
    if state not in STATES:
        raise ValueError(f"unknown container state {state!r}")
    if op not in OPS:
        raise ValueError(f"unknown container operation {op!r}")
    nxt = ALLOWED.get((state, op))
    if nxt is None:
        raise Conflict(forbidden_message(state, op, name))
    return nxt


def forbidden_message(state: str, op: str, name: str) -> str:
    if state == "removing":
        return f"removal of container {name} is already in progress"
    if state == "dead":
        return f"container {name} is dead; remove it with 'orch rm {name}'"
    if op in ("exit", "start_failed"):
        return f"container {name} cannot take the event '{op}' in state {state}"
    if op == "remove":  # running or paused
        return f'cannot remove container "/{name}": container is {state}; stop it before removing or force remove (-f)'
    if state == "paused":
        return {
            "start": f"cannot start a paused container {name}; unpause it first",
            "pause": f"container {name} is already paused",
            "exec": f"container {name} is paused; unpause it before exec",
        }[op]
    if op == "unpause":
        return f"container {name} is not paused"
    # kill, pause, exec of a created or exited container
    return f"container {name} is not running; start it first"


def is_running(state: str) -> bool:
    """docker's State.Running: true for paused containers too (their processes exist)."""
    return state in ("running", "paused")
