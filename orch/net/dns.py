"""The embedded DNS server: names of containers for containers, everything else upstream.

Where it listens, and why there: docker answers on 127.0.0.11 inside every container, which
needs a socket opened inside each container's namespace and NAT rules in there to move port 53
to the daemon's real port. orch listens instead on each network's gateway address, port 53, UDP
and TCP, in the host's namespace: one pair of sockets per network, no rules inside containers,
and the server forwards with the host's own resolv.conf as it is (a 127.0.0.53 stub works,
because the forwarding happens on the host). A container's resolv.conf names the gateway of its
first network; because the answer depends on who asks (the client address tells which
container, and so which networks), a container on several networks resolves all of them
through any one of their servers, and nothing of the networks it is not on.

The server is dnslib's socketserver (a thread per listener, a thread per query, so a slow
upstream never blocks other queries); the lookups are the pure `orch.net.names`.
"""

from __future__ import annotations

import errno
import itertools
import threading
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import DNSHandler, DNSLogger, TCPServer, UDPServer

from orch.errors import Conflict, SystemFailure
from orch.net.files import parse_resolv_conf
from orch.net.names import NameTable, compute_answer

# Short, so that a scaled service's new replicas are seen soon; resolvers inside containers
# rarely cache anyway (glibc does not).
TTL = 10


def host_upstreams(resolv_conf: str | Path = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The host's resolvers, from its resolv.conf (missing file: none, queries fail cleanly)."""
    try:
        text = Path(resolv_conf).read_text()
    except OSError:
        return []
    return [(ns, 53) for ns in parse_resolv_conf(text).nameservers if ":" not in ns]


class QuietLogger(DNSLogger):
    """dnslib logs every query to stdout by default; orch's agent has its own log."""

    def __init__(self):
        super().__init__("-recv,-send,-request,-reply,-truncated,-error,-data")


class _Resolver:
    def __init__(self, service: "DnsService", network: str):
        self.service = service
        self.network = network

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        q = request.q
        # Only A (and ANY) queries turn the rotation: a resolver asks A and AAAA for one lookup,
        # and counting both would hand every lookup the same first address.
        turn = next(self.service.rotation) if q.qtype in (QTYPE.A, QTYPE.ANY) else 0
        answer = compute_answer(self.service.table, self.network, handler.client_address[0], str(q.qname), turn)
        if answer.addresses:
            # The name is ours: A records for A and ANY; an empty NOERROR for other types
            # (AAAA), so the client does not wait for an upstream that cannot know the name.
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                for addr in answer.addresses:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(addr), ttl=TTL))
            return reply
        if answer.forward:
            return self.service.forward(request, tcp=handler.protocol == "tcp")
        reply.header.rcode = RCODE.NXDOMAIN
        return reply


class DnsService:
    """One name table, and a UDP+TCP listener on each network's gateway address."""

    def __init__(self, upstreams: list[tuple[str, int]], *, port: int = 53, timeout: float = 2.0):
        self.upstreams = list(upstreams)
        self.port = port
        self.timeout = timeout
        self.table = NameTable()
        self.rotation = itertools.count()
        self._servers: dict[str, list[tuple[object, threading.Thread]]] = {}
        self._stopping: dict[str, threading.Thread] = {}  # address -> the thread closing its listeners
        self._lock = threading.Lock()

    def set_table(self, table: NameTable) -> None:
        # One reference assignment: queries in flight keep the table they started with.
        self.table = table

    def listening(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return {net: servers[0][0].server_address for net, servers in self._servers.items()}

    def start(self, network: str, address: str) -> None:
        """Listen for `network` on address:port (UDP and TCP); a second start is a no-op."""
        with self._lock:
            if network in self._servers:
                return
            stopping = self._stopping.pop(address, None)
            if stopping is not None:
                stopping.join()  # a removed network's listeners on this very address
            started = []
            try:
                for cls in (UDPServer, TCPServer):
                    server = cls((address, self.port), DNSHandler)
                    server.resolver = _Resolver(self, network)
                    server.logger = QuietLogger()
                    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                              name=f"orch-dns-{network}", daemon=True)
                    thread.start()
                    started.append((server, thread))
            except OSError as err:
                _stop(started)
                if err.errno == errno.EADDRINUSE:
                    raise Conflict(f"dns for network {network!r}: {address}:{self.port} is already in use") from None
                raise SystemFailure(f"dns for network {network!r}: listen on {address}:{self.port}: {err.strerror}") from None
            self._servers[network] = started

    def stop(self, network: str) -> None:
        """Stop answering for `network`. The listeners close in the background: a server
        notices a shutdown only at its next poll (up to 50 ms), which a network's removal need
        not wait for; a later `start` on the same address, and `close`, wait for it."""
        with self._lock:
            servers = self._servers.pop(network, [])
            if not servers:
                return
            address = servers[0][0].server_address[0]
            earlier = self._stopping.get(address)
            closer = threading.Thread(target=_stop, args=(servers, earlier), name=f"orch-dns-stop-{network}", daemon=True)
            self._stopping[address] = closer
            closer.start()

    def close(self) -> None:
        for network in list(self._servers):
            self.stop(network)
        self.wait_stopped()

    def wait_stopped(self) -> None:
        """Wait until the listeners of every stopped network are closed."""
        with self._lock:
            closers, self._stopping = list(self._stopping.values()), {}
        for closer in closers:
            closer.join()

    def forward(self, request: DNSRecord, *, tcp: bool) -> DNSRecord:
        """Ask each upstream in turn over UDP; SERVFAIL when none answers.

        A truncated UDP answer is asked again over TCP when the client came by TCP (a UDP
        client gets the truncated answer and retries over TCP itself, as resolvers do).
        """
        for host, port in self.upstreams:
            try:
                reply = DNSRecord.parse(request.send(host, port, timeout=self.timeout))
                if tcp and reply.header.tc:
                    reply = DNSRecord.parse(request.send(host, port, tcp=True, timeout=self.timeout))
                return reply
            except Exception:  # a timeout, a refused connection, garbage: try the next one
                continue
        reply = request.reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply


def _stop(servers: list, earlier: threading.Thread | None = None) -> None:
    if earlier is not None:
        earlier.join()
    # Ask every server first, then wait: their polls run side by side, not one after another.
    shutdowns = [threading.Thread(target=server.shutdown, daemon=True) for server, _ in servers]
    for t in shutdowns:
        t.start()
    for t in shutdowns:
        t.join()
    for server, thread in servers:
        server.server_close()
        thread.join()

