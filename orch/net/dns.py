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

How it is served: `DnsService.serve` runs in the agent's trio nursery; each network's listener
is a task there, each TCP connection and each forwarded query another task (no thread, no
socketserver). `Networks` (orch.net.manager, a plain class called from worker threads) tells
the service about networks coming and going with `start` and `stop`: `start` binds the sockets
in the caller's thread, so a taken port fails there and then, and hands them to the loop; `stop`
asks the loop to close them. Neither waits for the loop, except a `start` on the address of a
listener still closing (see `start`). The lookups are the pure `orch.net.names`; dnslib parses
and builds the messages.

What a client can make it hold (a container is a client; it must not exhaust the agent):
- TCP: `MAX_TCP_PER_CLIENT` connections per client address and `MAX_TCP` in all; one over is
  closed at once. A connection gets `TCP_IDLE` seconds for each query, from its first byte to its
  last, and for each answer to be taken; a query over `MAX_TCP_QUERY` bytes closes it. Waiting
  connections are accepted in batches, so a neighbour's connection is not left behind a flood
  of them.
- Forwarding: at most `MAX_FORWARDS` queries wait on the upstream resolvers, `MAX_FORWARDS_PER_CLIENT`
  per client; a query over either limit is answered SERVFAIL at once, never queued. Each upstream
  gets `timeout` seconds.
- UDP: each listener reads its socket in batches (a recvfrom each, nothing parsed) into a queue
  per client, at most `UDP_QUEUE_PER_CLIENT` queries each and `UDP_QUEUE` in all, and answers one
  query of each client per turn; what is over a queue is dropped (the client asks again, as
  resolvers do). So a flood delays another container's query by the time to read the socket's
  buffer and one turn, not by the flood's own answers: measured here, a container's queries are
  answered in a few ms (median) while another floods with UDP and holds 600 TCP connections
  (tests/integration/netwire/test_dns_flood.py).
"""

from __future__ import annotations

import errno
import itertools
import socket
import threading
from collections import Counter, OrderedDict, deque
from pathlib import Path

import trio
from dnslib import QTYPE, RCODE, RR, A, DNSRecord

from orch.errors import Conflict, SystemFailure
from orch.net.files import parse_resolv_conf
from orch.net.names import NameTable, compute_answer

# Short, so that a scaled service's new replicas are seen soon; resolvers inside containers
# rarely cache anyway (glibc does not).
TTL = 10

# The limits (see the module's doc). A resolver opens one TCP connection per lookup that needs
# it (a truncated answer), so 16 at once from one container is far more than a real one holds.
MAX_TCP_PER_CLIENT = 16
MAX_TCP = 256
TCP_IDLE = 5.0
# A query is a header and one question (a name is at most 255 bytes) plus, at most, an EDNS
# record: a few hundred bytes. 4 KiB leaves room and bounds what a connection makes us hold.
MAX_TCP_QUERY = 4096
MAX_UDP_QUERY = 4096
MAX_FORWARDS = 256
MAX_FORWARDS_PER_CLIENT = 32
# Per listener.
UDP_QUEUE_PER_CLIENT = 64
UDP_QUEUE = 1024
# Datagrams read from a socket before the loop lets other tasks run.
UDP_BATCH = 512
# Connections accepted in one go (most of them, in a flood, closed at once).
TCP_BATCH = 256
# Clients answered in one turn (each answer costs ~0.1 ms of parsing and packing).
UDP_ANSWERS = 32
# The socket's receive buffer (SO_RCVBUFFORCE, root only): room for about a thousand queries, so
# a burst waits in the kernel instead of being dropped there, where no fairness applies; small
# enough to be read in a few ms.
UDP_RCVBUF = 1 << 20
SO_RCVBUFFORCE = 33  # <asm-generic/socket.h>; Python's socket module lacks the name
# How long a `start` waits for the listener that last held its address to close.
CLOSE_WAIT = 2.0


def host_upstreams(resolv_conf: str | Path = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The host's resolvers, from its resolv.conf (missing file: none, queries fail cleanly)."""
    try:
        text = Path(resolv_conf).read_text()
    except OSError:
        return []
    return [(ns, 53) for ns in parse_resolv_conf(text).nameservers if ":" not in ns]


class _Listener:
    """One network's pair of sockets, bound; served by a task once the loop has it."""

    def __init__(self, network: str, address: str, udp: socket.socket, tcp: socket.socket):
        self.network = network
        self.address = address
        self.udp = udp
        self.tcp = tcp
        self.scope = trio.CancelScope()
        self.served = False  # a task owns the sockets and closes them on its way out
        self.closed = threading.Event()

    def close_unserved(self) -> None:
        """Close sockets no task ever waited on (safe in any thread)."""
        self.udp.close()
        self.tcp.close()
        self.closed.set()


# What `_answer` returns for a query that only the upstream resolvers can answer.
FORWARD = object()


class DnsService:
    """One name table, and a UDP+TCP listener on each network's gateway address.

    `start`, `stop`, `close` and `wait_stopped` are for worker threads (and for any thread
    before `serve` runs or after it ended); the loop itself only posts work to itself."""

    def __init__(self, upstreams: list[tuple[str, int]], *, port: int = 53, timeout: float = 2.0):
        self.upstreams = list(upstreams)
        self.port = port
        self.timeout = timeout
        self.table = NameTable()
        self.rotation = itertools.count()
        # Shared with the callers' threads, under the lock (held for bookkeeping only, never
        # while waiting): the listeners by network, the ones closing by address, the loop.
        self._lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self._closing: dict[str, _Listener] = {}
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        # The loop's own counters (touched only by tasks of `serve`).
        self._tcp_by_client: Counter[str] = Counter()
        self._tcp_total = 0
        self._forwards_by_client: Counter[str] = Counter()
        self._forwards_total = 0

    # -- told by Networks ---------------------------------------------------------------------

    def set_table(self, table: NameTable) -> None:
        # One reference assignment: queries in flight keep the table they started with.
        self.table = table

    def listening(self) -> dict[str, tuple[str, int]]:
        with self._lock:
            return {net: (lis.address, self.port) for net, lis in self._listeners.items()}

    def start(self, network: str, address: str) -> None:
        """Listen for `network` on address:port (UDP and TCP); a second start is a no-op.

        A listener of a removed network that still holds the address is waited for, up to
        CLOSE_WAIT: the loop closes it at its next turn. (Were the loop blocked on a lock the
        caller holds, the wait would end in a Conflict rather than a deadlock; the caller then
        picks another subnet, as for a port another program holds.)"""
        with self._lock:
            if network in self._listeners:
                return
            earlier = self._closing.get(address)
        if earlier is not None and not self._on_loop():
            earlier.closed.wait(CLOSE_WAIT)
        listener = _Listener(network, address, *_bind(network, address, self.port))
        with self._lock:
            if network in self._listeners:  # another thread started it meanwhile
                listener.close_unserved()
                return
            self._listeners[network] = listener
            token = self._token
        if token is not None:
            self._post(token, self._serve_soon, listener)

    def stop(self, network: str) -> None:
        """Stop answering for `network`. The loop closes the listener at its next turn; a later
        `start` on the same address, `close` and `wait_stopped` wait for that."""
        with self._lock:
            listener = self._listeners.pop(network, None)
            if listener is None:
                return
            token = self._token
            if token is not None:
                self._closing[listener.address] = listener
        if token is None:
            listener.close_unserved()
        else:
            self._post(token, self._close_soon, listener)

    def close(self) -> None:
        for network in list(self.listening()):
            self.stop(network)
        self.wait_stopped()

    def wait_stopped(self) -> None:
        """Wait until the listeners of every stopped network are closed."""
        if self._on_loop():
            return  # they close when the loop goes on
        with self._lock:
            closing = list(self._closing.values())
        for listener in closing:
            listener.closed.wait(CLOSE_WAIT)

    def _on_loop(self) -> bool:
        try:
            return trio.lowlevel.current_trio_token() is self._token
        except RuntimeError:
            return False

    @staticmethod
    def _post(token: trio.lowlevel.TrioToken, fn, listener: _Listener) -> None:
        """Run fn(listener) on the loop soon; if the loop has ended meanwhile, here and now."""
        try:
            token.run_sync_soon(fn, listener)
        except trio.RunFinishedError:
            listener.close_unserved()

    # -- on the loop ------------------------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve every listener, those started before this and those started later, until
        cancelled; then close them all."""
        async with trio.open_nursery() as nursery:
            with self._lock:
                self._token = trio.lowlevel.current_trio_token()
                self._nursery = nursery
                pending = list(self._listeners.values())
            for listener in pending:
                self._serve_soon(listener)
            task_status.started()
            try:
                await trio.sleep_forever()
            finally:
                with self._lock:
                    self._nursery = None
                    leftover = list(self._listeners.values())
                    self._listeners.clear()
                for listener in leftover:
                    self._close_soon(listener)
        with self._lock:
            self._token = None
            self._closing.clear()

    def _serve_soon(self, listener: _Listener) -> None:
        if self._nursery is None or listener.scope.cancel_called:
            listener.close_unserved()
            return
        listener.served = True
        self._nursery.start_soon(self._serve_listener, listener)

    def _close_soon(self, listener: _Listener) -> None:
        listener.scope.cancel()  # a task serving it closes the sockets on its way out
        if not listener.served:
            listener.close_unserved()
            self._forget_closing(listener)

    def _forget_closing(self, listener: _Listener) -> None:
        with self._lock:
            if self._closing.get(listener.address) is listener:
                del self._closing[listener.address]

    async def _serve_listener(self, listener: _Listener) -> None:
        try:
            with listener.scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._serve_udp, listener.network, listener.udp, nursery)
                    nursery.start_soon(self._serve_tcp, listener.network, listener.tcp, nursery)
        finally:
            # No task waits on them any more (the scope is done), so a plain close is safe.
            listener.udp.close()
            listener.tcp.close()
            listener.closed.set()
            self._forget_closing(listener)

    async def _serve_udp(self, network: str, sock: socket.socket, nursery: trio.Nursery) -> None:
        queues: OrderedDict[str, deque] = OrderedDict()  # client -> its queries, in turn order
        queued = 0
        while True:
            if queued:
                await trio.sleep(0)  # let the rest of the agent run between batches
            else:
                await trio.lowlevel.wait_readable(sock)
            # Read what is there (up to a batch) into the clients' queues, dropping what is
            # over a queue's bound: a recvfrom each, nothing parsed.
            for _ in range(UDP_BATCH):
                try:
                    data, (client, port) = sock.recvfrom(MAX_UDP_QUERY)
                except BlockingIOError:
                    break
                except OSError:
                    continue  # an ICMP error of an earlier reply, reported on this socket
                q = queues.get(client)
                if queued >= UDP_QUEUE or (q is not None and len(q) >= UDP_QUEUE_PER_CLIENT):
                    continue
                if q is None:
                    q = queues[client] = deque()
                q.append((data, port))
                queued += 1
            # One turn: a query of each client that has one (at most UDP_ANSWERS clients; the
            # others keep their place for the next turn).
            for client in list(queues)[:UDP_ANSWERS]:
                q = queues[client]
                data, port = q.popleft()
                queued -= 1
                if q:
                    queues.move_to_end(client)
                else:
                    del queues[client]
                reply = self._answer(network, client, data)
                if reply is FORWARD:
                    self._forwarding(client, +1)  # counted now: the next query's check sees it
                    nursery.start_soon(self._forward_udp, sock, client, port, data)
                elif reply is not None:
                    _send_datagram(sock, reply, client, port)

    async def _serve_tcp(self, network: str, sock: socket.socket, nursery: trio.Nursery) -> None:
        while True:
            await trio.lowlevel.wait_readable(sock)
            # Accept what is waiting (up to a batch) before other tasks run: one accept per
            # turn of the loop would leave a neighbour's connection behind a flood's.
            for _ in range(TCP_BATCH):
                try:
                    conn, peer = sock.accept()
                except BlockingIOError:
                    break
                except OSError as err:
                    if err.errno == errno.ECONNABORTED:
                        continue  # gone before we took it
                    # Out of descriptors or memory: the connection stays queued, and asking
                    # again at once would only spin; connections that end free some.
                    await trio.sleep(0.1)
                    break
                client = peer[0]
                if self._tcp_total >= MAX_TCP or self._tcp_by_client[client] >= MAX_TCP_PER_CLIENT:
                    conn.close()  # over the limit: refused before it costs a task or a buffer
                    continue
                self._tcp_total += 1
                self._tcp_by_client[client] += 1
                conn.setblocking(False)
                stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
                nursery.start_soon(self._serve_connection, network, stream, client)

    async def _serve_connection(self, network: str, stream: trio.SocketStream, client: str) -> None:
        try:
            async with stream:
                while True:
                    query = None
                    with trio.move_on_after(TCP_IDLE):
                        query = await _receive_message(stream)
                    if query is None:
                        return  # closed, idle too long, or too large
                    reply = self._answer(network, client, query)
                    if reply is FORWARD:
                        self._forwarding(client, +1)
                        try:
                            reply = await self.forward(query, tcp=True)
                        finally:
                            self._forwarding(client, -1)
                    if reply is None:
                        return
                    with trio.move_on_after(TCP_IDLE) as sending:
                        await stream.send_all(len(reply).to_bytes(2, "big") + reply)
                    if sending.cancelled_caught:
                        return
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._tcp_total -= 1
            self._tcp_by_client[client] -= 1
            if not self._tcp_by_client[client]:
                del self._tcp_by_client[client]

    # -- answering ----------------------------------------------------------------------------

    def _answer(self, network: str, client: str, data: bytes):
        """The reply to one query as bytes; FORWARD for one to ask upstream (SERVFAIL instead
        when the client or the node has too many waiting); None for a datagram that is not a
        query (no answer, as dnslib's server gave none)."""
        try:
            request = DNSRecord.parse(data)
            if not request.questions or request.header.qr:
                return None
            return self._reply(network, client, request)
        except Exception:  # DNSError, or whatever else a crafted datagram makes dnslib raise:
            return None  # one query is dropped; the listener, serving everyone, goes on

    def _reply(self, network: str, client: str, request: DNSRecord):
        q = request.q
        # Only A (and ANY) queries turn the rotation: a resolver asks A and AAAA for one lookup,
        # and counting both would hand every lookup the same first address.
        turn = next(self.rotation) if q.qtype in (QTYPE.A, QTYPE.ANY) else 0
        answer = compute_answer(self.table, network, client, str(q.qname), turn)
        reply = request.reply()
        if answer.addresses:
            # The name is ours: A records for A and ANY; an empty NOERROR for other types
            # (AAAA), so the client does not wait for an upstream that cannot know the name.
            if q.qtype in (QTYPE.A, QTYPE.ANY):
                for addr in answer.addresses:
                    reply.add_answer(RR(q.qname, QTYPE.A, rdata=A(addr), ttl=TTL))
            return reply.pack()
        if not answer.forward:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply.pack()
        if self._forwards_total >= MAX_FORWARDS or self._forwards_by_client[client] >= MAX_FORWARDS_PER_CLIENT:
            reply.header.rcode = RCODE.SERVFAIL
            return reply.pack()
        return FORWARD

    async def _forward_udp(self, sock: socket.socket, client: str, port: int, data: bytes) -> None:
        try:
            _send_datagram(sock, await self.forward(data, tcp=False), client, port)
        finally:
            self._forwarding(client, -1)

    def _forwarding(self, client: str, delta: int) -> None:
        self._forwards_total += delta
        self._forwards_by_client[client] += delta
        if not self._forwards_by_client[client]:
            del self._forwards_by_client[client]

    async def forward(self, data: bytes, *, tcp: bool) -> bytes:
        """Ask each upstream in turn over UDP; SERVFAIL when none answers.

        A truncated UDP answer is asked again over TCP when the client came by TCP (a UDP
        client gets the truncated answer and retries over TCP itself, as resolvers do).
        """
        for host, port in self.upstreams:
            try:
                reply = await _ask_udp(host, port, data, self.timeout)
                if reply is not None and tcp and reply[2] & 0x02:  # the TC bit
                    reply = await _ask_tcp(host, port, data, self.timeout)
            except (OSError, trio.BrokenResourceError):
                continue  # refused, unreachable, cut off: the next one
            if reply is not None:
                return reply
        reply = DNSRecord.parse(data).reply()
        reply.header.rcode = RCODE.SERVFAIL
        return reply.pack()


def _send_datagram(sock: socket.socket, reply: bytes, client: str, port: int) -> None:
    try:
        sock.sendto(reply, (client, port))
    except OSError:
        pass  # the send buffer is full or the client is gone: as a datagram lost on the way


def _bind(network: str, address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """The UDP and TCP sockets of a listener, bound and listening (blocking work: any thread)."""
    made = []
    try:
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        made.append(udp)
        try:
            udp.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, UDP_RCVBUF)
        except OSError:  # not root (the unit tests): the default buffer
            pass
        udp.bind((address, port))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        made.append(tcp)
        # The port is bound again by the next listener on this address while connections the
        # last one closed sit in TIME_WAIT (a listening socket still conflicts: see start).
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind((address, port))
        tcp.listen(1024)
        for s in made:
            s.setblocking(False)
        return udp, tcp
    except OSError as err:
        for s in made:
            s.close()
        if err.errno == errno.EADDRINUSE:
            raise Conflict(f"dns for network {network!r}: {address}:{port} is already in use") from None
        raise SystemFailure(f"dns for network {network!r}: listen on {address}:{port}: {err.strerror}") from None


async def _receive_message(stream: trio.SocketStream) -> bytes | None:
    """One length-prefixed DNS message; None at EOF or when it is over MAX_TCP_QUERY."""
    head = await _receive_exactly(stream, 2)
    if head is None:
        return None
    size = int.from_bytes(head, "big")
    if size > MAX_TCP_QUERY:
        return None
    return await _receive_exactly(stream, size)


async def _receive_exactly(stream: trio.SocketStream, size: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < size:
        chunk = await stream.receive_some(size - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


async def _ask_udp(host: str, port: int, data: bytes, timeout: float) -> bytes | None:
    with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        await s.connect((host, port))
        await s.send(data)
        with trio.move_on_after(timeout):
            while True:
                reply = await s.recv(65535)
                # The answer to this query (its id, the QR bit), not a stray datagram.
                if len(reply) >= 12 and reply[:2] == data[:2] and reply[2] & 0x80:
                    return reply
    return None


async def _ask_tcp(host: str, port: int, data: bytes, timeout: float) -> bytes | None:
    with trio.move_on_after(timeout):
        with trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            await s.connect((host, port))
            stream = trio.SocketStream(s)
            await stream.send_all(len(data).to_bytes(2, "big") + data)
            head = await _receive_exactly(stream, 2)
            if head is None:
                return None
            return await _receive_exactly(stream, int.from_bytes(head, "big"))
    return None
