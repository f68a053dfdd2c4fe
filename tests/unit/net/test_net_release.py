"""Releasing containers cheaply, over a recording kernel that destroys namespaces in the
background as the real one does: retiring endpoints, reaping, and DNS draining."""

from __future__ import annotations

import json

import pytest

from orch.net.endpoint import veth_name
from orch.net.kernel import RecordingKernel
from orch.net.manager import Networks, NetState
from orch.net.model import PortMapping


@pytest.fixture
def nets(tmp_path):
    kernel = RecordingKernel(routes=["192.0.2.0/24"], background_cleanup=True)
    n = Networks(kernel, run_dir=tmp_path, bridge_prefix="orchX")
    n.retire_wait = 0.0  # a test does not wait for a kernel that never finishes on its own
    n.create_network("front")
    yield n
    n.close()


def allocated(nets, network="front") -> dict[str, str]:
    return dict(nets.state.ipam.networks[network].allocated)


def test_release_unmounts_the_namespace_and_deletes_no_veth(nets):
    nets.connect("front", "c1", nets.create_netns("c1"), names=("web",),
                 publish=[PortMapping(80, 0, host_ip="127.0.0.1")])
    nets.kernel.calls.clear()
    nets.release_container("c1")
    # Besides the rules (the published port goes), one call: the namespace file goes, and the
    # veth with it; no delete_link.
    assert [c[0] for c in nets.kernel.calls if c[0] != "write_sysctl"] == ["apply_nft", "remove_netns"]
    assert nets.state.endpoints == () and nets.state.publications == () and nets.ports.held() == []
    (ep,) = nets.state.retiring
    assert ep.container_id == "c1"


def test_an_address_is_not_reused_while_its_veth_exists(nets):
    ep = nets.connect("front", "c1", nets.create_netns("c1"))
    nets.release_container("c1")
    assert allocated(nets)[ep.address] == "c1"
    assert nets.reap() == 1  # the kernel has not destroyed the namespace yet
    assert allocated(nets)[ep.address] == "c1"
    nets.kernel.finish_cleanup()
    assert nets.reap() == 0
    assert ep.address not in allocated(nets) and nets.state.retiring == ()


def test_reap_with_force_deletes_what_the_kernel_left(nets):
    # A container that joined the namespace (--network container:c1) keeps it alive.
    nets.connect("front", "c1", nets.create_netns("c1"))
    nets.release_container("c1")
    host = veth_name("c1", "front")
    assert nets.reap(force=True) == 0
    assert ("delete_link", host) in nets.kernel.calls and host not in nets.kernel.links
    assert nets.state.retiring == ()


def test_a_restart_before_the_kernel_finished_takes_over_the_veth_name(nets):
    old = nets.connect("front", "c1", nets.create_netns("c1"))
    nets.release_container("c1")
    new = nets.connect("front", "c1", nets.create_netns("c1"))
    # connect deleted the old pair (same name), so the old address is free and nothing retires.
    assert nets.state.retiring == () and new.address != old.address
    assert old.address not in allocated(nets) and allocated(nets)[new.address] == "c1"
    # Reaping later must not touch the new pair.
    nets.kernel.finish_cleanup()
    nets.reap(force=True)
    assert new.host_ifname in nets.kernel.links


@pytest.mark.parametrize("kernel_done, deleted", [(True, False), (False, True)])
def test_remove_network_leaves_no_veth(nets, kernel_done, deleted):
    nets.connect("front", "c1", nets.create_netns("c1"))
    nets.release_container("c1")
    if kernel_done:
        nets.kernel.finish_cleanup()
    nets.kernel.calls.clear()
    nets.remove_network("front")
    host = veth_name("c1", "front")
    assert host not in nets.kernel.links
    assert (("delete_link", host) in nets.kernel.calls) == deleted
    assert nets.state == NetState()


def test_restore_finishes_what_was_retiring(nets, tmp_path):
    ep = nets.connect("front", "c1", nets.create_netns("c1"))
    nets.release_container("c1")
    saved = json.loads(json.dumps(nets.state.to_json()))
    assert NetState.from_json(saved) == nets.state
    kernel = nets.kernel
    nets.close()
    again = Networks(kernel, run_dir=tmp_path, bridge_prefix="orchX")
    again.restore(NetState.from_json(saved))
    assert again.state.retiring == () and ep.address not in again.state.ipam.networks["front"].allocated
    assert ep.host_ifname not in kernel.links
    again.close()


def test_a_state_without_the_release_is_repaired_by_restore(nets, tmp_path):
    """The agent writes a release later (or never, if it dies first): restore still frees it."""
    ep = nets.connect("front", "c1", nets.create_netns("c1"))
    saved = nets.state.to_json()  # the last state written before the agent died
    nets.release_container("c1")
    kernel = nets.kernel
    nets.close()
    again = Networks(kernel, run_dir=tmp_path, bridge_prefix="orchX")
    again.restore(NetState.from_json(saved))
    assert again.state.endpoints == () and again.state.retiring == ()
    assert ep.address not in again.state.ipam.networks["front"].allocated
    assert ep.host_ifname not in kernel.links
    again.close()


class FakeDns:
    def __init__(self):
        self.table = None

    def set_table(self, table):
        self.table = table

    def start(self, network, address):
        pass

    def stop(self, network):
        pass

    def close(self):
        pass


@pytest.fixture
def named(tmp_path):
    n = Networks(RecordingKernel(routes=["192.0.2.0/24"]), run_dir=tmp_path, dns=FakeDns(), bridge_prefix="orchX")
    n.create_network("front")
    n.connect("front", "old", n.create_netns("old"), names=("app-1", "app"))
    n.connect("front", "new", n.create_netns("new"), names=("app-2", "app"))
    yield n
    n.close()


def names_of(n) -> dict[str, tuple[str, ...]]:
    return n.dns.table.names["front"]


def test_hide_and_show_drain_a_container_from_dns(named):
    old, new = (named.endpoints_of(c)[0].address for c in ("old", "new"))
    named.hide("old")
    assert names_of(named) == {"app-2": (new,), "app": (new,)}
    assert named.is_hidden("old")
    # The drained container still resolves its neighbours: its address still scopes its view.
    assert named.dns.table.networks_of[old] == frozenset({"front"})
    named.show("old")
    assert names_of(named) == {"app-1": (old,), "app": (old, new), "app-2": (new,)}


def test_hidden_survives_a_restore_and_a_restart_of_the_container(named, tmp_path):
    named.hide("old")
    saved = json.loads(json.dumps(named.state.to_json()))
    assert saved["hidden"] == ["old"]
    kernel = named.kernel
    named.close()
    again = Networks(kernel, run_dir=tmp_path, dns=FakeDns(), bridge_prefix="orchX")
    again.restore(NetState.from_json(saved))
    assert "app-1" not in again.dns.table.names["front"]
    # Released and set up again (a restart policy): still drained.
    again.release_container("old")
    again.connect("front", "old", again.create_netns("old"), names=("app-1", "app"))
    assert "app-1" not in again.dns.table.names["front"]
    again.forget(["old"])
    assert again.state.hidden == frozenset() and "app-1" in again.dns.table.names["front"]
    again.close()


def test_hide_and_show_twice_change_nothing_more(named):
    named.hide("old")
    state = named.state
    named.hide("old")
    assert named.state is state
    named.show("old")
    named.show("old")
    assert named.state.hidden == frozenset()


def test_remove_network_whose_rules_fail_stays_and_can_be_removed_again(nets):
    def broken(text):
        raise OSError("nft: boom")

    load = nets.kernel.apply_nft
    nets.kernel.apply_nft = broken
    with pytest.raises(OSError, match="boom"):
        nets.remove_network("front")
    assert "front" in nets.state.networks  # the bridge went meanwhile; the retry finds it gone
    nets.kernel.apply_nft = load
    nets.remove_network("front")
    assert nets.state == NetState() and nets.kernel.links == set()
