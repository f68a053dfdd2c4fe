"""Connections to a container, as the node's connection tracking sees them (ctnetlink).

A connection to a container is a conntrack entry whose reply comes from the container's
address: a client on the same network (bridged traffic passes the host's netfilter hooks,
through br_netfilter), a client elsewhere routed through the host, and a published port (the
DNAT sends the reply from the container). A connection the container opened itself has its
address as the original source, and is not one to it. Connections inside the container's own
namespace (a healthcheck to 127.0.0.1) never reach the host's table and are not counted.

The dump asks the kernel to filter on the reply's source address (CTA_FILTER, Linux 5.8+), so
the cost grows with the connections to that one container, not with the host's table. The
messages are built and read here with `struct`, a few microseconds an entry: pyroute2's
conntrack module does the same job at 0.5-0.8 ms an entry (1.4 s for the 2,700 entries a
replica serving 30 requests a second keeps, most of them in TIME_WAIT for 120 s), too slow to
ask several times a second. The tests check this encoder and decoder against pyroute2's.

`encode_dump_request` and `parse_messages` are pure; `flows_to` is the driver (one netlink
socket per call, in the caller's network namespace: the host's, where the bridges are).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass

NETLINK_NETFILTER = 12
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_GET = 1
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP, NLM_F_MULTI = 0x1, 0x300, 0x2
NLA_F_NESTED = 0x8000
NLA_TYPE_MASK = 0x3FFF

CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_PROTOINFO, CTA_ID, CTA_FILTER = 1, 2, 4, 12, 25
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST = 1, 2
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
CTA_FILTER_REPLY_FLAGS = 2
CTA_FILTER_FLAG_CTA_IP_SRC, CTA_FILTER_FLAG_CTA_PROTO_NUM = 1 << 0, 1 << 3

# enum tcp_conntrack (include/uapi/linux/netfilter/nf_conntrack_tcp.h).
TCP_STATES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
              "TIME_WAIT", "CLOSE", "SYN_SENT2")
# A TCP connection in these states is over: both sides have said all they will (LAST_ACK waits
# for one last ACK only; it lingers 30 s in the table when the peer's namespace is already gone),
# or it was reset. FIN_WAIT and CLOSE_WAIT are not over: one side may still be sending, as a
# server answers a client that shut its writing half after the request (`nc` does).
CLOSED_STATES = frozenset({"TIME_WAIT", "LAST_ACK", "CLOSE", "NONE"})

_HDR = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid
_NFGEN = struct.Struct("=BBH")  # nfgenmsg: family, version, res_id (big-endian, 0 here)
_NLA = struct.Struct("=HH")  # nlattr: len, type


@dataclass(frozen=True)
class Flow:
    """One tracked connection to a container."""

    id: int  # the kernel's id of the entry (CTA_ID): a new id is a new connection
    proto: int  # socket.IPPROTO_TCP, IPPROTO_UDP, ...
    client: str  # who connected (the original source)
    client_port: int
    server: str  # the container's address (the reply's source)
    server_port: int  # the container's port
    state: str | None  # TCP's conntrack state, None for other protocols

    @property
    def open(self) -> bool:
        """A TCP connection not yet over. (UDP has no end: its flows count as arrivals only.)"""
        return self.proto == socket.IPPROTO_TCP and self.state not in CLOSED_STATES


class ConntrackError(OSError):
    pass


def _attr(kind: int, payload: bytes) -> bytes:
    size = _NLA.size + len(payload)
    return _NLA.pack(size, kind) + payload + b"\0" * (-size % 4)


def encode_dump_request(address: str, *, seq: int = 1, proto: int | None = None) -> bytes:
    """IPCTNL_MSG_CT_GET as a dump of the entries whose reply comes from `address` (IPv4),
    optionally only those of one protocol; the kernel does the filtering."""
    # The kernel reads a tuple's nests with or without NLA_F_NESTED, CTA_FILTER's only with it;
    # this is byte for byte what pyroute2 sends for the same dump.
    ip = _attr(CTA_TUPLE_IP, _attr(CTA_IP_V4_SRC, ipaddress.IPv4Address(address).packed))
    flags = CTA_FILTER_FLAG_CTA_IP_SRC
    tuple_ = ip
    if proto is not None:
        tuple_ += _attr(CTA_TUPLE_PROTO, _attr(CTA_PROTO_NUM, bytes([proto])))
        flags |= CTA_FILTER_FLAG_CTA_PROTO_NUM
    body = (_NFGEN.pack(socket.AF_INET, 0, 0)
            + _attr(CTA_TUPLE_REPLY, tuple_)
            + _attr(CTA_FILTER | NLA_F_NESTED, _attr(CTA_FILTER_REPLY_FLAGS, struct.pack("=I", flags))))
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
    return _HDR.pack(_HDR.size + len(body), kind, NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """type -> (offset, end) of each attribute's payload between start and end."""
    found = {}
    while start + _NLA.size <= end:
        size, kind = _NLA.unpack_from(data, start)
        if size < _NLA.size:
            break
        found[kind & NLA_TYPE_MASK] = (start + _NLA.size, start + size)
        start += (size + 3) & ~3
    return found


def _tuple(data: bytes, span) -> tuple[str, str, int, int, int]:
    """(src, dst, proto, sport, dport) of a CTA_TUPLE_*."""
    parts = _attrs(data, *span)
    ip = _attrs(data, *parts[CTA_TUPLE_IP])
    src = socket.inet_ntoa(data[ip[CTA_IP_V4_SRC][0]:ip[CTA_IP_V4_SRC][0] + 4])
    dst = socket.inet_ntoa(data[ip[CTA_IP_V4_DST][0]:ip[CTA_IP_V4_DST][0] + 4])
    proto = _attrs(data, *parts[CTA_TUPLE_PROTO])
    num = data[proto[CTA_PROTO_NUM][0]]
    sport = struct.unpack_from("!H", data, proto[CTA_PROTO_SRC_PORT][0])[0] if CTA_PROTO_SRC_PORT in proto else 0
    dport = struct.unpack_from("!H", data, proto[CTA_PROTO_DST_PORT][0])[0] if CTA_PROTO_DST_PORT in proto else 0
    return src, dst, num, sport, dport


def parse_messages(data: bytes) -> tuple[list[Flow], bool]:
    """The flows in a buffer of netlink messages, and whether the dump ended (NLMSG_DONE).

    Raises ConntrackError for an NLMSG_ERROR answer (the kernel refused the request)."""
    flows: list[Flow] = []
    done = False
    at = 0
    while at + _HDR.size <= len(data):
        size, kind, _flags, _seq, _pid = _HDR.unpack_from(data, at)
        if size < _HDR.size:
            break
        if kind == NLMSG_DONE:
            done = True
        elif kind == NLMSG_ERROR:
            code = -struct.unpack_from("=i", data, at + _HDR.size)[0]
            if code:
                raise ConntrackError(code, f"conntrack dump: {os.strerror(code)}")
        elif kind >> 8 == NFNL_SUBSYS_CTNETLINK:  # an entry (a dump answers with IPCTNL_MSG_CT_NEW)
            attrs = _attrs(data, at + _HDR.size + _NFGEN.size, at + size)
            if CTA_TUPLE_ORIG in attrs and CTA_TUPLE_REPLY in attrs:
                osrc, _odst, proto, osport, _odport = _tuple(data, attrs[CTA_TUPLE_ORIG])
                rsrc, _rdst, _, rsport, _ = _tuple(data, attrs[CTA_TUPLE_REPLY])
                state = None
                if proto == socket.IPPROTO_TCP and CTA_PROTOINFO in attrs:
                    info = _attrs(data, *attrs[CTA_PROTOINFO])
                    if CTA_PROTOINFO_TCP in info:
                        tcp = _attrs(data, *info[CTA_PROTOINFO_TCP])
                        if CTA_PROTOINFO_TCP_STATE in tcp:
                            number = data[tcp[CTA_PROTOINFO_TCP_STATE][0]]
                            state = TCP_STATES[number] if number < len(TCP_STATES) else f"STATE{number}"
                ident = struct.unpack_from("!I", data, attrs[CTA_ID][0])[0] if CTA_ID in attrs else 0
                flows.append(Flow(ident, proto, osrc, osport, rsrc, rsport, state))
        at += (size + 3) & ~3
    return flows, done


def flows_to(address: str) -> list[Flow]:
    """The host's tracked connections whose replies come from `address`, minus those the
    address opened itself (its own outgoing connections, and hairpin ones to itself)."""
    for attempt in range(3):
        try:
            flows = _dump(encode_dump_request(address, seq=attempt + 1))
        except OSError as err:
            if err.errno == errno.ENOBUFS and attempt < 2:
                continue  # the dump outran our socket's buffer: ask again
            raise ConntrackError(err.errno, f"read the connections to {address} from conntrack: {err.strerror}") from None
        return [f for f in flows if f.client != address]
    raise AssertionError("unreachable")


def _dump(request: bytes) -> list[Flow]:
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.bind((0, 0))
        sock.sendall(request)
        flows: list[Flow] = []
        while True:
            data = sock.recv(1 << 20)
            if not data:
                return flows
            found, done = parse_messages(data)
            flows.extend(found)
            if done:
                return flows


def bridged_flows_visible(bridge: str, proc: str = "/proc/sys/net/bridge/bridge-nf-call-iptables",
                          sysfs: str = "/sys/class/net") -> bool:
    """Whether connections between containers on `bridge` pass the host's connection tracking:
    br_netfilter must hand bridged IPv4 to netfilter, by its global switch (the kernel's
    default, 1) or the bridge's own."""
    for path in (proc, f"{sysfs}/{bridge}/bridge/nf_call_iptables"):
        try:
            with open(path) as f:
                if f.read().strip() == "1":
                    return True
        except OSError:
            continue
    return False
