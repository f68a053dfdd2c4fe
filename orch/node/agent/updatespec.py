"""`docker update`'s rules, pure: what POST /containers/{id}/update changes in a container's
record and limits.

The body is docker's UpdateConfig (Engine API 1.41): Resources plus RestartPolicy, every field
present, zero meaning "leave as it is" (the docker CLI sends the whole struct). orch changes
what its containers have: Memory, MemorySwap, NanoCpus, PidsLimit and RestartPolicy; any
other field given a value is refused in one line naming it, rather than silently ignored.

Docker's rules kept (moby container/container_unix.go UpdateContainer, daemon/update.go):
- a new memory limit above a memory+swap limit already set, without a new one, is refused;
- memory+swap may not be below memory; -1 is unlimited swap;
- PidsLimit 0 or -1 is unlimited; absent is unchanged;
- NanoCpus within 0.01 and the node's CPUs (the caller checks the CPUs);
- a restart policy cannot be set on a container removed when it exits (--rm), and a retry
  count goes only with on-failure.
"""

from __future__ import annotations

from orch.errors import Conflict, InvalidArgument

SUPPORTED = {"Memory", "MemorySwap", "NanoCpus", "PidsLimit", "RestartPolicy"}
# Docker's other UpdateConfig fields, by the flag a user typed.
FLAGS = {
    "CpuShares": "--cpu-shares", "CpuPeriod": "--cpu-period", "CpuQuota": "--cpu-quota", "CpuRealtimePeriod": "--cpu-rt-period",
    "CpuRealtimeRuntime": "--cpu-rt-runtime", "CpusetCpus": "--cpuset-cpus", "CpusetMems": "--cpuset-mems",
    "MemoryReservation": "--memory-reservation", "KernelMemory": "--kernel-memory", "KernelMemoryTCP": "KernelMemoryTCP",
    "BlkioWeight": "--blkio-weight", "MemorySwappiness": "MemorySwappiness", "OomKillDisable": "OomKillDisable",
    "CpuCount": "CpuCount", "CpuPercent": "CpuPercent", "IOMaximumIOps": "IOMaximumIOps",
    "IOMaximumBandwidth": "IOMaximumBandwidth", "CgroupParent": "CgroupParent", "Devices": "--device",
    "DeviceCgroupRules": "--device-cgroup-rule", "DeviceRequests": "--gpus", "Ulimits": "--ulimit", "Init": "--init",
    "BlkioWeightDevice": "--blkio-weight-device", "BlkioDeviceReadBps": "--device-read-bps",
    "BlkioDeviceWriteBps": "--device-write-bps", "BlkioDeviceReadIOps": "--device-read-iops",
    "BlkioDeviceWriteIOps": "--device-write-iops",
}
POLICIES = ("no", "always", "on-failure", "unless-stopped")


def _given(value) -> bool:
    return value not in (None, 0, "", [], {}, False)


def compute_update(host: dict, resources: dict, body: dict, *, auto_remove: bool, cpus: int) -> tuple[dict, dict]:
    """(HostConfig fields to set, the new runtime Resources as a dict) for `body`.

    `host` is the record's HostConfig, `resources` the container's Resources (config.json:
    memory, memory_swap, cpus, pids), `cpus` the node's CPU count."""
    if not isinstance(body, dict):
        raise InvalidArgument("POST /containers/{id}/update: give docker's UpdateConfig as a JSON object")
    for key, value in body.items():
        if key in SUPPORTED:
            continue
        if key not in FLAGS:
            raise InvalidArgument(f"update: unknown field {key!r}")
        if _given(value):
            raise InvalidArgument(f"update: {FLAGS[key]} is not supported by orch; it updates --cpus, --memory, "
                                  "--memory-swap, --pids-limit and --restart")
    changes: dict = {}
    new = dict(resources)
    memory, swap = body.get("Memory") or 0, body.get("MemorySwap") or 0
    for name, value in (("Memory", memory), ("MemorySwap", swap), ("NanoCpus", body.get("NanoCpus") or 0)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise InvalidArgument(f"update: {name} must be a whole number, not {value!r}")
    if memory < 0:
        raise InvalidArgument("update: a memory limit cannot be negative (--memory)")
    if memory and memory < 6 * 1024 * 1024:
        raise InvalidArgument("minimum memory limit allowed is 6MB (--memory)")
    old_total = resources.get("memory_swap")  # None: as much as memory (orch's default), -1: unlimited
    if memory:
        if not swap and old_total not in (None, -1) and memory > old_total:
            raise Conflict("Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the "
                           "same time")
        new["memory"] = memory
        changes["Memory"] = memory
    if swap:
        if swap < -1:
            raise InvalidArgument("update: --memory-swap must be -1 (unlimited) or a size")
        limit = new.get("memory")
        if not limit:
            raise InvalidArgument("you should always set the memory limit when using the memoryswap limit, see usage (--memory)")
        if swap != -1 and swap < limit:
            raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage (--memory-swap)")
        new["memory_swap"] = swap
        changes["MemorySwap"] = swap
    nano = body.get("NanoCpus") or 0
    if nano:
        if not 10_000_000 <= nano <= cpus * 1_000_000_000:
            raise InvalidArgument(f"range of CPUs is from 0.01 to {cpus}.00, as there are only {cpus} CPUs available (--cpus)")
        new["cpus"] = nano / 1e9
        changes["NanoCpus"] = nano
    if "PidsLimit" in body and body["PidsLimit"] is not None:
        pids = body["PidsLimit"]
        if not isinstance(pids, int) or isinstance(pids, bool):
            raise InvalidArgument(f"update: PidsLimit must be a whole number, not {pids!r}")
        new["pids"] = pids if pids > 0 else None
        changes["PidsLimit"] = pids if pids > 0 else None
    policy = body.get("RestartPolicy") or {}
    if policy.get("Name"):
        name, count = policy["Name"], policy.get("MaximumRetryCount") or 0
        if name not in POLICIES:
            raise InvalidArgument(f"invalid restart policy {name!r}: use no, always, unless-stopped or on-failure[:N]")
        if count and name != "on-failure":
            raise InvalidArgument(f"maximum retry count cannot be used with restart policy '{name}'")
        if count < 0:
            raise InvalidArgument("maximum retry count cannot be negative")
        if auto_remove and name != "no":
            raise Conflict("Restart policy cannot be updated because AutoRemove is enabled for the container")
        changes["RestartPolicy"] = {"Name": name, "MaximumRetryCount": count}
    return changes, new
