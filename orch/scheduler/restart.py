"""Restart policies: should an exited container start again, and when.

The rules are docker's restart manager (moby `restartmanager/restartmanager.go`), written as a
pure function of the container's record and the time instead of a goroutine with a timer:

- `no` never restarts; `always` and `unless-stopped` restart whatever the exit code;
  `on-failure` restarts after a non-zero exit, at most `max_attempts` times when that is set.
- A container a user stopped is not restarted. After the node restarts, `always` brings it
  back and `unless-stopped` leaves it stopped: that is the one difference between the two.
- The back-off starts at 100 ms and doubles with every restart in a row, up to one minute.
  A run of 10 s or longer resets it, so a service that crashes once a day restarts at once
  while a crash loop settles at one start a minute and does not spin the CPU.
- deploy.restart_policy may give a fixed `delay` instead, and a `window`: a run that long is a
  success, which resets both the back-off and the count of attempts.

The decision carries `attempt` and `streak`, the counters the executor stores on the container
when it performs the restart; the next decision reads them back from the observed state.
"""

from __future__ import annotations

from dataclasses import dataclass

from orch.scheduler.model import ObservedContainer, RestartPolicy

FIRST_BACKOFF = 0.1
MAX_BACKOFF = 60.0
RESET_AFTER = 10.0


@dataclass(frozen=True)
class RestartDecision:
    restart: bool
    reason: str
    due_at: float | None = None  # The restart may happen at this time, not before.
    delay: float = 0.0
    attempt: int = 0  # restart_count after this restart.
    streak: int = 0  # backoff_streak after this restart.
    gave_up: bool = False  # The policy allowed restarts but their limit is reached.


def compute_backoff(policy: RestartPolicy, container: ObservedContainer) -> tuple[float, int]:
    """The delay before the next restart and the streak it continues (0: the first in a row)."""
    streak = 0 if _ran_long_enough(policy, container) else container.backoff_streak
    if policy.delay is not None:
        return policy.delay, streak
    return min(FIRST_BACKOFF * 2**streak, MAX_BACKOFF), streak


def classify_exit(
    policy: RestartPolicy, container: ObservedContainer, *, now: float, after_boot: bool = False
) -> RestartDecision:
    """Decide what the restart policy does with an exited container at time `now`."""
    code = container.exit_code
    if container.stopped_by_user:
        if after_boot and policy.mode == "always":
            return RestartDecision(
                True, "node restarted; restart: always starts it again", due_at=now,
                attempt=container.restart_count + 1, streak=0,
            )
        return RestartDecision(False, "stopped by the user")
    if policy.mode == "no":
        return RestartDecision(False, f"exited {code}; restart policy is no")
    if policy.mode == "on-failure" and code == 0:
        return RestartDecision(False, "exited 0; restart policy is on-failure")

    delay, streak = compute_backoff(policy, container)
    # With a window, attempts are the failed restarts in a row; without one they are all the
    # restarts since the container was created, as docker's on-failure:N counts them.
    attempts = streak if policy.window is not None else container.restart_count
    if policy.max_attempts and attempts >= policy.max_attempts:
        return RestartDecision(
            False, f"exited {code}; gave up after {attempts} restarts (max {policy.max_attempts})",
            gave_up=True,
        )
    finished = container.finished_at if container.finished_at is not None else now
    attempt = container.restart_count + 1
    return RestartDecision(
        True,
        f"restarting after exit {code} (attempt {attempt}, back-off {_seconds(delay)})",
        due_at=finished + delay,
        delay=delay,
        attempt=attempt,
        streak=streak + 1,
    )


def _ran_long_enough(policy: RestartPolicy, container: ObservedContainer) -> bool:
    if container.started_at is None or container.finished_at is None:
        return False
    reset_after = policy.window if policy.window is not None else RESET_AFTER
    return container.finished_at - container.started_at >= reset_after


def _seconds(value: float) -> str:
    return f"{value:g}s"
