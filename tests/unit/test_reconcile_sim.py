"""The reconciler driven to convergence on a FakeNode and a mock clock.

Where the tables check one step, these run the whole loop the executor runs (observe, plan,
apply, jump to the next event) and check what a user would see over time: capacity during a
rolling update, the order of a healthy chain, how often a crash loop restarts, a rollback.
Minutes of simulated time take milliseconds; nothing sleeps.
"""

from orch.scheduler.model import ReconcileOptions, UpdateConfig
from orch.scheduler.testing import FakeNode, run_until_converged, service, stack


def ready(observed, name):
    return [c for c in observed.containers if c.service == name and c.state == "running" and c.health in ("healthy", "none")]


def web(config_hash, order, parallelism=1, **kw):
    update = UpdateConfig(parallelism=parallelism, delay=2.0, order=order, **kw)
    return stack(service("web", config_hash, replicas=3, update=update, healthcheck=True))


def deployed(desired, **kw):
    fake = FakeNode(desired, health_delay=3.0, **kw)
    plan, now = run_until_converged(desired, fake)
    assert plan.converged
    # Converged means nothing left to do; `up --wait` also waits for health, as here.
    return fake, now + fake.health_delay


def test_start_first_update_never_drops_below_the_replica_count():
    fake, now = deployed(web("h1", "start-first"))
    lowest = []
    check = lambda observed, t: lowest.append(len([c for c in ready(observed, "web") if c.health == "healthy"]))
    plan, end = run_until_converged(web("h2", "start-first"), fake, now=now, check=check)
    assert plan.converged
    assert min(lowest) >= 3
    assert sorted(c.config_hash for c in fake.containers.values()) == ["h2"] * 3
    # Three batches: each waits 3 s for health, then 2 s of delay before the next one.
    assert 3 * 3.0 + 2 * 2.0 <= end - now < 20.0


def test_stop_first_update_loses_at_most_a_batch():
    fake, now = deployed(web("h1", "stop-first", parallelism=2))
    lowest = []
    check = lambda observed, t: lowest.append(len([c for c in ready(observed, "web") if c.health == "healthy"]))
    plan, _ = run_until_converged(web("h2", "stop-first", parallelism=2), fake, now=now, check=check)
    assert plan.converged and min(lowest) == 1
    assert sorted(c.name for c in fake.containers.values()) == ["s-web-1", "s-web-2", "s-web-3"]


def test_a_healthy_chain_starts_in_order():
    desired = stack(
        service("db", healthcheck=True),
        service("web", deps={"db": "service_healthy"}, healthcheck=True),
        service("proxy", deps={"web": "service_healthy"}),
    )
    fake = FakeNode(desired, health_delay=5.0)
    plan, _ = run_until_converged(desired, fake)
    assert plan.converged
    created = {name: t for t, kind, name in fake.log if kind == "create"}
    assert created["s-web-1"] >= created["s-db-1"] + 5.0
    assert created["s-proxy-1"] >= created["s-web-1"] + 5.0


def test_a_crash_loop_backs_off_to_one_restart_a_minute():
    desired = stack(service("web", "bad", restart="always"))
    fake = FakeNode(desired, crashes={"bad": (0.5, 1)})
    plan, end = run_until_converged(desired, fake, until=600.0, watch=True)
    restarts = [t for t, kind, _ in fake.log if kind == "restart"]
    # 100 ms doubling reaches the one-minute cap after ten restarts; then one a minute.
    assert 15 <= len(restarts) <= 20
    gaps = [b - a for a, b in zip(restarts, restarts[1:])]
    assert all(later >= earlier - 1e-6 for earlier, later in zip(gaps, gaps[1:]))
    assert gaps[-1] <= 60.5 + 1e-6


def test_a_failing_update_rolls_back_and_stays_back():
    fake, now = deployed(web("h1", "start-first", failure_action="rollback"))
    fake.crashes["h2"] = (1.0, 3)
    desired = web("h2", "start-first", failure_action="rollback")
    plan, _ = run_until_converged(desired, fake, now=now)
    assert plan.converged and tuple(map(str, plan.warnings)) == (
        "service web: the update to hash h2 was rolled back; change the service or run up --force-recreate to try it again",
    )
    assert sorted(c.config_hash for c in fake.containers.values()) == ["h1"] * 3
    assert fake.rolled_back == {"web": "h2"}
    # up --force-recreate clears the record (the executor's part) and tries again: it fails,
    # and rolls back again.
    fake.rolled_back.clear()
    plan, _ = run_until_converged(desired, fake, now=now + 100, options=ReconcileOptions(force_recreate=True, up_since=now + 100))
    assert [kind for _, kind, _ in fake.log].count("rollback") == 2


def test_a_paused_update_waits_for_the_failing_replica():
    fake, now = deployed(web("h1", "start-first"))
    fake.crashes["h2"] = (1.0, 3)
    plan, _ = run_until_converged(web("h2", "start-first"), fake, now=now)
    assert [w.reason.split(":")[0] for w in plan.failed] == ["update paused", "s-web-4 exited 3; restart policy is no"]
    assert sorted(c.config_hash for c in fake.containers.values()) == ["h1", "h1", "h1", "h2"]
