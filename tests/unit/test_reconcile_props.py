"""Safety properties of the reconciler, over generated stacks and node states (hypothesis).

Like nomad's `reconcile_cluster_prop_test.go`: whatever the stack and whatever the node shows,
- a converged node gives an empty plan;
- no action starts a container of a service before each dependency meets its condition
  (checked here by an independent, simpler reading of the conditions);
- a plan never removes a replica the stack still wants, unless it replaces it;
- each container gets at most one action, and new containers never take a name in use.
"""

from hypothesis import given, settings
from hypothesis import strategies as st

from orch.scheduler.model import STARTING_KINDS, Dependency, ReconcileOptions, RestartPolicy, UpdateConfig
from orch.scheduler.reconcile import plan_reconcile
from orch.scheduler.testing import container, node, service, stack

NAMES = ["a", "b", "c", "d", "e"]


@st.composite
def stacks(draw):
    """A stack of up to five services; each depends only on earlier ones, so it is a DAG."""
    n = draw(st.integers(1, len(NAMES)))
    services, kinds = [], {}
    for i, name in enumerate(NAMES[:n]):
        oneshot = draw(st.booleans())
        healthcheck = not oneshot and draw(st.booleans())
        kinds[name] = "oneshot" if oneshot else ("healthy" if healthcheck else "started")
        deps = {}
        for dep in draw(st.lists(st.sampled_from(NAMES[:i]), unique=True)) if i else []:
            choices = {"oneshot": ["service_completed_successfully"], "started": ["service_started"],
                       "healthy": ["service_started", "service_healthy"]}[kinds[dep]]
            deps[dep] = Dependency(draw(st.sampled_from(choices)), required=draw(st.booleans()), restart=draw(st.booleans()))
        restart = draw(st.sampled_from(["no", "on-failure"] if oneshot else ["no", "always", "unless-stopped", "on-failure:3"]))
        update = UpdateConfig(
            parallelism=draw(st.integers(0, 2)), delay=draw(st.sampled_from([0.0, 5.0])),
            order=draw(st.sampled_from(["stop-first", "start-first"])),
            failure_action=draw(st.sampled_from(["pause", "rollback", "continue"])), monitor=draw(st.sampled_from([0.0, 3.0])),
        )
        services.append(service(name, "h1", replicas=draw(st.integers(0, 3)), deps=deps, restart=restart,
                                update=update, healthcheck=healthcheck))
    return stack(*services), kinds


def converged_node(desired, kinds):
    """What the node shows once the stack is up: later levels started later."""
    out = []
    for i, (name, svc) in enumerate(desired.services.items()):
        for n in range(1, svc.replicas + 1):
            t = 10.0 + i
            if kinds[name] == "oneshot":
                out.append(container(name, n, "h1", "exited", exit_code=0, started=t, finished=t + 0.5))
            else:
                out.append(container(name, n, "h1", health="healthy" if svc.healthcheck else "none", started=t, health_at=t + 0.2))
    return node(*out)


@st.composite
def any_container(draw, name, number):
    state = draw(st.sampled_from(["created", "running", "paused", "exited", "dead"]))
    started = draw(st.floats(0, 100))
    stopped = state in ("exited", "dead")
    return container(
        name, number, draw(st.sampled_from(["h1", "h2"])), state,
        health=draw(st.sampled_from(["none", "starting", "healthy", "unhealthy"])),
        exit_code=draw(st.sampled_from([0, 1, 137])) if stopped else None,
        created=started - 1, started=None if state == "created" else started,
        finished=started + draw(st.floats(0, 30)) if stopped else None,
        health_at=draw(st.none() | st.floats(0, 100)), restarts=draw(st.integers(0, 4)), streak=draw(st.integers(0, 4)),
        by_user=stopped and draw(st.booleans()),
    )


@st.composite
def any_node(draw, desired):
    out = []
    for name in [*desired.services, "orphan"]:
        for number in draw(st.lists(st.integers(1, 5), unique=True, max_size=4)):
            out.append(draw(any_container(name, number)))
    return node(*out)


@st.composite
def scenarios(draw):
    desired, _ = draw(stacks())
    observed = draw(any_node(desired))
    options = ReconcileOptions(
        up_since=draw(st.none() | st.just(50.0)), remove_orphans=draw(st.booleans()),
        force_recreate=draw(st.booleans()), after_boot=draw(st.booleans()),
    )
    return desired, observed, draw(st.floats(0, 200)), options


def meets(condition, dep_svc, containers):
    """The conditions of depends_on, read independently of orch.scheduler.depends."""
    if dep_svc.replicas == 0:
        return True
    running = [c for c in containers if c.state in ("running", "paused")]
    if condition == "service_started":
        return bool(running)
    if condition == "service_healthy":
        return dep_svc.healthcheck and bool(running) and all(c.health == "healthy" for c in running)
    return bool(containers) and all(c.state in ("exited", "dead") and c.exit_code == 0 for c in containers)


@settings(max_examples=100, deadline=None)
@given(stacks(), st.sampled_from([None, 5.0]))
def test_a_converged_node_gives_an_empty_plan(generated, up_since):
    desired, kinds = generated
    plan = plan_reconcile(desired, converged_node(desired, kinds), now=1000.0, options=ReconcileOptions(up_since=up_since))
    assert plan.converged, plan.explain()
    assert plan.summary() == "stack s is up to date"


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_nothing_starts_before_its_dependencies_meet_their_conditions(scenario):
    desired, observed, now, options = scenario
    plan = plan_reconcile(desired, observed, now=now, options=options)
    acted = {a.service for a in plan.actions}
    for action in plan.actions:
        if action.kind not in STARTING_KINDS:
            continue
        for dep, spec in desired.services[action.service].depends_on.items():
            if dep not in desired.services:
                assert not spec.required, plan.explain()
                continue
            mine = [c for c in observed.containers if c.service == dep and not c.one_off]
            assert meets(spec.condition, desired.services[dep], mine), plan.explain()
            assert dep not in acted, plan.explain()


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_wanted_replicas_are_only_removed_when_surplus(scenario):
    desired, observed, now, options = scenario
    plan = plan_reconcile(desired, observed, now=now, options=options)
    removed = {a.target for a in plan.actions if a.kind == "remove"}
    for name, svc in desired.services.items():
        mine = [c for c in observed.containers if c.service == name and not c.one_off]
        gone = [c for c in mine if c.id in removed]
        assert len(mine) - len(gone) >= min(svc.replicas, len(mine)), plan.explain()
    for c in observed.containers:
        if c.id in removed and c.service not in desired.services:
            assert options.remove_orphans


@settings(max_examples=100, deadline=None)
@given(scenarios())
def test_one_action_per_container_and_no_name_taken_twice(scenario):
    desired, observed, now, options = scenario
    plan = plan_reconcile(desired, observed, now=now, options=options)
    targets = [a.target for a in plan.actions if a.target is not None]
    assert len(targets) == len(set(targets)), plan.explain()
    taken = {c.name for c in observed.containers}
    created = [a.name for a in plan.actions if a.kind == "create"]
    assert len(created) == len(set(created)) and not taken & set(created), plan.explain()
    assert plan_reconcile(desired, observed, now=now, options=options) == plan  # A function: same inputs, same plan.


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 30), st.floats(0, 9.9), st.floats(0, 200))
def test_backoff_never_restarts_before_its_delay(streak, ran, since_exit):
    desired = stack(service("web", restart=RestartPolicy("always")))
    observed = node(container("web", 1, state="exited", exit_code=1, started=100 - ran, finished=100, streak=streak, restarts=streak))
    plan = plan_reconcile(desired, observed, now=100 + since_exit)
    delay = min(0.1 * 2**streak, 60.0)
    if since_exit < delay:
        assert not plan.actions and plan.next_check_at == 100 + delay
    else:
        assert [a.kind for a in plan.actions] == ["restart"] and plan.actions[0].streak == streak + 1
