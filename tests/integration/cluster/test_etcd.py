"""The etcd client against a real etcd: mutual TLS, failover between endpoints, one-line
errors, and watches that resume after a disconnect (through a TCP proxy the test can cut)."""

from __future__ import annotations

import pytest
import trio

from orch.cluster.etcd import Compacted, EtcdClient, TLSFiles, prefix_end
from orch.errors import InvalidArgument, Unavailable

from .conftest import free_port

pytestmark = pytest.mark.tools("/usr/bin/etcd", package="etcd-server")


class Proxy:
    """A TCP proxy to etcd whose connections the test can drop, and which can refuse new ones."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.blocked = False
        self.connections: set[trio.CancelScope] = set()
        self.accepted = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def drop(self) -> None:
        for scope in list(self.connections):
            scope.cancel()

    async def _handle(self, client: trio.SocketStream) -> None:
        self.accepted += 1
        if self.blocked:
            await client.aclose()
            return
        with trio.CancelScope() as scope:
            self.connections.add(scope)
            try:
                upstream = await trio.open_tcp_stream("127.0.0.1", self.upstream_port)
                async with client, upstream, trio.open_nursery() as nursery:
                    async def pipe(src, dst):
                        try:
                            async for data in src:
                                await dst.send_all(data)
                        except trio.BrokenResourceError:
                            pass
                        nursery.cancel_scope.cancel()
                    nursery.start_soon(pipe, client, upstream)
                    nursery.start_soon(pipe, upstream, client)
            finally:
                self.connections.discard(scope)

    async def run(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host="127.0.0.1")
        task_status.started()
        await trio.serve_listeners(self._handle, listeners)


async def test_mutual_tls_is_required(etcd_server, etcd_pki):
    async with etcd_server.client() as ok:
        await ok.put(b"/tls-test/a", b"1")
    # No client certificate: the handshake fails and the error names the endpoint and operation.
    import ssl
    ctx = ssl.create_default_context(cafile=etcd_pki.member.ca_file)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    async with EtcdClient([etcd_server.url], tls=ctx, timeout=1) as anonymous:
        with pytest.raises(Unavailable, match=rf"^etcd at {etcd_server.url} is unreachable for range /tls-test/a: "
                                              rf"tls: .*certificate.*signed by etcd's CA$"):
            await anonymous.range(b"/tls-test/a")
    # A certificate from another CA (a worker's, from the cluster CA) is refused the same way.
    async with EtcdClient([etcd_server.url], tls=etcd_pki.foreign, timeout=1) as worker:
        with pytest.raises(Unavailable, match=rf"^etcd at {etcd_server.url} is unreachable for put /tls-test/b: tls: .*certificate"):
            await worker.put(b"/tls-test/b", b"1")
    async with etcd_server.client() as ok:
        assert (await ok.range(b"/tls-test/b")).kvs == []
        await ok.delete_range(b"/tls-test/", prefix_end(b"/tls-test/"))


async def test_https_without_certificates_is_a_usage_error(etcd_server):
    with pytest.raises(InvalidArgument, match="is https but no TLS certificates were given"):
        EtcdClient([etcd_server.url])
    with pytest.raises(InvalidArgument, match="cannot be loaded"):
        EtcdClient([etcd_server.url], tls=TLSFiles("/nonexistent/ca.pem", "/nonexistent/c.pem", "/nonexistent/k.pem"))


async def test_failover_to_the_next_endpoint_and_one_line_when_none_answers(etcd_server):
    dead = f"https://127.0.0.1:{free_port()}"
    async with EtcdClient([dead, etcd_server.url], tls=etcd_server.tls) as client:
        rev = await client.put(b"/failover/a", b"1")
        assert client.endpoint == etcd_server.url
        assert (await client.range(b"/failover/a")).revision >= rev
        await client.delete_range(b"/failover/a")
    async with EtcdClient([dead], tls=etcd_server.tls, timeout=0.5) as client:
        with pytest.raises(Unavailable) as err:
            await client.put(b"/failover/a", b"1")
    assert str(err.value) == (f"etcd at {dead} is unreachable for put /failover/a: "
                              f"{str(err.value).split(': ', 1)[1].split(';')[0]}; check --etcd-endpoints")
    assert "connection refused" in str(err.value) and "\n" not in str(err.value)


async def test_watch_resumes_after_a_disconnect_without_loss_or_repeat(etcd_server):
    proxy = Proxy(etcd_server.config.client_port)
    prefix = b"/resume-test/"
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        async with etcd_server.client() as writer, EtcdClient([proxy.url], tls=etcd_server.tls) as watcher:
            start = await writer.put(prefix + b"k00", b"0")
            seen: list[bytes] = []
            async with watcher.open_watch(prefix, prefix_end(prefix), start_revision=start) as stream:
                async def read(until: int) -> None:
                    async for resp in stream:
                        seen.extend(ev.kv.key for ev in resp.events)
                        if len(seen) >= until:
                            return
                for i in range(1, 5):
                    await writer.put(prefix + b"k%02d" % i, b"x")
                await read(5)
                proxy.drop()  # the stream breaks; writes go on meanwhile
                for i in range(5, 10):
                    await writer.put(prefix + b"k%02d" % i, b"x")
                await read(10)
                assert stream.reconnects >= 1
            assert seen == [prefix + b"k%02d" % i for i in range(10)]
            await writer.delete_range(prefix, prefix_end(prefix))
        nursery.cancel_scope.cancel()


async def test_watch_reports_compaction_when_it_cannot_resume(etcd_server):
    proxy = Proxy(etcd_server.config.client_port)
    prefix = b"/compact-test/"
    async with trio.open_nursery() as nursery:
        await nursery.start(proxy.run)
        async with etcd_server.client() as writer, EtcdClient([proxy.url], tls=etcd_server.tls, timeout=30) as watcher:
            start = await writer.put(prefix + b"a", b"0")
            async with watcher.open_watch(prefix, prefix_end(prefix), start_revision=start) as stream:
                first = await stream.__anext__()
                assert [ev.kv.key for ev in first.events] == [prefix + b"a"]
                proxy.blocked = True  # the watcher cannot reconnect...
                proxy.drop()
                await writer.put(prefix + b"b", b"1")
                rev = await writer.put(prefix + b"c", b"2")
                await writer.compact(rev)  # ...while what it missed is compacted away
                proxy.blocked = False
                with pytest.raises(Compacted, match="list again") as err:
                    async for _resp in stream:
                        pass
                assert err.value.revision == rev
            await writer.delete_range(prefix, prefix_end(prefix))
        nursery.cancel_scope.cancel()


async def test_a_detached_session_keeps_its_lease_while_its_event_loop_is_held(etcd_server):
    # A leader's event loop may be busy for longer than its lease's TTL (a pass over 100,000
    # tasks on a loaded machine): its keepalives go from a thread of their own. The same hold
    # costs a session kept from the loop its lease, and a loop held beyond `max_stall` lets
    # even a detached session's lease go, as a dead process's would.
    import time
    import uuid

    from orch.cluster.election import open_session
    from orch.cluster.store import EtcdStore

    async with EtcdClient([etcd_server.url], tls=etcd_server.tls) as client:
        store = EtcdStore(client, root=f"/detached-{uuid.uuid4().hex[:8]}/")
        async with open_session(store, 2, detached=True) as session:
            assert session.ttl == 2
            time.sleep(2.5)  # the event loop held, past the TTL
            await trio.sleep(0.1)
            assert not session.lost.is_set(), session.reason
            assert session.keepalives >= 2
            assert await store.keepalive(session.lease) > 0
        async with open_session(store, 2) as session:
            time.sleep(2.5)
            await trio.sleep(0.1)
            assert session.lost.is_set() and "not renewed within its TTL" in session.reason
        async with open_session(store, 2, detached=True, max_stall=1.0) as session:
            time.sleep(2.5)
            await trio.sleep(0.1)
            assert session.lost.is_set() and "event loop was held over 1 s" in session.reason
