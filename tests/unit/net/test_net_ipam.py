"""IPAM as tables: subnets from the pool, addresses, fixed addresses, exhaustion, restart."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound
from orch.net import ipam
from orch.net.ipam import IpamState

POOL = (("10.89.0.0/22", 24),)


def state_with(*subnets: tuple[str, str]) -> IpamState:
    s = IpamState()
    for name, subnet in subnets:
        s = ipam.allocate_network(s, name, subnet)
    return s


@pytest.mark.parametrize("name, existing, routes, requested, expected", [
    ("first block", [], [], None, "10.89.0.0/24"),
    ("skips other networks", [("a", "10.89.0.0/24")], [], None, "10.89.1.0/24"),
    ("skips host routes", [], ["10.89.0.0/23"], None, "10.89.2.0/24"),
    ("default route does not block", [], ["0.0.0.0/0", "192.0.2.0/24"], None, "10.89.0.0/24"),
    ("route overlapping a block", [], ["10.89.0.128/25"], None, "10.89.1.0/24"),
    ("requested is taken as is", [], ["10.89.0.0/16"], "10.89.0.0/24", "10.89.0.0/24"),
    ("requested next to another", [("a", "10.89.0.0/24")], [], "10.89.1.0/25", "10.89.1.0/25"),
])
def test_compute_subnet(name, existing, routes, requested, expected):
    got = ipam.compute_subnet(state_with(*existing), routes, requested=requested, pools=POOL)
    assert str(got) == expected, name


@pytest.mark.parametrize("existing, routes, requested, error, message", [
    ([("a", "10.89.0.0/24")], [], "10.89.0.0/16", Conflict, "overlaps network 'a'"),
    ([], [], "10.89.0.1/24", InvalidArgument, "invalid subnet"),
    ([], [], "banana", InvalidArgument, "invalid subnet 'banana'"),
    ([], [], "10.89.0.0/31", InvalidArgument, "too small"),
    ([(f"n{i}", f"10.89.{i}.0/24") for i in range(4)], [], None, Conflict, "no free subnet"),
    ([], ["10.89.0.0/22"], None, Conflict, "no free subnet"),
])
def test_compute_subnet_errors(existing, routes, requested, error, message):
    with pytest.raises(error, match=message):
        ipam.compute_subnet(state_with(*existing), routes, requested=requested, pools=POOL)


def test_gateway_defaults_to_first_host_and_is_never_handed_out():
    s = ipam.allocate_network(IpamState(), "a", "10.89.0.0/30")
    assert s.networks["a"].gateway == "10.89.0.1"
    s, addr = ipam.allocate_address(s, "a", "c1")
    assert addr == "10.89.0.2"
    with pytest.raises(Conflict, match="no free address"):
        ipam.allocate_address(s, "a", "c2")


@pytest.mark.parametrize("subnet, gateway, message", [
    ("10.89.0.0/24", "10.89.1.1", "not a host address"),
    ("10.89.0.0/24", "10.89.0.0", "not a host address"),
    ("10.89.0.0/24", "10.89.0.255", "not a host address"),
    ("10.89.0.0/24", "nope", "invalid gateway"),
])
def test_bad_gateway(subnet, gateway, message):
    with pytest.raises(InvalidArgument, match=message):
        ipam.allocate_network(IpamState(), "a", subnet, gateway)


def test_network_twice_and_unknown_network():
    s = state_with(("a", "10.89.0.0/24"))
    with pytest.raises(AlreadyExists):
        ipam.allocate_network(s, "a", "10.89.1.0/24")
    with pytest.raises(NotFound, match="no such network: b"):
        ipam.allocate_address(s, "b", "c1")


def test_addresses_are_sequential_and_released_ones_not_reused_at_once():
    s = state_with(("a", "10.89.0.0/29"))  # hosts .1-.6, gateway .1
    got = []
    for owner in ("c1", "c2", "c3"):
        s, addr = ipam.allocate_address(s, "a", owner)
        got.append(addr)
    assert got == ["10.89.0.2", "10.89.0.3", "10.89.0.4"]
    s = ipam.release_address(s, "a", "10.89.0.2")
    s, addr = ipam.allocate_address(s, "a", "c4")
    assert addr == "10.89.0.5"
    s, addr = ipam.allocate_address(s, "a", "c5")
    assert addr == "10.89.0.6"
    s, addr = ipam.allocate_address(s, "a", "c6")  # wraps around to the released one
    assert addr == "10.89.0.2"
    with pytest.raises(Conflict, match="no free address"):
        ipam.allocate_address(s, "a", "c7")


@pytest.mark.parametrize("fixed, error, message", [
    ("10.89.0.1", Conflict, "already used by the gateway"),
    ("10.89.0.2", Conflict, "already used by container c1"),
    ("10.89.1.9", InvalidArgument, "not a host address of network 'a'"),
    ("10.89.0.255", InvalidArgument, "not a host address"),
    ("10.89.0", InvalidArgument, "invalid ipv4_address"),
])
def test_fixed_address_conflicts(fixed, error, message):
    s, _ = ipam.allocate_address(state_with(("a", "10.89.0.0/24")), "a", "c1")
    with pytest.raises(error, match=message):
        ipam.allocate_address(s, "a", "c2", fixed)


def test_fixed_address_is_honoured_and_skipped_by_the_sequence():
    s = state_with(("a", "10.89.0.0/24"))
    s, fixed = ipam.allocate_address(s, "a", "db", "10.89.0.2")
    s, nxt = ipam.allocate_address(s, "a", "web")
    assert (fixed, nxt) == ("10.89.0.2", "10.89.0.3")


def test_state_survives_a_restart_as_json():
    s = state_with(("a", "10.89.0.0/24"), ("b", "10.89.1.0/24"))
    s, a1 = ipam.allocate_address(s, "a", "c1")
    s, a2 = ipam.allocate_address(s, "a", "c2")
    s = ipam.release_address(s, "a", a1)
    restored = IpamState.from_json(json.loads(json.dumps(s.to_json())))
    assert restored == s
    restored, a3 = ipam.allocate_address(restored, "a", "c3")
    assert a3 not in (a1, a2), "after a restart the sequence goes on: no address given twice"
    assert ipam.addresses_of(restored, "c2") == {"a": a2}


def test_release_is_idempotent_and_keeps_the_gateway():
    s = state_with(("a", "10.89.0.0/24"))
    assert ipam.release_address(s, "a", "10.89.0.1") == s
    assert ipam.release_address(s, "a", "10.89.0.77") == s
    assert ipam.release_address(s, "zzz", "10.89.0.77") == s
    assert "a" not in ipam.release_network(s, "a").networks


OPS = st.lists(st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 9)),
    st.tuples(st.just("fixed"), st.integers(2, 14)),
    st.tuples(st.just("release"), st.integers(0, 20)),
    st.just(("restart", 0)),
), max_size=60)


@settings(max_examples=200, deadline=None)
@given(OPS)
def test_property_no_address_is_ever_held_twice(ops):
    """Whatever the order of allocations, releases and restarts, holders never share an address."""
    s = state_with(("a", "10.89.0.0/28"))  # 13 usable addresses after the gateway
    held: dict[str, str] = {}  # address -> owner, as the callers see it
    for i, (op, arg) in enumerate(ops):
        try:
            if op == "alloc":
                s, addr = ipam.allocate_address(s, "a", f"c{i}")
            elif op == "fixed":
                s, addr = ipam.allocate_address(s, "a", f"c{i}", f"10.89.0.{arg}")
            elif op == "release":
                if held:
                    addr = sorted(held)[arg % len(held)]
                    s = ipam.release_address(s, "a", addr)
                    del held[addr]
                continue
            else:
                s = IpamState.from_json(json.loads(json.dumps(s.to_json())))
                continue
        except Conflict:
            assert len(held) == 13 or op == "fixed"
            continue
        assert addr not in held and addr != "10.89.0.1"
        held[addr] = f"c{i}"
        assert {a: o for a, o in s.networks["a"].allocated.items() if o} == held
