"""docker's GET /containers/{id}/stats?stream=&one-shot=: a container's resource usage from
its cgroups (v1 or v2, under the node's own cgroup parent), /proc/stat and its network
namespace's /proc/<pid>/net/dev, shaped by statsview.py.

- stream=true (the default): one message a second while the container runs (nothing while it
  does not), each with the previous reading's CPU figures as precpu_stats, until the
  container is removed or the client leaves.
- stream=false: two readings a second apart, the second with the first as precpu_stats, so a
  client can compute CPU % from one answer (as dockerd does); with one-shot=true, one reading.
- A container that does not run: dockerd's empty stats (zeros, the zero time).
"""

import json
import os

import trio
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from orch.errors import InvalidArgument
from orch.node.agent import statsview
from orch.node.agent.routes_containers import flag, node_of
from orch.node.runtime.containerlog import rfc3339_nano

INTERVAL = 1.0  # seconds between readings, dockerd's collector interval


def _running(node, rec: dict) -> bool:
    return rec["Id"] in node.records and rec["State"]["Status"] in ("running", "paused")


def read_sample(node, rec: dict) -> tuple[dict, dict | None, str] | None:
    """(sample, networks, read time) of a running container, or None if its group is gone.
    Blocking reads: call it in a thread."""
    from orch.node.agent.nodeinfo import mem_total

    cgroups = node.cgroups()
    files = cgroups.stat_files(rec.orch.cgroup)
    if not files:
        return None
    read = rfc3339_nano()
    with open("/proc/stat") as f:
        proc_stat = f.read()
    clk_tck = os.sysconf("SC_CLK_TCK")
    sample = statsview.compute_sample(
        files, version=cgroups.version, system_usage=statsview.system_cpu_usage(proc_stat, clk_tck),
        online_cpus=os.sysconf("SC_NPROCESSORS_ONLN"), clk_tck=clk_tck, machine_memory=mem_total())
    networks = None
    pid = rec["State"].get("Pid")
    if (rec.orch.net or {}).get("mode") == "bridge" and pid:
        try:
            with open(f"/proc/{pid}/net/dev") as f:
                networks = statsview.parse_net_dev(f.read())
        except OSError:
            networks = None
    return sample, networks, read


async def stats(request):
    node = node_of(request)
    rec = node.get(request.path_params["ref"])
    stream, one_shot = flag(request, "stream", True), flag(request, "one-shot")
    if stream and one_shot:
        raise InvalidArgument("cannot have stream=true and one-shot=true")
    name, cid = rec["Name"], rec["Id"]

    async def reading():
        if not _running(node, rec):
            return None
        return await trio.to_thread.run_sync(read_sample, node, rec)

    if not stream:
        first = await reading()
        if first is None:
            return JSONResponse(statsview.empty_stats(name, cid))
        previous = None
        if not one_shot:
            await trio.sleep(INTERVAL)  # the measurement's interval, not a wait for a condition
            second = await reading()
            if second is not None:
                previous, first = first, second
        sample, networks, read = first
        return JSONResponse(statsview.compose(sample, previous[0] if previous else None, read=read,
                                              preread=previous[2] if previous else "", name=name, cid=cid, networks=networks))

    async def body():
        previous = None
        while rec["Id"] in node.records:
            current = await reading()
            if current is None:
                previous = None
                # Nothing while it does not run (dockerd's collector skips it too).
                await node.wait_until(lambda: _running(node, rec) or rec["Id"] not in node.records)
                continue
            sample, networks, read = current
            message = statsview.compose(sample, previous[0] if previous else None, read=read,
                                        preread=previous[2] if previous else "", name=rec["Name"], cid=cid, networks=networks)
            yield (json.dumps(message, separators=(",", ":")) + "\n").encode()
            previous = current
            await trio.sleep(INTERVAL)

    return StreamingResponse(body(), media_type="application/json")


ROUTES = [
    Route("/containers/{ref}/stats", stats, methods=["GET"]),
]
