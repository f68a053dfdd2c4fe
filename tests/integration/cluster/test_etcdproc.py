"""A local etcd member as the manager runs it: started healthy over mutual TLS, refused to
clients without the etcd CA's certificate, restarted when it dies, joined by a second and a
third member, and still serving writes when one of three is gone."""

from __future__ import annotations

import shutil
import ssl
import tempfile
from pathlib import Path

import pytest
import trio

from orch.cluster import pki
from orch.cluster.etcd import EtcdClient
from orch.cluster.etcdproc import MemberConfig, add_member, open_member, remove_member, write_member_tls
from orch.errors import NotFound, SystemFailure, Unavailable

from .conftest import free_port

pytestmark = pytest.mark.tools("/usr/bin/etcd", package="etcd-server")


@pytest.fixture
def workdir():
    directory = Path(tempfile.mkdtemp(prefix="orch-etcdproc-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def member_config(workdir: Path, name: str, tls, **kw) -> MemberConfig:
    return MemberConfig(name=name, data_dir=workdir / name / "etcd", host="127.0.0.1", tls=tls,
                        client_port=free_port(), peer_port=free_port(), **kw)


async def test_one_member_is_healthy_over_mutual_tls_and_refuses_strangers(workdir, etcd_pki):
    tls = await trio.to_thread.run_sync(write_member_tls, workdir / "pki", etcd_pki.ca, "m1", ["127.0.0.1"])
    config = member_config(workdir, "m1", tls)
    async with open_member(config) as member:
        async with EtcdClient([member.client_url], tls=tls) as client:
            status = await client.status()
            assert status.leader == status.member_id and status.version.startswith("3.")
            await client.put(b"/x", b"1")
            assert [m.name for m in await client.member_list()] == ["m1"]
        ctx = ssl.create_default_context(cafile=tls.ca_file)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        async with EtcdClient([member.client_url], tls=ctx, timeout=1) as anonymous:
            with pytest.raises(Unavailable, match="tls: .*certificate"):
                await anonymous.put(b"/x", b"2")
        async with EtcdClient([member.client_url], tls=etcd_pki.foreign, timeout=1) as worker:
            with pytest.raises(Unavailable, match="tls: .*certificate"):
                await worker.range(b"/x")
        process = member.process
    assert process.returncode is not None  # stopped and reaped when the block ended


async def test_a_member_that_dies_is_restarted(workdir, etcd_pki):
    tls = await trio.to_thread.run_sync(write_member_tls, workdir / "pki", etcd_pki.ca, "m1", ["127.0.0.1"])
    async with open_member(member_config(workdir, "m1", tls)) as member:
        async with EtcdClient([member.client_url], tls=tls) as client:
            await client.put(b"/kept", b"1")
            first = member.process
            member.kill()
            while member.process is first or member.restarts < 1:
                await trio.sleep(0.05)
            async with EtcdClient([member.client_url], tls=tls, timeout=15) as again:
                assert (await again.range(b"/kept")).kvs[0].value == b"1"  # the data dir survived


async def test_a_member_that_cannot_start_is_one_line(workdir, etcd_pki):
    tls = await trio.to_thread.run_sync(write_member_tls, workdir / "pki", etcd_pki.ca, "m1", ["127.0.0.1"])
    busy = member_config(workdir, "m1", tls)
    async with open_member(busy):
        clash = MemberConfig(name="m2", data_dir=workdir / "m2" / "etcd", host="127.0.0.1", tls=tls,
                             client_port=busy.client_port, peer_port=free_port())
        with pytest.raises(SystemFailure, match=r"^etcd member at https://127.0.0.1:\d+ exited with code \d+ while starting: .*address already in use \(log: .*m2/etcd.log\)$"):
            async with open_member(clash):
                pass


async def test_members_join_and_two_of_three_still_serve_writes(workdir, etcd_pki):
    pki_dir = workdir / "pki"
    tls = {n: await trio.to_thread.run_sync(write_member_tls, pki_dir, etcd_pki.ca, n, ["127.0.0.1"]) for n in ("m1", "m2", "m3")}
    c1 = member_config(workdir, "m1", tls["m1"])
    async with open_member(c1) as m1:
        async with EtcdClient([m1.client_url], tls=tls["m1"], timeout=15) as client:
            await client.put(b"/before-join", b"1")
            c2 = member_config(workdir, "m2", tls["m2"])
            c2 = MemberConfig(**{**c2.__dict__, "state": "existing",
                                 "initial_cluster": await add_member(client, "m2", c2.peer_url)})
            async with open_member(c2) as m2:
                c3 = member_config(workdir, "m3", tls["m3"])
                c3 = MemberConfig(**{**c3.__dict__, "state": "existing",
                                     "initial_cluster": await add_member(client, "m3", c3.peer_url)})
                async with open_member(c3) as m3:
                    assert sorted(m.name for m in await client.member_list()) == ["m1", "m2", "m3"]
                    async with EtcdClient([m3.client_url], tls=tls["m3"]) as on_m3:
                        assert (await on_m3.range(b"/before-join")).kvs[0].value == b"1"  # replicated
                    m1_id = (await client.status()).member_id
                    m1.kill(restart=False)  # the first member, the raft leader, dies
                    endpoints = [m1.client_url, m2.client_url, m3.client_url]
                    async with EtcdClient(endpoints, tls=tls["m2"], timeout=15) as survivors:
                        async with EtcdClient([m2.client_url], tls=tls["m2"]) as on_m2:
                            while (await on_m2.status()).leader in (0, m1_id):  # until m2 and m3 elect a leader
                                await trio.sleep(0.1)
                        rev = await survivors.put(b"/after-loss", b"2")
                        assert survivors.endpoint != m1.client_url
                        assert (await survivors.range(b"/after-loss")).kvs[0].mod_revision == rev
                        await remove_member(survivors, "m1")
                        assert sorted(m.name for m in await survivors.member_list()) == ["m2", "m3"]
                        with pytest.raises(NotFound, match="etcd has no member named m1"):
                            await remove_member(survivors, "m1")
                        await survivors.put(b"/after-remove", b"3")


async def test_worker_certificates_cannot_speak_to_etcd(workdir, etcd_pki):
    """A worker holds a certificate from the cluster CA; etcd trusts only the etcd CA."""
    cluster_ca = pki.CA.create()
    key = pki.new_key()
    cert = cluster_ca.sign_node_csr(pki.make_csr(key), node_id="w1", role=pki.WORKER, cluster_id="c1")
    (workdir / "w1.pem").write_bytes(cert)
    (workdir / "w1-key.pem").write_bytes(pki.key_pem(key))
    tls = await trio.to_thread.run_sync(write_member_tls, workdir / "pki", etcd_pki.ca, "m1", ["127.0.0.1"])
    async with open_member(member_config(workdir, "m1", tls)) as member:
        from orch.cluster.etcd import TLSFiles
        async with EtcdClient([member.client_url], tls=TLSFiles(tls.ca_file, str(workdir / "w1.pem"), str(workdir / "w1-key.pem")),
                              timeout=1) as worker:
            with pytest.raises(Unavailable, match="tls: .*certificate"):
                await worker.range(b"/orch/")
