"""Making a container: the image, its rootfs mounts, the process and the record.

Runs in a worker thread of the agent (it unpacks layers and writes files). The steps follow
`docker create`: resolve the image, combine its config with the flags (runtime.config.compute_process),
ask the layer store for the rootfs mounts (an overlay keyed by the container id), and write
config.json, then state.json LAST: a crash before the record exists leaves a directory without
state.json, which the agent discards when it starts (state.ContainerStore.load_all).
"""

import os
from dataclasses import replace

from orch.atomic import write_json_atomic
from orch.errors import InvalidArgument
from orch.node.agent.records import ContainerRecord, LogOptions, Private
from orch.node.runtime.containerlog import rfc3339_nano

ZERO_TIME = "0001-01-01T00:00:00Z"
NAMESPACES = ("pid", "mount", "uts", "ipc", "cgroup", "net")


def build_container(node, cid: str, name: str, req) -> dict:
    from orch.node.agent import wiring
    from orch.node.runtime.config import ContainerConfig, Resources, compute_process

    # Bad privilege or limit fields fail before anything is made (the namespace checks,
    # which need the network plan, come again below).
    shared = compute_shared_namespaces(req)
    check_limits(req)
    _security_plan(req, tuple(ns for ns in NAMESPACES if ns not in shared), "own")
    if req.memory and req.memory_swap not in (None, 0, -1) and req.memory_swap < req.memory:
        raise InvalidArgument(f"the memory+swap limit ({req.memory_swap} bytes) is below the memory limit ({req.memory} bytes): "
                              "give --memory-swap at least --memory, or -1 for unlimited swap")
    image = node.images.resolve(req.image)
    hostname = req.hostname or cid[:12]
    mounts = node.images.prepare_rootfs(image, cid)
    d = node.store.path(cid)
    d.mkdir(mode=0o700, parents=True)
    (d / "rootfs").mkdir()
    # Networks and volumes (wiring.py): the namespace to join, the mounts, the record's fields.
    wired = wiring.prepare_create(node, cid, req, image, mounts)
    namespaces = tuple(ns for ns in NAMESPACES if ns not in wired.drop_namespaces and ns not in shared)
    if wired.hostname:
        hostname = wired.hostname  # --network container:X: X's hostname, as docker gives it
    if wired.net["mode"] == "host" and not req.hostname:
        hostname = os.uname().nodename
        namespaces = tuple(ns for ns in namespaces if ns != "uts")  # docker shares uts with host networking
    process = compute_process(
        image.config, entrypoint=req.entrypoint, command=req.cmd or None, env=list(req.env), workdir=req.workdir,
        user=req.user, tty=req.tty, hostname=hostname,
    )
    inner = image.config.get("config") or {}
    from orch.node.runtime.cgroups import node_cgroup_parent

    cgroup = f"{node_cgroup_parent(node.root)}/{cid}"  # each node its own parent (cgroups.py)
    try:
        secured = _security_plan(req, namespaces, wired.netns_path)
    except BaseException:
        wiring.undo_volumes(node, wired)
        raise
    process = replace(process, capabilities=secured.capabilities, rlimits=secured.rlimits,
                      no_new_privileges=secured.no_new_privileges)
    from orch.node.agent.securityspec import compute_readonly_file_mounts

    config = ContainerConfig(
        id=cid, hostname=hostname, rootfs=str(d / "rootfs"), rootfs_mounts=wired.rootfs_mounts,
        mounts=compute_readonly_file_mounts(wired.mounts, secured.readonly_rootfs), process=process,
        namespaces=namespaces, netns_path=wired.netns_path, cgroup_path=cgroup,
        resources=Resources(memory=req.memory or None, memory_swap=req.memory_swap, cpus=(req.nano_cpus / 1e9) if req.nano_cpus else None, pids=req.pids_limit or None),
        readonly_rootfs=secured.readonly_rootfs, init=req.init, sysctls=secured.sysctls, labels=dict(req.labels),
        seccomp=secured.seccomp,
    )
    # config.json without its own fsync: state.json, written last and durably, commits the
    # directory (and with ext4's ordered data mode the config's blocks before it).
    write_json_atomic(d / "config.json", config.to_json(), durable=False)
    labels = dict(inner.get("Labels") or {})
    labels.update(req.labels)
    from orch.node.agent.supervision import supervised_config

    supervised = supervised_config(req, inner)
    docker = {
        "Id": cid,
        "Created": rfc3339_nano(),
        "Path": process.args[0],
        "Args": list(process.args[1:]),
        "State": {"Status": "created", "Running": False, "Paused": False, "Restarting": False, "OOMKilled": False, "Dead": False,
                  "Pid": 0, "ExitCode": 0, "Error": "", "StartedAt": ZERO_TIME, "FinishedAt": ZERO_TIME},
        "Image": image.id,
        "Name": "/" + name,
        "RestartCount": 0,
        "Driver": "overlay",
        "Platform": "linux",
        "LogPath": str(d / "container.log"),
        "Config": {
            "Hostname": hostname, "User": process.user, "Env": list(process.env), "Cmd": list(req.cmd) if req.cmd else (None if req.entrypoint is not None else inner.get("Cmd")),
            "Entrypoint": req.entrypoint if req.entrypoint is not None else inner.get("Entrypoint"), "Image": req.image,
            "WorkingDir": process.cwd if (req.workdir or inner.get("WorkingDir")) else "", "Tty": req.tty, "OpenStdin": req.open_stdin,
            "AttachStdin": req.open_stdin, "StdinOnce": req.open_stdin, "Labels": labels, "StopSignal": inner.get("StopSignal") or "SIGTERM",
            **supervised["Config"],
        },
        "HostConfig": {
            "Memory": req.memory or 0, "MemorySwap": req.memory_swap or 0, "NanoCpus": req.nano_cpus or 0, "PidsLimit": req.pids_limit or None,
            "AutoRemove": req.auto_remove, "Init": req.init, "PidMode": req.pid_mode or "",
            "IpcMode": "host" if "ipc" in shared else req.ipc_mode or "private", "UsernsMode": req.userns_mode or "",
            "LogConfig": {"Type": "json-file", "Config": {"max-size": str(req.log_max_size), "max-file": str(req.log_max_file)}},
            **supervised["HostConfig"],
            **secured.host_config,
        },
    }
    host_config, plans = wiring.record_fields(wired, req)
    docker["HostConfig"].update(host_config)
    record = ContainerRecord(docker, Private(cgroup=cgroup, log=LogOptions(max_size=req.log_max_size, max_file=req.log_max_file),
                                             **plans))
    # The network before the record: a taken port or a bad address fails the create, and the
    # caller discards what was made (a crash here leaves a namespace the next agent releases).
    try:
        wiring.setup_network(node, record, wired.joined)
    except BaseException:
        wiring.undo_volumes(node, wired)
        raise
    # Durable, except for `--rm` containers: after a power loss those would be removed anyway
    # (the agent discards what it cannot find, and collects snapshots without a record), so
    # their fsync would only slow down `run --rm`.
    node.store.save(record, durable=not req.auto_remove)
    return record


def compute_shared_namespaces(req) -> frozenset[str]:
    """The namespaces a container shares with the host: --pid host and --ipc host (docker's
    PidMode and IpcMode). What orch does not do is refused in one line: joining another
    container's pid or ipc namespace, an ipc namespace without /dev/shm, user namespaces."""
    shared = set()
    if req.pid_mode not in (None, "", "host"):
        raise InvalidArgument(f"--pid {req.pid_mode}: orch shares the host's process namespace (--pid host) but does not join "
                              "another container's; give --pid host or leave it out")
    if req.pid_mode == "host":
        shared.add("pid")
    if req.ipc_mode not in (None, "", "private", "shareable", "host"):
        raise InvalidArgument(f"--ipc {req.ipc_mode}: orch gives a container its own IPC namespace (private, shareable) or the "
                              "host's (host); it does not join another container's nor run one without /dev/shm")
    if req.ipc_mode == "host":
        shared.add("ipc")
    if req.userns_mode not in (None, "", "host"):
        raise InvalidArgument(f"--userns {req.userns_mode}: orch runs containers in the host's user namespace (--userns host, "
                              "the default); it has no user namespace remapping")
    return frozenset(shared)


def check_limits(req) -> None:
    """What only the node can check: CPUs it has, a user id within the kernel's range."""
    if req.nano_cpus:
        cpus = len(os.sched_getaffinity(0))
        if not 10_000_000 <= req.nano_cpus <= cpus * 1_000_000_000:
            # docker's words (daemon/daemon_unix.go)
            raise InvalidArgument(f"range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available (--cpus)")
    if req.user:
        from orch.node.runtime.users import check_user

        check_user(req.user)


def _security_plan(req, namespaces, netns_path):
    """Capabilities, limits, sysctls and the read-only root (agent/securityspec.py), with
    what only the node knows: the capabilities its own processes hold."""
    from orch.node.agent.securityspec import compute_security_plan

    return compute_security_plan(
        cap_add=req.cap_add, cap_drop=req.cap_drop, read_only=req.read_only, privileged=req.privileged, sysctls=req.sysctls,
        ulimits=[u.model_dump() for u in req.ulimits], security_opt=req.security_opt, available=node_capabilities(), namespaces=namespaces,
        own_netns=bool(netns_path))


_node_capabilities: tuple[str, ...] | None = None


def node_capabilities() -> tuple[str, ...]:
    """The capabilities the node's processes can hand out: known to this kernel, in the agent's
    bounding and permitted sets (the supervisor runs with the same). On this machine every one
    but CAP_SYS_RESOURCE."""
    global _node_capabilities
    if _node_capabilities is None:
        from orch.node.runtime.security import capabilities_in_mask

        with open("/proc/sys/kernel/cap_last_cap") as f:
            last_cap = int(f.read())
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields[key] = value.strip()
        mask = int(fields.get("CapBnd", "0"), 16) & int(fields.get("CapPrm", "0"), 16)
        _node_capabilities = capabilities_in_mask(mask, last_cap)
    return _node_capabilities
