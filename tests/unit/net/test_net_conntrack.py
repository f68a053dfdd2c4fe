"""orch.net.conntrack's netlink codec, checked against pyroute2's (the reference encoder)."""

from __future__ import annotations

import socket
import struct

import pytest
from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple, nfct_msg

from orch.net import conntrack
from orch.net.conntrack import ConntrackError, Flow, bridged_flows_visible, encode_dump_request, parse_messages

TCP, UDP = socket.IPPROTO_TCP, socket.IPPROTO_UDP


def _entry(orig: tuple, reply: tuple, *, proto=TCP, state: int | None = 3, ident=7) -> bytes:
    """One conntrack entry as the kernel sends it in a dump, encoded by pyroute2."""
    m = nfct_msg()
    m["header"]["type"] = conntrack.NFNL_SUBSYS_CTNETLINK << 8  # IPCTNL_MSG_CT_NEW
    m["header"]["flags"] = conntrack.NLM_F_MULTI
    m["nfgen_family"] = socket.AF_INET
    attrs = [["CTA_TUPLE_ORIG", {"attrs": NFCTAttrTuple(saddr=orig[0], daddr=orig[1], proto=proto, sport=orig[2], dport=orig[3]).attrs()}],
             ["CTA_TUPLE_REPLY", {"attrs": NFCTAttrTuple(saddr=reply[0], daddr=reply[1], proto=proto, sport=reply[2], dport=reply[3]).attrs()}],
             ["CTA_STATUS", 14]]
    if state is not None:
        attrs.append(["CTA_PROTOINFO", {"attrs": [["CTA_PROTOINFO_TCP", {"attrs": [["CTA_PROTOINFO_TCP_STATE", state]]}]]}])
    attrs.append(["CTA_ID", ident])
    m["attrs"] = attrs
    m.encode()
    return bytes(m.data)


def _done() -> bytes:
    return struct.pack("=IHHII", 20, conntrack.NLMSG_DONE, conntrack.NLM_F_MULTI, 1, 0) + b"\0\0\0\0"


def _error(code: int) -> bytes:
    return struct.pack("=IHHIIi", 36, conntrack.NLMSG_ERROR, 0, 1, 0, -code) + b"\0" * 16


@pytest.mark.parametrize("proto", [None, TCP])
def test_the_dump_request_is_what_pyroute2_sends(proto):
    ours = encode_dump_request("10.89.0.3", seq=5, proto=proto)
    wanted = NFCTAttrTuple(saddr="10.89.0.3", proto=proto)
    wanted.attrs()  # computes the filter flags
    m = nfct_msg.create_from(tuple_reply=wanted, cta_filter={"attrs": [["CTA_FILTER_REPLY_FLAGS", wanted.flags]]})
    m["header"]["type"] = (conntrack.NFNL_SUBSYS_CTNETLINK << 8) | conntrack.IPCTNL_MSG_CT_GET
    m["header"]["flags"] = conntrack.NLM_F_REQUEST | conntrack.NLM_F_DUMP
    m["header"]["sequence_number"] = 5
    m["nfgen_family"] = socket.AF_INET
    m.encode()
    assert ours == bytes(m.data)


# (name, entries as (orig, reply, proto, tcp state), the flows parsed)
CASES = [
    ("a client on the network, established",
     [(("10.89.0.5", "10.89.0.3", 40000, 8000), ("10.89.0.3", "10.89.0.5", 8000, 40000), TCP, 3)],
     [Flow(7, TCP, "10.89.0.5", 40000, "10.89.0.3", 8000, "ESTABLISHED")]),
    ("a published port: the original goes to the host, the reply comes from the container",
     [(("127.0.0.1", "127.0.0.1", 51000, 18080), ("10.89.0.3", "10.89.0.1", 8000, 51000), TCP, 7)],
     [Flow(7, TCP, "127.0.0.1", 51000, "10.89.0.3", 8000, "TIME_WAIT")]),
    ("udp has no state",
     [(("10.89.0.5", "10.89.0.3", 5353, 53), ("10.89.0.3", "10.89.0.5", 53, 5353), UDP, None)],
     [Flow(7, UDP, "10.89.0.5", 5353, "10.89.0.3", 53, None)]),
]


@pytest.mark.parametrize("name,entries,expected", CASES, ids=[c[0] for c in CASES])
def test_entries_parse_as_flows(name, entries, expected):
    data = b"".join(_entry(o, r, proto=p, state=s) for o, r, p, s in entries) + _done()
    assert parse_messages(data) == (expected, True)


def test_open_means_a_tcp_connection_not_yet_over():
    def flow(proto, state):
        return Flow(1, proto, "10.0.0.2", 1, "10.0.0.3", 2, state)

    assert [s for s in conntrack.TCP_STATES if flow(TCP, s).open] == [
        "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "SYN_SENT2"]
    assert not flow(UDP, None).open


def test_a_dump_in_several_buffers_ends_at_done():
    first = _entry(("10.0.0.5", "10.0.0.3", 1, 80), ("10.0.0.3", "10.0.0.5", 80, 1), ident=1)
    second = _entry(("10.0.0.6", "10.0.0.3", 2, 80), ("10.0.0.3", "10.0.0.6", 80, 2), ident=2)
    assert [f.id for f in parse_messages(first)[0]] == [1] and not parse_messages(first)[1]
    flows, done = parse_messages(second + _done())
    assert [f.id for f in flows] == [2] and done


def test_a_refused_request_is_an_error_and_an_ack_is_not():
    with pytest.raises(ConntrackError) as err:
        parse_messages(_error(95))
    assert err.value.errno == 95 and "not supported" in str(err.value)
    assert parse_messages(_error(0)) == ([], False)


def test_bridged_flows_are_visible_with_either_switch(tmp_path):
    proc = tmp_path / "bridge-nf-call-iptables"
    bridge = tmp_path / "net" / "br0" / "bridge"
    bridge.mkdir(parents=True)
    (bridge / "nf_call_iptables").write_text("0\n")
    proc.write_text("1\n")
    assert bridged_flows_visible("br0", proc=str(proc), sysfs=str(tmp_path / "net"))
    proc.write_text("0\n")
    assert not bridged_flows_visible("br0", proc=str(proc), sysfs=str(tmp_path / "net"))
    (bridge / "nf_call_iptables").write_text("1\n")
    assert bridged_flows_visible("br0", proc=str(proc), sysfs=str(tmp_path / "net"))
    assert not bridged_flows_visible("br0", proc=str(tmp_path / "missing"), sysfs=str(tmp_path / "nothing"))
