"""`-p` parsing and the nftables rule set, as text."""

from __future__ import annotations

import pytest

from orch.errors import InvalidArgument
from orch.net.model import Network, PortMapping, Publication
from orch.net.ports import compute_delete, compute_ruleset, parse_publish


@pytest.mark.parametrize("spec, expected", [
    ("80", [PortMapping(80, 0, "tcp", "")]),
    ("8080:80", [PortMapping(80, 8080)]),
    ("8080:80/udp", [PortMapping(80, 8080, "udp")]),
    ("127.0.0.1:8080:80", [PortMapping(80, 8080, "tcp", "127.0.0.1")]),
    ("0.0.0.0:8080:80", [PortMapping(80, 8080)]),
    ("127.0.0.1::80", [PortMapping(80, 0, "tcp", "127.0.0.1")]),
    ("8000-8001:80-81", [PortMapping(80, 8000), PortMapping(81, 8001)]),
    ("53-54/udp", [PortMapping(53, 0, "udp"), PortMapping(54, 0, "udp")]),
])
def test_parse_publish(spec, expected):
    assert parse_publish(spec) == expected


@pytest.mark.parametrize("spec, message", [
    ("80/sctp", "invalid protocol 'sctp'"),
    ("x:80", "invalid port 'x'"),
    ("0:80", "ports go from 1 to 65535"),
    ("8080:70000", "ports go from 1 to 65535"),
    ("90-80:80", "low to high"),
    ("8000-8002:80-81", "differ in length"),
    ("1.2.3:80:80", "invalid host address '1.2.3'"),
    ("a:b:c:d", "use \\[IP:\\]HOST:CONTAINER"),
    ("[::1]:80:80", "IPv6"),
])
def test_parse_publish_errors(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        parse_publish(spec)


FRONT = Network("front", "1", "orch-front", "10.89.0.0/24", "10.89.0.1")
BACK = Network("back", "2", "orch-back", "10.89.1.0/24", "10.89.1.1")
SECRET = Network("secret", "3", "orch-secret", "10.89.2.0/24", "10.89.2.1", internal=True)
WEB = Publication(PortMapping(80, 8080), "web", "front", "10.89.0.2")
DNS = Publication(PortMapping(53, 5353, "udp", "127.0.0.1"), "dns", "front", "10.89.0.3")


def test_ruleset_text():
    expected = """\
table ip t
delete table ip t
table ip t {
	set dns_udp { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 10s; }
	set dns_tcp { type ipv4_addr; size 65535; flags dynamic,timeout; timeout 10s; }
	chain input {
		type filter hook input priority filter; policy accept;
		iifname "orch-front" udp dport 53 update @dns_udp { ip saddr limit rate over 500/second burst 500 packets } drop
		iifname "orch-front" tcp dport 53 ct state new update @dns_tcp { ip saddr limit rate over 50/second burst 50 packets } drop
		iifname "orch-secret" udp dport 53 update @dns_udp { ip saddr limit rate over 500/second burst 500 packets } drop
		iifname "orch-secret" tcp dport 53 ct state new update @dns_tcp { ip saddr limit rate over 50/second burst 50 packets } drop
	}
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		fib daddr type local jump publish
	}
	chain output {
		type nat hook output priority -100; policy accept;
		fib daddr type local jump publish
	}
	chain publish {
		tcp dport 8080 dnat to 10.89.0.2:80
		ip daddr 127.0.0.1 udp dport 5353 dnat to 10.89.0.3:53
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "orch-front" ip saddr 127.0.0.0/8 masquerade
		oifname "orch-front" ip saddr 10.89.0.0/24 ct status dnat masquerade
		ip saddr 10.89.0.0/24 oifname != "orch-front" masquerade
		oifname "orch-secret" ip saddr 127.0.0.0/8 masquerade
		oifname "orch-secret" ip saddr 10.89.2.0/24 ct status dnat masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy accept;
		iifname . oifname { "orch-front" . "orch-front", "orch-secret" . "orch-secret" } accept
		iifname "orch-secret" oifname != "orch-secret" drop
		oifname "orch-secret" iifname != "orch-secret" drop
		ct status dnat accept
		oifname "orch-front" iifname != "orch-front" ct state established,related accept
		oifname "orch-front" iifname != "orch-front" drop
	}
}
"""
    assert compute_ruleset([FRONT, SECRET], [DNS, WEB], table="t") == expected


def test_ruleset_isolates_every_non_internal_bridge():
    text = compute_ruleset([FRONT, BACK], [], table="t")
    for br in ("orch-front", "orch-back"):
        assert f'oifname "{br}" iifname != "{br}" drop' in text
        assert f'oifname "{br}" iifname != "{br}" ct state established,related accept' in text
    # The accept of replies comes before the drop, and published traffic before both.
    assert text.index("ct status dnat accept") < text.index('ct state established,related accept')


def test_what_a_bridge_forwards_between_its_own_ports_is_accepted_first():
    # One set lookup for bridged traffic (br_netfilter hands it to this hook), before any rule
    # that matches interface names per network; no rule after it would have dropped it.
    text = compute_ruleset([FRONT, SECRET], [], table="t")
    forward = text[text.index("chain forward"):]
    first = forward.splitlines()[2].strip()
    assert first == 'iifname . oifname { "orch-front" . "orch-front", "orch-secret" . "orch-secret" } accept'
    for line in forward.splitlines()[3:]:
        if line.strip().endswith("drop"):
            assert "!=" in line, line  # every drop is of traffic that crosses bridges


def test_vxlan_packets_of_the_node_skip_connection_tracking_only_with_overlays():
    text = compute_ruleset([FRONT], [], table="t", vtep="192.0.2.7")
    assert ("\tchain vxlan_in {\n\t\ttype filter hook prerouting priority raw; policy accept;\n"
            "\t\tip daddr 192.0.2.7 udp dport 4789 notrack\n\t}") in text
    assert ("\tchain vxlan_out {\n\t\ttype filter hook output priority raw; policy accept;\n"
            "\t\tip saddr 192.0.2.7 udp dport 4789 notrack\n\t}") in text
    assert "notrack" not in compute_ruleset([FRONT], [], table="t")


def test_internal_network_has_no_masquerade_for_egress():
    text = compute_ruleset([SECRET], [], table="t")
    assert "oifname != \"orch-secret\" masquerade" not in text
    assert 'iifname "orch-secret" oifname != "orch-secret" drop' in text


def test_ruleset_is_the_same_for_any_order_of_publications():
    assert compute_ruleset([FRONT], [WEB, DNS]) == compute_ruleset([FRONT], [DNS, WEB])


def test_delete_is_idempotent_text():
    assert compute_delete("t") == "table ip t\ndelete table ip t\n"
