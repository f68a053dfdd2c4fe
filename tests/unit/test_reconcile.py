"""The reconciler as tables: (name, desired, observed, now, options) -> expected plan.

Every case goes through `assert_plan`. An expected action is written `kind name` or
`kind name: reason prefix`; an expected wait `wait service: reason prefix` or `failed ...`.
Actions are compared in plan order, so the tables also pin the order the executor sees.
Multi-step cases (back-off, rolling updates) are rows with the same stack at later `now`
values and the observed state the previous step would have left: a mock clock, no sleeps.
"""

from dataclasses import dataclass, field

import pytest

from orch.errors import InvalidArgument
from orch.scheduler.model import Dependency, DesiredState, ObservedState, ReconcileOptions, RestartPolicy, UpdateConfig
from orch.scheduler.reconcile import plan_down, plan_reconcile
from orch.scheduler.testing import container as c
from orch.scheduler.testing import node, render_action, render_waiting, service, stack


@dataclass
class Case:
    name: str
    desired: DesiredState
    observed: ObservedState
    actions: list[str]
    waiting: list[str] = field(default_factory=list)
    now: float = 100.0
    options: ReconcileOptions = ReconcileOptions()
    next_check_at: float | None = None
    warnings: list[str] = field(default_factory=list)


def _matches(actual: str, expected: str) -> bool:
    if ":" in expected:
        return actual.startswith(expected)
    return actual.split(":")[0] == expected


def assert_plan(case: Case) -> None:
    plan = plan_reconcile(case.desired, case.observed, now=case.now, options=case.options)
    actions = [render_action(a) for a in plan.actions]
    waiting = render_waiting(plan)
    explain = plan.explain(now=case.now)
    assert len(actions) == len(case.actions) and all(map(_matches, actions, case.actions)), explain
    assert len(waiting) == len(case.waiting) and all(map(_matches, waiting, case.waiting)), explain
    assert plan.next_check_at == pytest.approx(case.next_check_at) if case.next_check_at else plan.next_check_at is None, explain
    assert len(plan.warnings) == len(case.warnings) and all(map(str.startswith, map(str, plan.warnings), case.warnings)), explain


def table(*cases: Case):
    return pytest.mark.parametrize("case", cases, ids=[case.name for case in cases])


DB_WEB = stack(service("db"), service("web", deps={"db": "service_started"}))
UP = ReconcileOptions(up_since=50.0)

CREATE_AND_SCALE = [
    Case("empty stack, empty node", stack(), node(), []),
    Case(
        "a new stack creates its first level and waits for the rest",
        DB_WEB, node(),
        ["create s-db-1: replica 1 of 1 is missing"],
        ["wait web: dependency db is not running yet"],
    ),
    Case("dependencies running: the dependent is created", DB_WEB, node(c("db", 1)), ["create s-web-1"]),
    Case("container_name names the first replica", stack(service("web", container_name="front")), node(), ["create front: replica 1 of 1"]),
    Case("converged: nothing to do", DB_WEB, node(c("db", 1), c("web", 1)), []),
    Case(
        "replicas get compose's names",
        stack(service("web", replicas=3)), node(),
        ["create s-web-1: replica 1 of 3", "create s-web-2", "create s-web-3"],
    ),
    Case("a changed config recreates the service", stack(service("web", "h2")), node(c("web", 1, "h1")),
         ["recreate s-web-1: config changed (hash h1→h2)"]),
    Case(
        "only the changed service is recreated",
        stack(service("db", "h2"), service("cache"), service("web", deps={"db": "service_started"})),
        node(c("db", 1), c("cache", 1), c("web", 1)),
        ["recreate s-db-1: config changed (hash h1→h2)"],
    ),
    Case(
        "a dependent waits while its dependency is being updated",
        stack(service("db", "h2"), service("web", deps={"db": "service_started"})),
        node(c("db", 1)),
        ["recreate s-db-1"],
        ["wait web: dependency db is being updated"],
    ),
    Case("scale up", stack(service("web", replicas=3)), node(c("web", 1)),
         ["create s-web-2: scale 1→3", "create s-web-3: scale 1→3"]),
    Case("scale down removes the highest numbers first", stack(service("web", replicas=1)),
         node(c("web", 1), c("web", 2), c("web", 3)),
         ["remove s-web-3: scale 3→1", "remove s-web-2: scale 3→1"]),
    Case("scale to zero", stack(service("web", replicas=0)), node(c("web", 1)), ["remove s-web-1: scale 1→0"]),
    Case("--scale overrides replicas", stack(service("web", replicas=1)), node(c("web", 1)),
         ["create s-web-2: scale 1→2"], options=ReconcileOptions(scale={"web": 2})),
    Case("a missing number is filled first", stack(service("web", replicas=3)), node(c("web", 1), c("web", 3)),
         ["create s-web-2"]),
    Case("scale down of an outdated service removes, then updates the rest",
         stack(service("web", "h2", replicas=2)), node(c("web", 1), c("web", 2), c("web", 3)),
         ["remove s-web-3: scale 3→2", "recreate s-web-1", "recreate s-web-2"]),
    Case("orphans are only reported", DB_WEB, node(c("db", 1), c("web", 1), c("old", 1)), [],
         warnings=["found orphan containers (s-old-1) for stack s; run up with --remove-orphans"]),
    Case("--remove-orphans removes them", DB_WEB, node(c("db", 1), c("web", 1), c("old", 1)),
         ["remove s-old-1: orphan"], options=ReconcileOptions(remove_orphans=True)),
    Case("one-off containers are not orphans of a running stack", DB_WEB,
         node(c("db", 1), c("web", 1), c("web", 7, one_off=True)), []),
    Case("--force-recreate replaces what existed before this up", DB_WEB, node(c("db", 1, created=10), c("web", 1, created=60)),
         ["recreate s-db-1: forced recreate"],
         options=ReconcileOptions(force_recreate=True, up_since=50)),
    Case("--force-recreate applies to the named services only", DB_WEB, node(c("db", 1, created=10), c("web", 1, created=10)),
         ["recreate s-web-1: forced recreate"], options=ReconcileOptions(force_recreate=True, up_since=50, services=("web",))),
    Case("up SERVICE brings up its dependencies, and nothing else",
         stack(service("db"), service("web", deps={"db": "service_started"}), service("cache")), node(),
         ["create s-db-1"], ["wait web: dependency db is not running yet"], options=ReconcileOptions(services=("web",))),
    Case("--no-deps starts the service alone", DB_WEB, node(), ["create s-web-1"],
         options=ReconcileOptions(services=("web",), no_deps=True)),
    Case("a dead container is recreated", stack(service("web")), node(c("web", 1, state="dead", exit_code=137)),
         ["recreate s-web-1: container is dead"]),
    Case("a created container is started", stack(service("web")), node(c("web", 1, state="created", started=None)),
         ["start s-web-1: created but not started"]),
]

HC = dict(healthcheck=True)
DEPENDENCIES = [
    Case("service_healthy waits for health", stack(service("db", **HC), service("web", deps={"db": "service_healthy"})),
         node(c("db", 1, health="starting")), [], ["wait web: dependency db is not healthy yet"]),
    Case("service_healthy met", stack(service("db", **HC), service("web", deps={"db": "service_healthy"})),
         node(c("db", 1, health="healthy")), ["create s-web-1"]),
    Case("service_healthy needs every running replica healthy",
         stack(service("db", replicas=2, **HC), service("web", deps={"db": "service_healthy"})),
         node(c("db", 1, health="healthy"), c("db", 2, health="starting")), [], ["wait web: dependency db is not healthy yet"]),
    Case("an unhealthy dependency is a failure", stack(service("db", **HC), service("web", deps={"db": "service_healthy"})),
         node(c("db", 1, health="unhealthy")), [], ["failed web: dependency db is unhealthy (s-db-1)"]),
    Case("service_healthy on a service without healthcheck is a failure",
         stack(service("db"), service("web", deps={"db": "service_healthy"})), node(c("db", 1)), [],
         ["failed web: dependency db has no healthcheck; service_healthy needs one"]),
    Case("service_started needs a running container", DB_WEB, node(c("db", 1, "h1", "exited", exit_code=0, finished=90)), [],
         ["wait web: dependency db is not running yet"]),
    Case("a dependency that crashed for good fails its dependents", DB_WEB, node(c("db", 1, "h1", "exited", exit_code=1, finished=90)), [],
         ["failed db: s-db-1 exited 1; restart policy is no", "failed web: dependency db failed: s-db-1 exited 1; restart policy is no"]),
    Case("service_completed_successfully waits for the end",
         stack(service("migrate"), service("web", deps={"migrate": "service_completed_successfully"})),
         node(c("migrate", 1)), [], ["wait web: dependency migrate has not completed yet"]),
    Case("service_completed_successfully met",
         stack(service("migrate"), service("web", deps={"migrate": "service_completed_successfully"})),
         node(c("migrate", 1, state="exited", exit_code=0, finished=90)), ["create s-web-1"]),
    Case("a failed dependency blocks its dependents, and theirs",
         stack(service("migrate"), service("web", deps={"migrate": "service_completed_successfully"}),
               service("proxy", deps={"web": "service_started"})),
         node(c("migrate", 1, state="exited", exit_code=3, finished=90)), [],
         ["failed migrate: s-migrate-1 exited 3; restart policy is no",
          "failed web: dependency migrate failed (s-migrate-1 exited 3)",
          "failed proxy: dependency web failed: dependency migrate failed (s-migrate-1 exited 3)"]),
    Case("up runs a completed one-shot again before its dependents start",
         stack(service("migrate"), service("web", deps={"migrate": "service_completed_successfully"})),
         node(c("migrate", 1, state="exited", exit_code=0, started=10, finished=20),
              c("web", 1, state="exited", exit_code=0, started=21, finished=40)),
         ["start s-migrate-1: stopped (exit 0); up starts it"], ["wait web: dependency migrate is starting"], options=UP),
    Case("a failed dependency that restarts is waited for",
         stack(service("migrate", restart="on-failure"), service("web", deps={"migrate": "service_completed_successfully"})),
         node(c("migrate", 1, state="exited", exit_code=3, started=89, finished=90)),
         ["restart s-migrate-1: restarting after exit 3 (attempt 1, back-off 0.1s)"],
         ["wait web: dependency migrate exited 3 and restarts"]),
    Case("a required dependency missing from the stack is a failure",
         stack(service("web", deps={"db": "service_started"})), node(), [],
         ["failed web: dependency db is not defined in the stack"]),
    Case("required: false ignores a dependency missing from the stack",
         stack(service("web", deps={"db": Dependency("service_healthy", required=False)})), node(), ["create s-web-1"]),
    Case("required: false still waits for a dependency in the stack",
         stack(service("db"), service("web", deps={"db": Dependency(required=False)})), node(),
         ["create s-db-1"], ["wait web: dependency db is"]),
    Case("a dependency scaled to zero is met",
         stack(service("db", replicas=0), service("web", deps={"db": "service_healthy"})), node(), ["create s-web-1"]),
    Case("restart: true restarts a dependent when its dependency started after it",
         stack(service("db"), service("web", deps={"db": Dependency(restart=True)})),
         node(c("db", 1, started=60), c("web", 1, started=10)),
         ["restart s-web-1: dependency db restarted after s-web-1 started (s-db-1)"]),
    Case("restart: true leaves a dependent that started later alone",
         stack(service("db"), service("web", deps={"db": Dependency(restart=True)})),
         node(c("db", 1, started=10), c("web", 1, started=60)), []),
]


def exited(code, *, started, finished, restarts=0, streak=0, by_user=False):
    return node(c("web", 1, state="exited", exit_code=code, started=started, finished=finished,
                  restarts=restarts, streak=streak, by_user=by_user))


ALWAYS = stack(service("web", restart="always"))
RESTARTS = [
    Case("restart no leaves an exited container, and says so", stack(service("web")), exited(1, started=90, finished=95), [],
         ["failed web: s-web-1 exited 1; restart policy is no"]),
    Case("restart no: a container that completed is fine", stack(service("web")), exited(0, started=90, finished=95), []),
    Case("back-off: the first restart waits 100 ms", ALWAYS, exited(1, started=99, finished=100), [],
         ["wait web: s-web-1 restarts in 0.1s (back-off after exit 1)"], now=100.0, next_check_at=100.1),
    Case("back-off: due", ALWAYS, exited(1, started=99, finished=100), ["restart s-web-1: restarting after exit 1 (attempt 1, back-off 0.1s)"], now=100.1),
    Case("back-off: the second crash waits 200 ms", ALWAYS, exited(1, started=100.1, finished=100.5, restarts=1, streak=1), [],
         ["wait web: s-web-1 restarts in 0.2s"], now=100.5, next_check_at=100.7),
    Case("back-off: doubles", ALWAYS, exited(1, started=101, finished=102, restarts=3, streak=3),
         ["restart s-web-1: restarting after exit 1 (attempt 4, back-off 0.8s)"], now=102.8),
    Case("back-off: capped at a minute", ALWAYS, exited(1, started=101, finished=102, restarts=20, streak=20), [],
         ["wait web: s-web-1 restarts in 60s"], now=102, next_check_at=162),
    Case("back-off: a 10 s run starts it over", ALWAYS, exited(1, started=80, finished=100, restarts=20, streak=20),
         ["restart s-web-1: restarting after exit 1 (attempt 21, back-off 0.1s)"], now=100.1),
    Case("always restarts after exit 0 too", ALWAYS, exited(0, started=80, finished=100), ["restart s-web-1"], now=101),
    Case("on-failure ignores exit 0", stack(service("web", restart="on-failure")), exited(0, started=80, finished=100), [], now=101),
    Case("on-failure:3 restarts a third time", stack(service("web", restart="on-failure:3")),
         exited(2, started=99, finished=100, restarts=2, streak=2), ["restart s-web-1: restarting after exit 2 (attempt 3"], now=101),
    Case("on-failure:3 gives up after three", stack(service("web", restart="on-failure:3")),
         exited(2, started=99, finished=100, restarts=3, streak=3), [],
         ["failed web: s-web-1 exited 2; gave up after 3 restarts (max 3)"], now=101),
    Case("deploy.restart_policy: fixed delay", stack(service("web", restart=RestartPolicy("always", delay=5.0))),
         exited(1, started=99, finished=100, restarts=4, streak=4), [], ["wait web: s-web-1 restarts in 3s"], now=102, next_check_at=105),
    Case("deploy.restart_policy: a run of `window` resets the attempts",
         stack(service("web", restart=RestartPolicy("on-failure", max_attempts=2, window=30.0))),
         exited(1, started=60, finished=100, restarts=7, streak=2), ["restart s-web-1: restarting after exit 1 (attempt 8"], now=101),
    Case("deploy.restart_policy: short runs count against max_attempts",
         stack(service("web", restart=RestartPolicy("on-failure", max_attempts=2, window=30.0))),
         exited(1, started=95, finished=100, restarts=7, streak=2), [], ["failed web: s-web-1 exited 1; gave up after 2"], now=101),
    Case("always: a container the user stopped stays stopped", ALWAYS, exited(137, started=10, finished=90, by_user=True), []),
    Case("unless-stopped: a container the user stopped stays stopped", stack(service("web", restart="unless-stopped")),
         exited(137, started=10, finished=90, by_user=True), []),
    Case("always: after a node restart, it starts even if the user stopped it", ALWAYS,
         exited(137, started=10, finished=90, by_user=True), ["restart s-web-1: node restarted"],
         options=ReconcileOptions(after_boot=True)),
    Case("unless-stopped: after a node restart, stopped stays stopped", stack(service("web", restart="unless-stopped")),
         exited(137, started=10, finished=90, by_user=True), [], options=ReconcileOptions(after_boot=True)),
    Case("up starts a container that stopped before it", stack(service("web")),
         exited(0, started=10, finished=40), ["start s-web-1: stopped (exit 0); up starts it"], options=UP),
    Case("up leaves a container that exited during it to its policy", stack(service("web")),
         exited(0, started=60, finished=70), [], options=UP),
]


def rolling(order, parallelism=2, delay=10.0, failure_action="pause", monitor=0.0, replicas=3, max_failure_ratio=0.0, **kw):
    update = UpdateConfig(parallelism=parallelism, delay=delay, order=order, failure_action=failure_action, monitor=monitor,
                          max_failure_ratio=max_failure_ratio)
    return stack(service("web", "h2", replicas=replicas, update=update, healthcheck=True, **kw))


def web(*specs):
    """Replicas of web: (number, hash) or (number, hash, health, started, health_at)."""
    out = []
    for spec in specs:
        number, h, health, started, at = (*spec, "healthy", 0.0, 0.0)[:5] if len(spec) == 2 else spec
        out.append(c("web", number, h, health=health, started=started, health_at=at))
    return node(*out)


STOP_FIRST = rolling("stop-first")
START_FIRST = rolling("start-first")
ROLLING = [
    # stop-first, parallelism 2, delay 10 s: two in place, then wait, then the third.
    Case("stop-first 1: the first batch is recreated in place", STOP_FIRST, web((1, "h1"), (2, "h1"), (3, "h1")),
         ["recreate s-web-1: config changed (hash h1→h2); stop-first update, batch of 2", "recreate s-web-2"]),
    Case("stop-first 2: the batch is starting", STOP_FIRST,
         web((1, "h2", "starting", 101, None), (2, "h2", "starting", 101, None), (3, "h1")), [],
         ["wait web: waiting for s-web-1, s-web-2 to be ready (not healthy yet)"], now=105),
    Case("stop-first 3: healthy, the delay runs", STOP_FIRST,
         web((1, "h2", "healthy", 101, 110), (2, "h2", "healthy", 101, 112), (3, "h1")), [],
         ["wait web: next update batch in 7s (update_config.delay)"], now=115, next_check_at=122),
    Case("stop-first 4: the last batch", STOP_FIRST,
         web((1, "h2", "healthy", 101, 110), (2, "h2", "healthy", 101, 112), (3, "h1")),
         ["recreate s-web-3: config changed (hash h1→h2); stop-first update, batch of 1"], now=122),
    Case("stop-first 5: done", STOP_FIRST, web((1, "h2"), (2, "h2"), (3, "h2")), [], now=140),
    # start-first, parallelism 2, delay 10 s: new replicas beside the old ones.
    Case("start-first 1: the first batch starts beside the old", START_FIRST, web((1, "h1"), (2, "h1"), (3, "h1")),
         ["create s-web-4: config changed (hash h1→h2); start-first update of s-web-1", "create s-web-5: config changed (hash h1→h2); start-first update of s-web-2"]),
    Case("start-first 2: old ones stay until the new are ready", START_FIRST,
         web((1, "h1"), (2, "h1"), (3, "h1"), (4, "h2", "starting", 101, None), (5, "h2", "healthy", 101, 104)),
         ["remove s-web-1: replaced by an updated replica (config changed (hash h1→h2))"],
         ["wait web: waiting for s-web-4 to be ready (not healthy yet)"], now=105),
    Case("start-first 3: all ready: the next old one goes, the delay runs", START_FIRST,
         web((2, "h1"), (3, "h1"), (4, "h2", "healthy", 101, 106), (5, "h2", "healthy", 101, 104)),
         ["remove s-web-2: replaced by an updated replica (config changed (hash h1→h2))"],
         ["wait web: next update batch in 9s"], now=107, next_check_at=116),
    Case("start-first 4: the last batch takes a free number", START_FIRST,
         web((3, "h1"), (4, "h2", "healthy", 101, 106), (5, "h2", "healthy", 101, 104)),
         ["create s-web-1: config changed (hash h1→h2); start-first update of s-web-3"], now=116),
    Case("start-first 5: the last old one goes", START_FIRST,
         web((1, "h2", "healthy", 117, 120), (3, "h1"), (4, "h2"), (5, "h2")), ["remove s-web-3: replaced"], now=121),
    Case("start-first 6: done", START_FIRST, web((1, "h2"), (4, "h2"), (5, "h2")), [], now=140),
    Case("monitor: a replica is ready only after it ran `monitor` seconds",
         stack(service("web", "h2", replicas=2, update=UpdateConfig(1, order="start-first", monitor=5.0))),
         node(c("web", 1), c("web", 2), c("web", 3, "h2", started=100)), [],
         ["wait web: waiting for s-web-3 to be ready (monitor 5s)"], now=102, next_check_at=105),
    Case("parallelism 0 replaces everything at once", rolling("stop-first", parallelism=0),
         web((1, "h1"), (2, "h1"), (3, "h1")), ["recreate s-web-1", "recreate s-web-2", "recreate s-web-3"]),
    Case("an outdated stopped replica is recreated at once", rolling("stop-first", parallelism=1),
         node(c("web", 1, health="healthy"), c("web", 2, health="healthy"), c("web", 3, state="exited", exit_code=0, finished=5)),
         ["recreate s-web-3: config changed", "recreate s-web-1: config changed (hash h1→h2); stop-first update, batch of 1"]),
    Case("failure_action pause: a failed replica stops the update", rolling("start-first", parallelism=1),
         node(c("web", 1), c("web", 2), c("web", 3), c("web", 4, "h2", "exited", exit_code=1, started=101, finished=103)), [],
         ["failed web: update paused: s-web-4 exited 1 (failure_action pause)", "failed web: s-web-4 exited 1; restart policy is no"],
         now=104),
    Case("failure_action pause: the failed replica still follows its restart policy",
         rolling("start-first", parallelism=1, restart="always"),
         node(c("web", 1), c("web", 2), c("web", 3), c("web", 4, "h2", "exited", exit_code=1, started=101, finished=103)),
         ["restart s-web-4: restarting after exit 1"], ["failed web: update paused"], now=104),
    Case("max_failure_ratio: a failure within the ratio is tolerated",
         rolling("start-first", parallelism=1, delay=0, max_failure_ratio=0.34),
         node(c("web", 1), c("web", 2), c("web", 3), c("web", 4, "h2", health="unhealthy", started=101)),
         ["remove s-web-1: replaced", "create s-web-5: config changed"], now=104),
    Case("max_failure_ratio: more failures than the ratio pause the update",
         rolling("start-first", parallelism=2, delay=0, max_failure_ratio=0.34),
         node(c("web", 1), c("web", 2), c("web", 3), c("web", 4, "h2", health="unhealthy", started=101),
              c("web", 5, "h2", health="unhealthy", started=101)),
         [], ["failed web: update paused: s-web-4 is unhealthy (failure_action pause)"], now=104),
    Case("failure_action continue: the update goes on", rolling("start-first", parallelism=1, delay=0, failure_action="continue"),
         node(c("web", 1), c("web", 2), c("web", 3), c("web", 4, "h2", health="unhealthy", started=101)),
         ["remove s-web-1: replaced", "create s-web-5: config changed"], now=104),
    Case("failure_action rollback: updated replicas are recreated from an old one",
         rolling("start-first", parallelism=1, failure_action="rollback"),
         node(c("web", 1), c("web", 2), c("web", 3), c("web", 4, "h2", health="unhealthy", started=101)),
         ["rollback web: s-web-4 is unhealthy; rolling back to hash h1", "recreate s-web-4: rolling back: s-web-4 is unhealthy"], now=104),
    Case("after a rollback the stack stays on the old configuration",
         rolling("start-first", parallelism=1, failure_action="rollback"),
         node(c("web", 1), c("web", 2), c("web", 3), c("web", 4), rolled_back={"web": "h2"}),
         ["remove s-web-4: scale 4→3"], now=110,
         warnings=["service web: the update to hash h2 was rolled back"]),
    Case("after a rollback, missing replicas copy the old configuration",
         rolling("start-first", parallelism=1, failure_action="rollback"),
         node(c("web", 1), c("web", 2), rolled_back={"web": "h2"}),
         ["create s-web-3: scale 2→3"], now=110, warnings=["service web: the update to hash h2 was rolled back"]),
]


@table(*CREATE_AND_SCALE)
def test_create_and_scale(case):
    assert_plan(case)


@table(*DEPENDENCIES)
def test_dependencies(case):
    assert_plan(case)


@table(*RESTARTS)
def test_restart_policies(case):
    assert_plan(case)


@table(*ROLLING)
def test_rolling_updates(case):
    assert_plan(case)


def test_rollback_actions_say_what_to_copy():
    plan = plan_reconcile(
        rolling("start-first", parallelism=1, failure_action="rollback"),
        node(c("web", 1), c("web", 2), c("web", 3), c("web", 4, "h2", health="unhealthy", started=101)),
        now=104,
    )
    rollback, recreate = plan.actions
    assert (rollback.kind, rollback.config_hash) == ("rollback", "h2")
    assert (recreate.target, recreate.clone_from, recreate.config_hash) == ("web4", "web1", None)


def test_restart_carries_the_counters_the_executor_stores():
    plan = plan_reconcile(ALWAYS, exited(1, started=101, finished=102, restarts=3, streak=3), now=103)
    (action,) = plan.actions
    assert (action.attempt, action.streak, action.target) == (4, 4, "web1")


def test_converged_stack_says_so():
    plan = plan_reconcile(DB_WEB, node(c("db", 1), c("web", 1)), now=100)
    assert plan.converged
    assert plan.summary() == "stack s is up to date"
    assert plan.explain() == "stack s is up to date"


def test_explain_lists_actions_and_waits():
    plan = plan_reconcile(stack(service("db", "h2"), service("web", deps={"db": "service_started"})), node(c("db", 1)), now=100)
    assert plan.explain() == (
        "stack s: 1 to recreate, 1 waiting\n"
        "  recreate s-db-1: config changed (hash h1→h2)\n"
        "  waiting  web: dependency db is being updated"
    )


def test_stages_follow_the_dependency_graph():
    desired = stack(service("db"), service("cache"), service("web", deps={"db": "service_started", "cache": "service_started"}),
                    service("proxy", deps={"web": "service_started"}))
    observed = node(c("db", 1), c("web", 1), c("web", 2), c("proxy", 1), c("proxy", 2))
    plan = plan_reconcile(desired, observed, now=100)
    assert [(a.stage, a.name) for a in plan.actions] == [(0, "s-cache-1"), (1, "s-web-2"), (2, "s-proxy-2")]


def test_inputs_are_not_mutated():
    desired = rolling("start-first", parallelism=1)
    observed = web((1, "h1"), (2, "h1"), (3, "h1"))
    before = (repr(desired), repr(observed))
    plan_reconcile(desired, observed, now=100)
    assert (repr(desired), repr(observed)) == before


@pytest.mark.parametrize(
    "desired, options, message",
    [
        (stack(service("a", deps={"b": "service_started"}), service("b", deps={"a": "service_started"})), ReconcileOptions(),
         "services of stack s depend on each other in a cycle: "),
        (DB_WEB, ReconcileOptions(services=("nope",)), "no such service in stack s: nope"),
        (DB_WEB, ReconcileOptions(scale={"web": -1}), "scale of service web must be 0 or more, not -1"),
        (DB_WEB, ReconcileOptions(scale={"wbe": 2}), "cannot scale wbe: no such service in stack s"),
    ],
    ids=["cycle", "unknown service", "negative scale", "scale of an unknown service"],
)
def test_bad_input_is_one_line(desired, options, message):
    with pytest.raises(InvalidArgument) as err:
        plan_reconcile(desired, node(), now=0, options=options)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_down_goes_in_reverse_dependency_order():
    desired = stack(service("db"), service("web", deps={"db": "service_started"}), service("proxy", deps={"web": "service_started"}))
    observed = node(c("db", 1), c("web", 1), c("web", 2), c("proxy", 1), c("old", 1), c("web", 9, one_off=True))
    plan = plan_down(observed, desired=desired)
    assert [(a.kind, a.name, a.stage) for a in plan.actions] == [
        ("remove", "s-proxy-1", 1), ("remove", "s-web-1", 2), ("remove", "s-web-2", 2), ("remove", "s-web-9", 2), ("remove", "s-db-1", 3),
    ]
    assert tuple(map(str, plan.warnings)) == ("found orphan containers (s-old-1) for stack s; run up with --remove-orphans to remove them",)
    with_orphans = plan_down(observed, desired=desired, remove_orphans=True)
    assert [a.name for a in with_orphans.actions][0] == "s-old-1"
    assert {a.name for a in plan_down(observed).actions} == {x.name for x in observed.containers}
