"""TCP with mutual TLS between the cluster's nodes: a manager's listener (port 2377, as
swarm) and a node's connections to it.

Every node holds an identity: the cluster CA's certificate, its own certificate (CN = node
id, OU = role, O = cluster id; pki.py) and its key, as files under ORCH_ROOT/cluster/tls
(0600). Both ends verify the other against the cluster CA. The listener asks for a client
certificate but lets a connection without one through the handshake, because a node that
joins has none yet: such a connection may only fetch the CA certificate (to pin it against
its join token) and ask to join; everything else requires a verified certificate, and the
dispatcher requires one that names a node the cluster still holds.

Bounds: at most `max_connections` at once (one more is closed at accept), a handshake and a
first message within HANDSHAKE_TIMEOUT, frames as wire.MAX_FRAME.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trio

from orch.cluster import pki
from orch.cluster.wire import Framed
from orch.errors import InvalidArgument, PermissionDenied, Unavailable

DEFAULT_PORT = 2377
HANDSHAKE_TIMEOUT = 10.0
MAX_CONNECTIONS = 4096
# Handshakes under way at once. Each costs the event loop a millisecond or two of CPU: a
# thousand nodes coming back to a new leader, all at once, made every turn of the loop last
# seconds, and the leader's lease keepalives waited behind them. Queued ones wait their turn
# (within the handshake timeout) instead.
MAX_HANDSHAKES = 16
# A manager that just took over may have a thousand nodes' handshakes queued: one given up
# on is made again from the start, so a worker waits a while before trying another manager.
CONNECT_TIMEOUT = 10.0


def split_addr(addr: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """"10.0.0.1:2377" or "10.0.0.1" -> ("10.0.0.1", 2377)."""
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise InvalidArgument(f"invalid address {addr!r}: the port must be a number from 1 to 65535")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class Identity:
    """A node's TLS files: tls/ca.pem, tls/node.pem, tls/node-key.pem under `directory`."""

    directory: Path

    @property
    def ca_file(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def cert_file(self) -> Path:
        return self.directory / "node.pem"

    @property
    def key_file(self) -> Path:
        return self.directory / "node-key.pem"

    def exists(self) -> bool:
        return self.cert_file.exists() and self.key_file.exists() and self.ca_file.exists()

    def write(self, ca_pem: bytes, cert_pem: bytes, key_pem: bytes) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path, data in ((self.ca_file, ca_pem), (self.cert_file, cert_pem), (self.key_file, key_pem)):
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)

    def cert(self):
        return pki.load_cert(self.cert_file.read_bytes())

    @property
    def node_id(self) -> str:
        return pki.node_id_of(self.cert())

    @property
    def role(self) -> str:
        return pki.role_of(self.cert())

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.load_verify_locations(cafile=str(self.ca_file))
        # Optional: a joiner has no certificate yet. A certificate that is sent must verify.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        return ctx

    def client_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.load_verify_locations(cafile=str(self.ca_file))
        # Node certificates name node ids, not host names: the CA and the role are checked.
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def unverified_context() -> ssl.SSLContext:
    """For a joiner's first connection: it pins the CA by its token before trusting anything."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass(frozen=True)
class Peer:
    """Who is on the other end of a verified connection; node_id "" when it sent no cert."""

    node_id: str
    role: str
    cluster_id: str
    addr: str


async def open_connection(addr: str, ctx: ssl.SSLContext, *, want_role: str | None = pki.MANAGER) -> trio.SSLStream:
    """A TLS connection to a manager at host:port, handshake done and, with `want_role`,
    the peer's certificate checked to name that role."""
    host, port = split_addr(addr)
    try:
        with trio.fail_after(CONNECT_TIMEOUT):
            tcp = await trio.open_tcp_stream(host, port)
            stream = trio.SSLStream(tcp, ctx, server_hostname=None)
            await stream.do_handshake()
    except trio.TooSlowError:
        raise Unavailable(f"manager {addr} did not answer within {CONNECT_TIMEOUT:.0f} s; check the address and that it is up") from None
    except ssl.SSLError as err:
        raise PermissionDenied(f"TLS with manager {addr} failed: {err.reason or err}; is it a manager of this cluster?") from None
    except OSError as err:
        raise Unavailable(f"cannot reach manager {addr}: {err.strerror or err}") from None
    if want_role is not None:
        der = stream.getpeercert(binary_form=True)
        if not der or pki.role_of(_der_cert(der)) != want_role:
            await stream.aclose()
            raise PermissionDenied(f"{addr} is not a {want_role} of this cluster")
    return stream


async def serve(addr: str, ctx: ssl.SSLContext, handler, *, max_connections: int = MAX_CONNECTIONS,
                task_status=trio.TASK_STATUS_IGNORED) -> None:
    """Accept TLS connections on host:port and run `await handler(framed, peer)` for each."""
    host, port = split_addr(addr)
    try:
        listeners = await trio.open_tcp_listeners(port, host=host or None)
    except OSError as err:
        raise Unavailable(f"cannot listen on {addr}: {err.strerror or err}") from None
    limit = trio.CapacityLimiter(max_connections)
    handshakes = trio.CapacityLimiter(MAX_HANDSHAKES)

    async def one(tcp: trio.SocketStream) -> None:
        try:
            limit.acquire_nowait()
        except trio.WouldBlock:
            await tcp.aclose()
            return
        try:
            stream = trio.SSLStream(tcp, ctx, server_side=True)
            remote = _remote(tcp)
            try:
                with trio.fail_after(HANDSHAKE_TIMEOUT):
                    async with handshakes:
                        await stream.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError):
                await trio.aclose_forcefully(tcp)
                return
            der = stream.getpeercert(binary_form=True)
            if der:
                cert = _der_cert(der)
                peer = Peer(pki.node_id_of(cert), pki.role_of(cert), pki.cluster_id_of(cert), remote)
            else:
                peer = Peer("", "", "", remote)
            framed = Framed(stream)
            try:
                await handler(framed, peer)
            finally:
                await trio.aclose_forcefully(stream)
        finally:
            limit.release()

    async with trio.open_nursery() as nursery:
        bound = [listener.socket.getsockname() for listener in listeners]
        task_status.started(bound)
        await trio.serve_listeners(one, listeners, handler_nursery=nursery)


def _der_cert(der: bytes):
    from cryptography import x509

    return x509.load_der_x509_certificate(der)


def _remote(tcp: trio.SocketStream) -> str:
    try:
        host, port = tcp.socket.getpeername()[:2]
        return f"{host}:{port}"
    except OSError:
        return ""
