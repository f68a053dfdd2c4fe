"""The cluster store's costs against a real local etcd (one member, mutual TLS, as the
embedded default runs it), with httpx beside it as the peer client in the same run.

    PYTHONPATH=. .venv/bin/python bench/cluster_store.py [--keys 25600] [--value 300]

Printed, each on its own line, orch's client and (where it applies) httpx on the same etcd:
- put: sequential puts, each waiting for etcd's fsync (ms each);
- txn: one transaction of 128 and of 1,024 puts (txn/s and keys/s);
- commit: the Store packing N task-sized records into transactions of --max-txn-ops;
- range: every one of --keys keys of --value bytes, raw (bytes) and typed (pydantic records);
- watch: one stream receiving the events of 12,800 writes made in transactions of 128;
- keepalive: one lease keepalive (ms).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

import pydantic
import trio

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from orch.cluster import pki  # noqa: E402
from orch.cluster.etcd import EtcdClient, Put, b64, prefix_end  # noqa: E402
from orch.cluster.etcdproc import MemberConfig, open_member, write_member_tls  # noqa: E402
from orch.cluster.store import EtcdStore, Kind, Limits  # noqa: E402
from orch.cluster.store import Put as PutRecord  # noqa: E402


class TaskLike(pydantic.BaseModel):
    version: int = 1
    id: str
    service: str = "web"
    node: str = "node-0001"
    state: str = "running"
    payload: str = ""


TASKS = Kind("v1/tasks/", TaskLike)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def row(name: str, orch: str, peer: str = "") -> None:
    print(f"  {name:<34} orch: {orch:<28} {('httpx: ' + peer) if peer else ''}")


async def bench(args) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="orch-bench-etcd-"))
    try:
        etcd_ca = pki.CA.create("orch-etcd-ca")
        tls = await trio.to_thread.run_sync(write_member_tls, workdir / "pki", etcd_ca, "bench", ["127.0.0.1"])
        config = MemberConfig(name="bench", data_dir=workdir / "etcd", host="127.0.0.1", tls=tls,
                              client_port=free_port(), peer_port=free_port())
        async with open_member(config) as member:
            await run(args, member.client_url, tls)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def run(args, url: str, tls) -> None:
    import httpx  # the peer: imported here, so its import cost is not orch's

    value = b"x" * args.value
    print(f"etcd {url} (one member, mutual TLS, TLS 1.2), {args.keys} keys of {args.value} B")
    async with EtcdClient([url], tls=tls, timeout=30) as client, httpx.AsyncClient(
            verify=tls.context(), base_url=url, timeout=30) as peer:
        # put
        n = 300
        t = time.perf_counter()
        for i in range(n):
            await client.put(b"/bench/put/%d" % i, value)
        orch_put = (time.perf_counter() - t) / n * 1e3
        t = time.perf_counter()
        for i in range(n):
            (await peer.post("/v3/kv/put", json={"key": b64(b"/bench/put/%d" % i), "value": b64(value)})).raise_for_status()
        peer_put = (time.perf_counter() - t) / n * 1e3
        row("put (sequential)", f"{orch_put:.2f} ms", f"{peer_put:.2f} ms")

        # txn of N puts
        for size in (128, 1024):
            rounds = max(2, 2048 // size)
            t = time.perf_counter()
            for r in range(rounds):
                await client.txn([], [Put(b"/bench/txn/%07d" % (r * size + j), value) for j in range(size)])
            dt = (time.perf_counter() - t) / rounds
            row(f"txn of {size} puts", f"{1 / dt:.0f} txn/s = {size / dt:,.0f} keys/s")

        # commit of task-sized records through the typed store
        store = EtcdStore(client, root="/bench/store/", limits=Limits(max_txn_ops=1024))
        records = [TaskLike(id=f"t{i:06d}", payload="p" * (args.value - 120)) for i in range(args.keys)]
        t = time.perf_counter()
        result = await store.commit([[PutRecord(TASKS, r, expect=0)] for r in records])
        dt = time.perf_counter() - t
        row(f"commit {args.keys} creates", f"{dt * 1e3:.0f} ms, {result.transactions} txns, {args.keys / dt:,.0f}/s")

        # range of every key
        start = b"/bench/range/"
        for base in range(0, args.keys, 1024):
            await client.txn([], [Put(start + b"%08d" % i, value) for i in range(base, min(base + 1024, args.keys))])
        for label, limit in (("one request", 0), ("pages of 5,000", 5000)):
            t = time.perf_counter()
            if limit:
                got, key = 0, start
                while True:
                    res = await client.range(key, prefix_end(start), limit=limit)
                    got += len(res.kvs)
                    if not res.more:
                        break
                    key = res.kvs[-1].key + b"\0"
            else:
                got = len((await client.range(start, prefix_end(start))).kvs)
            orch_ms = (time.perf_counter() - t) * 1e3
            peer_text = ""
            if not limit:
                t = time.perf_counter()
                resp = await peer.post("/v3/kv/range", json={"key": b64(start), "range_end": b64(prefix_end(start))})
                import base64
                kvs = [(base64.b64decode(kv["key"]), base64.b64decode(kv["value"])) for kv in resp.json()["kvs"]]
                peer_text = f"{(time.perf_counter() - t) * 1e3:.0f} ms ({len(kvs)} keys)"
            row(f"range {got} keys, {label}", f"{orch_ms:.0f} ms", peer_text)
        t = time.perf_counter()
        listing = await store.list(TASKS)
        row(f"list {len(listing.items)} typed records", f"{(time.perf_counter() - t) * 1e3:.0f} ms (pydantic included)")

        # watch
        wstart = b"/bench/watch/"
        rev = (await client.range(b"/bench/none")).revision + 1
        total = 12800
        async with client.open_watch(wstart, prefix_end(wstart), start_revision=rev) as stream, trio.open_nursery() as nursery:
            async def write() -> None:
                async with EtcdClient([url], tls=tls, timeout=30) as writer:
                    for base in range(0, total, 128):
                        await writer.txn([], [Put(wstart + b"%08d" % i, value) for i in range(base, base + 128)])
            t = time.perf_counter()
            nursery.start_soon(write)
            seen = 0
            async for resp in stream:
                seen += len(resp.events)
                if seen >= total:
                    break
            dt = time.perf_counter() - t
        row(f"watch {total} events", f"{total / dt:,.0f} events/s (writes included)")

        # keepalive
        lease, _ttl = await client.lease_grant(10)
        t = time.perf_counter()
        for _ in range(200):
            await client.lease_keepalive(lease)
        row("lease keepalive", f"{(time.perf_counter() - t) / 200 * 1e3:.2f} ms")
        await client.lease_revoke(lease)
        await client.delete_range(b"/bench/", prefix_end(b"/bench/"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=25600)
    parser.add_argument("--value", type=int, default=300)
    trio.run(bench, parser.parse_args())


if __name__ == "__main__":
    main()
