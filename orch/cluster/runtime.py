"""The worker's runtime over the node's own containers: a task becomes a container of the
node agent, made with the same create request `orch create` and compose use.

This runs inside the agent (it is the agent's cluster worker, as health.py and
supervision.py are the agent's supervisors), so it calls the agent's Node operations
directly and waits on its change events; it reads records only through the small helpers
at the bottom, the one place that knows their shape.

A task's container is named SERVICE.SLOT.TASKID and labelled as docker labels swarm tasks
(com.docker.swarm.service.name, .service.id, .task.id, .task.name, .node.id, and the
stack's com.docker.stack.namespace from the service's labels), so `orch ps` on each node
shows them and the runtime finds them again after an agent restart. The container has no
restart policy of its own: the cluster decides restarts (a failed task is replaced by a
new task, as in swarm).
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Callable

import trio

from orch.cluster.worker import Observed
from orch.errors import NotFound, OrchError

TASK_ID = "com.docker.swarm.task.id"
TASK_NAME = "com.docker.swarm.task.name"
SERVICE_ID = "com.docker.swarm.service.id"
SERVICE_NAME = "com.docker.swarm.service.name"
NODE_ID = "com.docker.swarm.node.id"
STACK = "com.docker.stack.namespace"


def create_request(task: dict, node_id: str, network_names: dict[str, str] | None = None):
    """The node's create request for a task (the worker's assignment dict). `network_names`:
    the node's names of the cluster's overlay networks (network id -> name), for a task that
    has addresses on them: the container joins each with its address, the first one primary
    (its default route), the ingress network last."""
    from orch.api.models import CreateRequest, HealthcheckBody, MountRequest, NetworkAttachment, PortBinding, UlimitBody

    spec = task.get("spec", {})
    c = spec.get("container_spec", {})
    resources = spec.get("resources", {})
    limits = resources.get("limits", {}) or {}
    labels = dict(c.get("labels", {}))
    labels.update({TASK_ID: task["id"], TASK_NAME: task["name"], SERVICE_ID: task["service_id"],
                   SERVICE_NAME: task["service_name"], NODE_ID: node_id})
    stack = (task.get("service_labels") or {}).get(STACK)
    if stack:
        labels[STACK] = stack
    health = c.get("healthcheck")
    healthcheck = None
    if health and health.get("test"):
        healthcheck = HealthcheckBody(test=health["test"], interval=health.get("interval"), timeout=health.get("timeout"),
                                      retries=health.get("retries"), start_period=health.get("start_period"),
                                      start_interval=health.get("start_interval"))
    mounts = []
    for m in c.get("mounts", []):
        mounts.append(MountRequest(type=m.get("type", "volume"), source=m.get("source", ""), target=m["target"],
                                   read_only=bool(m.get("read_only")),
                                   tmpfs_size=(m.get("tmpfs_options") or {}).get("size_bytes")))
    ports = []
    for p in task.get("endpoint", {}).get("ports", []):
        # Mode host publishes on the node that runs the task (`-p` of this container); ingress
        # ports are the routing mesh's, on every node (orch.net.overlay), not the container's.
        if p.get("publish_mode") == "host":
            ports.append(PortBinding(host_port=p.get("published_port") or "", container_port=p["target_port"],
                                     protocol=p.get("protocol", "tcp")))
    networks = []
    for att in task.get("networks", []):
        name = (network_names or {}).get(att["network_id"])
        if name is None:
            raise NotFound(f"task {task['id']}: its network {att['network_id']} is not known on this node yet")
        networks.append(NetworkAttachment(name=name, ipv4_address=att["addresses"][0].split("/")[0]))
    return CreateRequest(
        image=c["image"], name=task["container_name"], labels=labels,
        entrypoint=c.get("command"), cmd=c.get("args"), env=list(c.get("env", [])),
        hostname=c.get("hostname") or None, workdir=c.get("dir") or None, user=c.get("user") or None,
        tty=bool(c.get("tty")), open_stdin=bool(c.get("open_stdin")), init=bool(c.get("init")),
        read_only=bool(c.get("read_only")), healthcheck=healthcheck,
        stop_signal=c.get("stop_signal") or None, stop_timeout=c.get("stop_grace_period"),
        nano_cpus=limits.get("nano_cpus") or None, memory=limits.get("memory_bytes") or None,
        mounts=mounts, ports=ports, networks=networks, extra_hosts=list(c.get("hosts", [])),
        cap_add=list(c.get("cap_add", [])), cap_drop=list(c.get("cap_drop", [])), sysctls=dict(c.get("sysctls", {})),
        ulimits=[UlimitBody(name=u["name"], soft=u["soft"], hard=u["hard"]) for u in c.get("ulimits", [])],
    )


class NodeRuntime:
    """worker.Runtime over the agent's Node (orch.node.agent.node). `vtep`: the node's underlay
    address, where its overlay networks' VXLAN devices send from."""

    def __init__(self, node, node_id: Callable[[], str], vtep: str = ""):
        self.node = node
        self.node_id = node_id
        self.vtep = vtep
        self.network_names: dict[str, str] = {}  # overlay network id -> its name
        self._files: dict[str, list[tuple[str, str]]] = {}  # task id -> (host file, target) to bind at create
        self._task_of: dict[str, str] = {}  # container id -> task id, for the files a removal deletes

    async def sync_networks(self, entries: list[dict]) -> None:
        """The overlay entries of the assignments: the node's networking makes and programs
        what they say (orch.net.overlay), in a worker thread (netlink, nft)."""
        self.network_names = {e["network_id"]: e["name"] for e in entries if e.get("kind") == "network"}
        if self.node.net is None:
            return
        for warning in await trio.to_thread.run_sync(self.node.net.set_cluster, entries, self.vtep):
            print(f"worker: {warning}", file=sys.stderr, flush=True)

    async def drain(self, container_id: str, grace: float | None) -> None:
        try:
            rec = self.node.get(container_id)
        except NotFound:
            return
        await self.node.drain(rec, grace)

    async def observe(self) -> list[Observed]:
        out = []
        for rec in list(self.node.records.values()):
            task_id = _labels(rec).get(TASK_ID)
            if task_id:
                out.append(_observed(task_id, rec))
        return out

    async def prepare(self, task: dict, secrets, configs) -> None:
        await self._write_files(task, secrets, configs)
        try:
            await self._pull(task)
        except BaseException:
            await self._discard_files(task["id"])
            raise

    async def _discard_files(self, task_id: str) -> None:
        """A task that gets no container (its image or its create failed, or it was removed
        meanwhile) leaves no secret behind: a removal deletes files only with the container."""
        self._files.pop(task_id, None)
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self.node.remove_task_files, task_id)

    async def _pull(self, task: dict) -> None:
        image = task["spec"]["container_spec"]["image"]
        images = self.node.images
        if await trio.to_thread.run_sync(images.exists, image):
            return
        from orch.registry.pull import pull

        # The credentials given at deploy (--with-registry-auth) travel with the task; else the
        # node's own (ORCH_ROOT's auth.json).
        auth = task.get("registry_auth")
        lookup = (lambda _domain: (auth["username"], auth["password"])) if auth else None
        kw = {"lookup": lookup} if lookup else {}
        await trio.to_thread.run_sync(lambda: pull(images, image, **kw))

    async def create(self, task: dict) -> str:
        existing = self._by_task(task["id"])
        if existing is not None:
            return _id(existing)  # created before an agent restart: adopt it
        request = create_request(task, self.node_id(), self.network_names)
        files = self._files.pop(task["id"], [])
        if files:
            from orch.api.models import MountRequest

            request = request.model_copy(update={"mounts": [*request.mounts, *(
                MountRequest(type="bind", source=source, target=target, read_only=True) for source, target in files)]})
        try:
            rec = await self.node.create(request)
        except BaseException:
            await self._discard_files(task["id"])
            raise
        self._task_of[_id(rec)] = task["id"]
        return _id(rec)

    async def _write_files(self, task: dict, secrets: dict, configs: dict) -> None:
        """The task's secrets and configs as files on the node's tmpfs, to be bound read-only
        into its container (docker: secrets under /run/secrets, configs under /)."""
        c = task["spec"].get("container_spec", {})
        wanted = [(ref, "secret", "/run/secrets/") for ref in c.get("secrets", [])] + \
                 [(ref, "config", "/") for ref in c.get("configs", [])]
        if not wanted:
            return
        by_name = {**{("secret", v["name"]): v for v in secrets.values()}, **{("config", v["name"]): v for v in configs.values()}}
        files: list[tuple[str, str, bytes, dict]] = []
        for ref, kind, base in wanted:
            name = ref.get(f"{kind}_name", "")
            item = by_name.get((kind, name))
            if item is None:
                raise NotFound(f"{kind} {name} of task {task['name']} did not reach this node; is it still in the cluster?")
            target = ref.get("file", {}).get("name") or name
            target = target if target.startswith("/") else base + target
            files.append((target, name, base64.b64decode(item["data"]), ref.get("file", {})))
        directory = await trio.to_thread.run_sync(self.node.task_files, task["id"])
        out = []

        def write() -> None:
            for i, (target, name, data, how) in enumerate(files):
                path = directory / f"{i}-{name}"
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                try:
                    os.write(fd, data)
                    os.fchown(fd, int(how.get("uid", "0") or 0), int(how.get("gid", "0") or 0))
                    os.fchmod(fd, int(how.get("mode", 0o444)))
                finally:
                    os.close(fd)
                out.append((str(path), target))

        await trio.to_thread.run_sync(write)
        self._files[task["id"]] = out

    async def start(self, container_id: str) -> None:
        await self.node.start(self.node.get(container_id))

    async def wait(self, container_id: str, on_health) -> int:
        node = self.node
        seen = None
        while True:
            try:
                rec = node.get(container_id)
            except NotFound:
                return 137
            healthy = _healthy(rec)
            if healthy is not None and healthy != seen:
                seen = healthy
                on_health(healthy)
            if not _running(rec):
                return _exit_code(rec)
            await node.changed.wait()

    async def stop(self, container_id: str, timeout: float | None) -> None:
        try:
            await self.node.stop(self.node.get(container_id), timeout)
        except NotFound:
            pass
        except OrchError as err:
            print(f"worker: stopping {container_id[:12]}: {err}", file=sys.stderr, flush=True)

    async def remove(self, container_id: str) -> None:
        task_id = self._task_of.pop(container_id, "")
        try:
            rec = self.node.get(container_id)
            task_id = task_id or _labels(rec).get(TASK_ID, "")
            await self.node.remove(rec, force=True)
        except NotFound:
            pass
        finally:
            if task_id:
                await trio.to_thread.run_sync(self.node.remove_task_files, task_id)

    async def logs(self, container_id: str, *, follow: bool, tail: int | None, since: float | None):
        try:
            rec = self.node.get(container_id)
        except NotFound:
            return
        async for line in self.node.log_lines(rec, follow=follow, tail=tail, since=since):
            yield line

    def _by_task(self, task_id: str):
        for rec in self.node.records.values():
            if _labels(rec).get(TASK_ID) == task_id:
                return rec
        return None


# -- the only code that knows a container record's shape --------------------------------------

def _id(rec) -> str:
    return rec["Id"]


def _labels(rec) -> dict:
    return rec["Config"].get("Labels") or {}


def _running(rec) -> bool:
    return rec["State"]["Status"] in ("running", "paused", "restarting")


def _exit_code(rec) -> int:
    return int(rec["State"].get("ExitCode") or 0)


def _healthy(rec) -> bool | None:
    health = rec["State"].get("Health")
    if not isinstance(health, dict) or health.get("Status") not in ("healthy", "unhealthy"):
        return None
    return health["Status"] == "healthy"


def _observed(task_id: str, rec) -> Observed:
    running = rec["State"]["Status"] in ("running", "paused")
    return Observed(task_id, _id(rec), running, None if running else _exit_code(rec), _healthy(rec))
