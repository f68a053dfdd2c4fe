"""The DNS server on loopback sockets (no root needed): answers, rotation, forwarding, failures.
The service runs on a trio loop in a thread of its own (`serving`), as in the agent's nursery."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSServer

from net_helpers import QuietLogger, serving

from orch.errors import Conflict
from orch.net import dns
from orch.net.dns import DnsService, host_upstreams
from orch.net.model import Endpoint
from orch.net.names import compute_name_table


def _free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket() as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise AssertionError("no free port")


class Upstream:
    def resolve(self, request, handler):
        reply = request.reply()
        if str(request.q.qname) == "far.test.":
            reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A("198.51.100.1"), ttl=5))
        else:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


@pytest.fixture
def upstream():
    server = DNSServer(Upstream(), address="127.0.0.1", port=0, logger=QuietLogger())
    # serve_forever's default poll of 0.5 s would make every shutdown wait that long.
    thread = threading.Thread(target=server.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield server.server.server_address
    server.server.shutdown()
    server.server.server_close()


def ep(network, cid, address, *names):
    return Endpoint(network, cid, "/x", "eth0", "ve" + cid, address, names)


@pytest.fixture
def service(upstream):
    svc = DnsService([("127.0.0.1", 9), upstream], port=_free_port(), timeout=0.3)  # first upstream: dead
    svc.set_table(compute_name_table([
        ep("front", "a", "10.89.0.2", "web"), ep("front", "b", "10.89.0.3", "web"),
        ep("secret", "v", "10.89.2.2", "vault"),
    ], internal=frozenset({"secret"})))
    with serving(svc):
        yield svc
        svc.close()


def ask(svc, name, qtype="A", tcp=False):
    return DNSRecord.parse(DNSRecord.question(name, qtype).send("127.0.0.1", svc.port, tcp=tcp, timeout=3))


def test_answers_rotate_over_udp_and_tcp(service):
    service.start("front", "127.0.0.1")
    answers = [[str(rr.rdata) for rr in ask(service, "web", tcp=tcp).rr] for tcp in (False, True, False)]
    assert answers == [["10.89.0.2", "10.89.0.3"], ["10.89.0.3", "10.89.0.2"], ["10.89.0.2", "10.89.0.3"]]


def test_known_name_other_type_is_empty_noerror(service):
    service.start("front", "127.0.0.1")
    reply = ask(service, "web", "AAAA")
    assert (reply.header.rcode, reply.rr) == (RCODE.NOERROR, [])


def test_unknown_names_are_forwarded_past_a_dead_upstream(service):
    service.start("front", "127.0.0.1")
    assert [str(rr.rdata) for rr in ask(service, "far.test").rr] == ["198.51.100.1"]
    assert ask(service, "nowhere.test").header.rcode == RCODE.NXDOMAIN


def test_internal_network_does_not_forward(service):
    service.start("secret", "127.0.0.1")
    assert [str(rr.rdata) for rr in ask(service, "vault").rr] == ["10.89.2.2"]
    assert ask(service, "far.test").header.rcode == RCODE.NXDOMAIN
    assert ask(service, "web").header.rcode == RCODE.NXDOMAIN


def test_no_upstream_answers_servfail(upstream):
    svc = DnsService([("127.0.0.1", 9)], port=_free_port(), timeout=0.3)
    with serving(svc):
        try:
            svc.start("front", "127.0.0.1")
            assert ask(svc, "far.test").header.rcode == RCODE.SERVFAIL
        finally:
            svc.close()


def test_port_in_use_is_a_conflict_and_stop_frees_it(service):
    service.start("front", "127.0.0.1")
    other = DnsService([], port=service.port)
    try:
        with pytest.raises(Conflict, match=f"127.0.0.1:{service.port} is already in use"):
            # TCP holds the port exclusively while listening.
            other.start("back", "127.0.0.1")
    finally:
        other.close()
    service.stop("front")
    assert service.listening() == {}
    # The listeners close in the background; a start on the same address waits for them.
    service.start("front", "127.0.0.1")
    assert [str(rr.rdata) for rr in ask(service, "web").rr] == ["10.89.0.2", "10.89.0.3"]
    service.stop("front")
    service.close()  # waits for every listener to be closed
    with socket.socket() as s:
        s.bind(("127.0.0.1", service.port))


def test_host_upstreams(tmp_path):
    conf = tmp_path / "resolv.conf"
    conf.write_text("nameserver 127.0.0.53\nnameserver fd00::1\nnameserver 10.0.0.2\n")
    assert host_upstreams(conf) == [("127.0.0.53", 53), ("10.0.0.2", 53)]
    assert host_upstreams(tmp_path / "missing") == []


# What a client can make the server hold (orch.net.dns: the limits).

def _tcp_query(sock: socket.socket, name: str) -> DNSRecord:
    data = DNSRecord.question(name).pack()
    sock.sendall(len(data).to_bytes(2, "big") + data)
    size = int.from_bytes(_read(sock, 2), "big")
    return DNSRecord.parse(_read(sock, size))


def _read(sock: socket.socket, size: int) -> bytes:
    buf = b""
    while len(buf) < size:
        chunk = sock.recv(size - len(buf))
        assert chunk, "the server closed the connection"
        buf += chunk
    return buf


def _closed_by_server(sock: socket.socket, within: float) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except ConnectionResetError:
        return True


def test_tcp_connections_are_bounded_per_client(service):
    service.start("front", "127.0.0.1")
    held = [socket.create_connection(("127.0.0.1", service.port), timeout=3) for _ in range(dns.MAX_TCP_PER_CLIENT)]
    try:
        # Every held connection is served (the last one proves they were all accepted)...
        assert [str(rr.rdata) for rr in _tcp_query(held[-1], "web").rr] == ["10.89.0.2", "10.89.0.3"]
        # ...and one more from the same address is closed at once, without an answer.
        with socket.create_connection(("127.0.0.1", service.port), timeout=3) as extra:
            assert _closed_by_server(extra, within=3)
        assert not _closed_by_server(held[0], within=0.2)
        # A connection given back frees a place, once the server has seen it go.
        held.pop().close()
        deadline = time.monotonic() + 3
        while True:
            with socket.create_connection(("127.0.0.1", service.port), timeout=3) as again:
                try:
                    assert _tcp_query(again, "web").header.rcode == RCODE.NOERROR
                    break
                except (AssertionError, ConnectionResetError):
                    if time.monotonic() > deadline:
                        raise
            time.sleep(0.01)
    finally:
        for s in held:
            s.close()


def test_idle_slow_and_oversized_tcp_clients_are_dropped(service, monkeypatch):
    monkeypatch.setattr(dns, "TCP_IDLE", 0.3)
    service.start("front", "127.0.0.1")
    with socket.create_connection(("127.0.0.1", service.port), timeout=3) as idle, \
            socket.create_connection(("127.0.0.1", service.port), timeout=3) as slow, \
            socket.create_connection(("127.0.0.1", service.port), timeout=3) as big:
        slow.sendall(b"\x00\x40\x12")  # a 64-byte query, of which one byte comes
        big.sendall((dns.MAX_TCP_QUERY + 1).to_bytes(2, "big") + b"\x00" * 100)
        assert _closed_by_server(big, within=3)
        assert _closed_by_server(idle, within=3) and _closed_by_server(slow, within=3)
    # A connection that keeps asking is kept past the idle time (it is reset per query).
    with socket.create_connection(("127.0.0.1", service.port), timeout=3) as busy:
        for _ in range(4):
            assert _tcp_query(busy, "web").header.rcode == RCODE.NOERROR
            time.sleep(0.1)


def test_forwarding_is_bounded_and_answers_servfail_beyond(upstream):
    """An upstream that never answers: a client's queries beyond MAX_FORWARDS_PER_CLIENT do
    not wait in a queue; they are answered SERVFAIL at once."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes queries, answers none
        svc = DnsService([silent.getsockname()], port=_free_port(), timeout=5.0)
        with serving(svc):
            try:
                svc.start("front", "127.0.0.1")
                extra = 5
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
                    client.settimeout(2)
                    for i in range(dns.MAX_FORWARDS_PER_CLIENT + extra):
                        client.sendto(DNSRecord.question(f"far{i}.test").pack(), ("127.0.0.1", svc.port))
                    replies = [DNSRecord.parse(client.recv(4096)) for _ in range(extra)]
                assert [r.header.rcode for r in replies] == [RCODE.SERVFAIL] * extra
                assert sorted(str(r.q.qname) for r in replies) == sorted(
                    f"far{i}.test." for i in range(dns.MAX_FORWARDS_PER_CLIENT, dns.MAX_FORWARDS_PER_CLIENT + extra))
            finally:
                svc.close()


def test_listeners_started_before_the_loop_are_served_and_closed_with_it(upstream):
    """The agent restores its networks (start) before its nursery runs the service; when the
    agent stops, the loop's end closes every listener."""
    svc = DnsService([upstream], port=_free_port(), timeout=0.3)
    svc.set_table(compute_name_table([ep("front", "a", "10.89.0.2", "web")]))
    svc.start("front", "127.0.0.1")
    svc.start("gone", "127.0.0.2")
    svc.stop("gone")  # before the loop: closed at once
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.2", svc.port))
    with serving(svc):
        assert [str(rr.rdata) for rr in ask(svc, "web").rr] == ["10.89.0.2"]
    assert svc.listening() == {}
    with socket.socket() as s:
        s.bind(("127.0.0.1", svc.port))


def test_garbage_gets_no_answer_and_stops_nothing(service):
    service.start("front", "127.0.0.1")
    query = DNSRecord.question("web").pack()
    junk = [b"", b"\x00", os.urandom(3), os.urandom(40), query[:-3], bytes([query[0], query[1], 0x80]) + query[3:]]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for data in junk:
            s.sendto(data, ("127.0.0.1", service.port))
    for data in junk[1:]:
        with socket.create_connection(("127.0.0.1", service.port), timeout=3) as c:
            c.sendall(len(data).to_bytes(2, "big") + data)
            assert _closed_by_server(c, within=3)
    assert [str(rr.rdata) for rr in ask(service, "web").rr] == ["10.89.0.2", "10.89.0.3"]
    assert ask(service, "web", tcp=True).header.rcode == RCODE.NOERROR
