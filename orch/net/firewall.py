"""Host ports held for published ports, and loading the rule set into the kernel.

nftables DNAT moves packets but holds no port: without more, a host program could later bind
a published port and never see its traffic, and a port already taken would be hijacked
silently. So, as docker's port allocator does, orch binds a socket on every published host
port (TCP bound but not listening, UDP bound) and keeps it for as long as the port is published.
The bind is the check: a port already in use fails with EADDRINUSE, reported before anything
else is changed, and "any free port" (`-p 80`) is what the kernel picks for port 0.
A bound socket never receives the published traffic: DNAT happens before local delivery.
"""

from __future__ import annotations

import errno
import socket
import threading
from dataclasses import replace

from orch.errors import Conflict, SystemFailure
from orch.net.kernel import Kernel
from orch.net.model import Network, PortMapping, Publication
from orch.net.overlay import Mesh
from orch.net.ports import compute_delete, compute_ruleset

_Key = tuple[str, str, int]


def _key(m: PortMapping) -> _Key:
    return (m.proto, m.host_ip, m.host_port)


class PortReservations:
    """Sockets that hold published host ports, all-or-nothing per request."""

    def __init__(self):
        self._held: dict[_Key, socket.socket] = {}
        self._lock = threading.Lock()

    def reserve(self, mappings: list[PortMapping]) -> list[PortMapping]:
        """Bind every mapping's host port; return the mappings with the ports chosen.

        On any failure the ports bound so far are released and Conflict names the port.
        """
        done: list[tuple[PortMapping, socket.socket]] = []
        try:
            for m in mappings:
                kind = socket.SOCK_STREAM if m.proto == "tcp" else socket.SOCK_DGRAM
                sock = socket.socket(socket.AF_INET, kind)
                try:
                    sock.bind((m.host_ip or "0.0.0.0", m.host_port))
                except OSError as err:
                    sock.close()
                    where = f"{m.host_ip or '0.0.0.0'}:{m.host_port}/{m.proto}"
                    if err.errno == errno.EADDRINUSE:
                        raise Conflict(f"host port {where} is already in use; publish on another host port "
                                       "or stop what listens there") from None
                    if err.errno == errno.EADDRNOTAVAIL:
                        raise Conflict(f"host address of published port {where} is not an address of this host") from None
                    raise SystemFailure(f"reserve host port {where}: bind: {err.strerror}") from None
                done.append((replace(m, host_port=sock.getsockname()[1]), sock))
        except BaseException:
            for _, sock in done:
                sock.close()
            raise
        with self._lock:
            for m, sock in done:
                self._held[_key(m)] = sock
        return [m for m, _ in done]

    def release(self, mappings: list[PortMapping]) -> None:
        with self._lock:
            for m in mappings:
                sock = self._held.pop(_key(m), None)
                if sock is not None:
                    sock.close()

    def held(self) -> list[_Key]:
        with self._lock:
            return sorted(self._held)

    def close(self) -> None:
        with self._lock:
            for sock in self._held.values():
                sock.close()
            self._held.clear()


def apply_rules(kernel: Kernel, networks: list[Network], publications: list[Publication], *, table: str,
                last: str | None = None, mesh: Mesh = Mesh(), vtep: str = "") -> str:
    """Load the whole table (with no network left, delete it: nothing of orch stays).

    Returns the text loaded; when it equals `last` (what the caller loaded before) nothing is
    loaded again: most connects and disconnects change no rule, and `nft` costs ~15 ms.
    """
    text = compute_ruleset(networks, publications, table=table, mesh=mesh, vtep=vtep) if networks else compute_delete(table)
    if text == last:
        return text
    if any(not n.internal for n in networks) or publications:
        # Routing between the bridges and the rest is what masquerade and DNAT need; docker
        # turns it on the same way and leaves it on (other software may depend on it by then).
        kernel.write_sysctl("net.ipv4.ip_forward", "1")
    kernel.apply_nft(text)
    return text
