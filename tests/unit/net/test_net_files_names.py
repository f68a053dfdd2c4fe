"""Rendering hosts/resolv.conf/hostname, and the DNS name table."""

from __future__ import annotations

import pytest

from orch.net.files import (ResolvConf, compute_resolv_conf, parse_resolv_conf, render_hostname, render_hosts,
                            render_resolv_conf)
from orch.net.model import Endpoint
from orch.net.names import compute_answer, compute_name_table

HEADER = (
    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n"
)


def test_render_hosts():
    assert render_hosts("web", ("10.89.0.2",)) == HEADER + "10.89.0.2\tweb\n"
    assert render_hosts("web", ("10.89.0.2", "10.89.1.2"), domainname="example.test",
                        extra_hosts=(("db", "192.0.2.9"),)) == (
        HEADER + "192.0.2.9\tdb\n10.89.0.2\tweb.example.test web\n10.89.1.2\tweb.example.test web\n")
    assert render_hosts("lonely") == HEADER


def test_render_hostname():
    assert render_hostname("web") == "web\n"


def test_parse_resolv_conf():
    text = "# comment\nnameserver 127.0.0.53\nnameserver 10.0.0.2 # x\ndomain a.test\nsearch b.test c.test\noptions edns0 ndots:2\n"
    assert parse_resolv_conf(text) == ResolvConf(("127.0.0.53", "10.0.0.2"), ("b.test", "c.test"), ("edns0", "ndots:2"))


HOST = ResolvConf(("127.0.0.53", "10.0.0.2"), ("corp.test",), ("edns0", "ndots:2"))


@pytest.mark.parametrize("kwargs, expected", [
    ({"embedded_dns": "10.89.0.1"}, "nameserver 10.89.0.1\nsearch corp.test\noptions edns0 ndots:0\n"),
    ({"embedded_dns": "10.89.0.1", "dns_search": ("x.test",), "dns_options": ("attempts:1",)},
     "nameserver 10.89.0.1\nsearch x.test\noptions attempts:1\n"),
    ({"embedded_dns": None}, "nameserver 10.0.0.2\nsearch corp.test\noptions edns0 ndots:2\n"),
    ({"embedded_dns": None, "dns": ("9.9.9.9",)}, "nameserver 9.9.9.9\nsearch corp.test\noptions edns0 ndots:2\n"),
])
def test_resolv_conf(kwargs, expected):
    assert render_resolv_conf(compute_resolv_conf(HOST, **kwargs)) == expected


def test_resolv_conf_without_usable_host_servers_falls_back_as_docker():
    conf = compute_resolv_conf(ResolvConf(("127.0.0.53",)), embedded_dns=None)
    assert conf.nameservers == ("8.8.8.8", "8.8.4.4")


def ep(network, cid, address, *names):
    return Endpoint(network, cid, f"/run/orch/netns/{cid}", "eth0", "ve" + cid, address, names)


TABLE = compute_name_table([
    ep("front", "w1", "10.89.0.2", "web-1", "web"),
    ep("front", "w2", "10.89.0.3", "web-2", "web"),
    ep("front", "cl", "10.89.0.4", "client"),
    ep("back", "db", "10.89.1.2", "db", "Database"),
    ep("back", "w1", "10.89.1.3", "web-1", "web"),
    ep("secret", "vault", "10.89.2.2", "vault"),
], internal=frozenset({"secret"}))


@pytest.mark.parametrize("network, client, qname, rotation, addresses, forward", [
    ("front", "10.89.0.4", "web-1.", 0, ("10.89.0.2",), False),
    ("front", "10.89.0.4", "WEB.", 0, ("10.89.0.2", "10.89.0.3"), False),
    ("front", "10.89.0.4", "web.", 1, ("10.89.0.3", "10.89.0.2"), False),
    ("front", "10.89.0.4", "web.", 2, ("10.89.0.2", "10.89.0.3"), False),
    ("front", "10.89.0.4", "web.front.", 0, ("10.89.0.2", "10.89.0.3"), False),
    # Not on the client's networks: not ours, so forwarded upstream (where it does not exist).
    ("front", "10.89.0.4", "db.", 0, (), True),
    # w1 is on front and back: it sees both, the network asked first.
    ("front", "10.89.0.2", "db.", 0, ("10.89.1.2",), False),
    ("back", "10.89.1.3", "web.", 0, ("10.89.1.3", "10.89.0.2", "10.89.0.3"), False),
    ("back", "10.89.1.2", "database.", 0, ("10.89.1.2",), False),
    # An unknown client sees the network it asked on.
    ("back", "10.89.1.99", "db.", 0, ("10.89.1.2",), False),
    ("front", "10.89.0.4", "example.org.", 0, (), True),
    # An internal network forwards nothing.
    ("secret", "10.89.2.2", "example.org.", 0, (), False),
    ("secret", "10.89.2.2", "web.", 0, (), False),
])
def test_compute_answer(network, client, qname, rotation, addresses, forward):
    answer = compute_answer(TABLE, network, client, qname, rotation)
    assert (answer.addresses, answer.forward) == (addresses, forward)


@pytest.mark.parametrize("client, qname, addresses", [
    # w2 is drained: nobody is sent to it, by its own name or by the shared one.
    ("10.89.0.4", "web.", ("10.89.0.2",)),
    ("10.89.0.4", "web-2.", ()),
    # w2 itself still resolves its neighbours (its address still scopes its view).
    ("10.89.0.3", "client.", ("10.89.0.4",)),
])
def test_hidden_containers_are_not_named(client, qname, addresses):
    table = compute_name_table([
        ep("front", "w1", "10.89.0.2", "web-1", "web"),
        ep("front", "w2", "10.89.0.3", "web-2", "web"),
        ep("front", "cl", "10.89.0.4", "client"),
    ], hidden=frozenset({"w2"}))
    assert compute_answer(table, "front", client, qname).addresses == addresses
