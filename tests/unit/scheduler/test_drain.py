"""The drain rule as tables: samples of (time, open connections, arrivals) in, steps out.

Times are the samples' own (a mock clock): the drain starts at 100.0."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.scheduler.drain import ConnectionSample, DrainPolicy, DrainState, compute_drain, compute_sample

START = 100.0
POLICY = DrainPolicy(grace=10.0, quiet=1.0, poll=0.1)


def run(samples, policy=POLICY):
    """Fold the samples through the rule; each step as (stop, reason, next_check_at)."""
    state = DrainState.begin(START)
    steps = []
    for at, open_, arrived in samples:
        step = compute_drain(state, ConnectionSample(at, open_, arrived), policy)
        state = step.state
        steps.append((step.stop, step.reason, None if step.next_check_at is None else round(step.next_check_at, 6)))
    return steps


# (name, samples as (at, open, arrived), the steps, the policy)
CASES = [
    ("nobody talks to it: it waits the quiet period from the drain's start, then stops",
     [(100.0, 0, 0), (100.5, 0, 0), (101.0, 0, 0)],
     [(False, "no connection; quiet until 101", 100.1), (False, "no connection; quiet until 101", 100.6),
      (True, "idle", None)], POLICY),
    ("a held connection keeps it until the connection ends, then a quiet period",
     [(100.0, 1, 0), (103.0, 1, 0), (103.1, 0, 0), (103.2, 0, 0)],
     [(False, "1 connection open", 100.1), (False, "1 connection open", 103.1), (True, "idle", None),
      (True, "idle", None)], POLICY),
    ("a late arrival (resolved before the drain) restarts the quiet period",
     [(100.0, 0, 0), (100.8, 0, 1), (101.2, 0, 0), (101.8, 0, 0)],
     [(False, "no connection; quiet until 101", 100.1), (False, "no connection; quiet until 101.8", 100.9),
      (False, "no connection; quiet until 101.8", 101.3), (True, "idle", None)], POLICY),
    ("arrivals that keep coming are bounded by the grace period",
     [(100.0, 0, 1), (105.0, 0, 1), (109.9, 0, 1), (110.0, 0, 1)],
     [(False, "no connection; quiet until 101", 100.1), (False, "no connection; quiet until 106", 105.1),
      (False, "no connection; quiet until 110.9", 110.0), (True, "grace", None)], POLICY),
    ("a connection held past the grace period: it stops with it (as docker kills after the grace)",
     [(100.0, 2, 0), (109.95, 2, 0), (110.0, 2, 0)],
     [(False, "2 connections open", 100.1), (False, "2 connections open", 110.0), (True, "grace", None)], POLICY),
    ("stop_grace_period 0: no drain at all",
     [(100.0, 3, 0)], [(True, "grace", None)], DrainPolicy(grace=0.0)),
    ("a grace shorter than the quiet period bounds the quiet period too",
     [(100.0, 0, 0), (100.5, 0, 0)],
     [(False, "no connection; quiet until 101", 100.1), (True, "grace", None)], DrainPolicy(grace=0.5)),
    ("with nothing open, it looks again at the end of the quiet period at the latest",
     [(100.0, 0, 0), (100.97, 0, 0)],
     [(False, "no connection; quiet until 101", 100.1), (False, "no connection; quiet until 101", 101.0)], POLICY),
]


@pytest.mark.parametrize("name,samples,expected,policy", CASES, ids=[c[0] for c in CASES])
def test_drain_rule(name, samples, expected, policy):
    assert run(samples, policy) == expected


def test_samples_count_open_connections_and_new_ids_as_arrivals():
    first, seen = compute_sample(1.0, None, [(10, True), (11, False)])
    assert first == ConnectionSample(1.0, 1, 0)  # the baseline: what was there before the drain
    second, seen = compute_sample(1.1, seen, [(10, True), (11, False), (12, False)])
    assert second == ConnectionSample(1.1, 1, 1)  # 12 came and went between the two looks
    third, seen = compute_sample(1.2, seen, [(12, False)])
    assert third == ConnectionSample(1.2, 0, 0) and seen == {10, 11, 12}


samples = st.lists(st.tuples(st.floats(0.001, 0.5), st.integers(0, 3), st.integers(0, 2)), min_size=1, max_size=80)


@settings(max_examples=300, deadline=None)
@given(samples, st.floats(0.0, 5.0), st.floats(0.1, 2.0))
def test_it_never_stops_a_replica_in_use_before_the_grace_and_always_by_the_grace(gaps, grace, quiet):
    policy = DrainPolicy(grace=grace, quiet=quiet, poll=0.1)
    state, at, last_arrival = DrainState.begin(0.0), 0.0, 0.0
    for gap, open_, arrived in gaps:
        at += gap
        step = compute_drain(state, ConnectionSample(at, open_, arrived), policy)
        state = step.state
        last_arrival = at if arrived else last_arrival
        if at >= grace:
            assert step.stop
        elif step.stop:
            assert open_ == 0 and at >= last_arrival + quiet  # the decider's own sum (floats)
        else:
            assert at < step.next_check_at <= min(at + policy.poll, grace) + 1e-9
        if step.stop:
            break
