"""Capabilities, a read-only root, sysctls and rlimits on real containers (spawn.start, as the
supervisor calls it), each checked from inside the container and, where it matters, on the host."""

import os
import re
import resource
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from orch.node.runtime import spawn
from orch.node.runtime.config import CAPABILITY_NUMBERS
from orch.node.runtime.init import StartError
from orch.node.runtime.kernel import capget_effective
from orch.node.runtime.mount import Mount
from orch.node.runtime.security import capabilities_in_mask, compute_cap_add_drop, compute_capabilities

pytestmark = pytest.mark.privileged


def sh(containers, script: str, **kwargs) -> tuple[int, str]:
    """Run `sh -c script` in a new container; (exit code, stdout and stderr)."""
    config = containers.config("sh", "-c", script, **kwargs)
    r, w = os.pipe()
    try:
        pid = containers.track(spawn.start(config, spawn.Stdio(stdout=w, stderr=w)))
    finally:
        os.close(w)
    return containers.wait(pid), read_all(r)


def read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()

NODE_CAPS = capabilities_in_mask(0x1FFFFFFFFFF & ~(1 << CAPABILITY_NUMBERS["CAP_SYS_RESOURCE"]), 40)


def caps(add=(), drop=()) -> tuple[str, ...]:
    return compute_capabilities(*compute_cap_add_drop(add, drop), available=NODE_CAPS)


def status(out: str, field: str) -> int:
    return int(next(line.split()[1] for line in out.splitlines() if line.startswith(field + ":")), 16)


def test_cap_drop_net_raw_makes_ping_fail(containers):
    # The container's own network namespace has lo up, so ping of 127.0.0.1 needs only a raw socket.
    assert sh(containers, "ping -c 1 -W 1 127.0.0.1 >/dev/null && echo ok") == (0, "ok\n")
    code, out = sh(containers, "grep CapEff /proc/self/status; ping -c 1 -W 1 127.0.0.1 2>&1; echo rc=$?",
                   capabilities=caps(drop=["NET_RAW"]))
    assert not status(out, "CapEff") & (1 << CAPABILITY_NUMBERS["CAP_NET_RAW"])
    assert "permission denied" in out and out.endswith("rc=1\n")


def test_cap_add_net_admin_lets_ip_link_add_work_in_the_containers_netns(containers):
    link = "s" + uuid.uuid4().hex[:8]
    script = f"grep CapEff /proc/self/status; ip link add {link} type veth peer name {link}p 2>&1 && ip -o link show {link} | cut -d: -f2"
    code, out = sh(containers, script)
    assert "Operation not permitted" in out
    code, out = sh(containers, script, capabilities=caps(add=["NET_ADMIN"]))
    assert code == 0 and out.splitlines()[-1].strip().startswith(link)
    assert status(out, "CapEff") == 0xA80425FB | (1 << CAPABILITY_NUMBERS["CAP_NET_ADMIN"])
    # The link lived in the container's network namespace, gone with it, never on the host.
    assert not Path(f"/sys/class/net/{link}").exists()


def test_cap_drop_all_and_add_one(containers):
    code, out = sh(containers, "grep -E '^Cap(Eff|Bnd)' /proc/self/status; chown 1000 /tmp 2>&1 && echo chowned",
                   capabilities=caps(add=["KILL"], drop=["ALL"]))
    assert (status(out, "CapEff"), status(out, "CapBnd")) == (1 << 5, 1 << 5)
    assert "Operation not permitted" in out and "chowned" not in out


def test_exec_inherits_the_containers_capabilities_and_rlimits(containers):
    process_caps = caps(add=["NET_ADMIN"], drop=["NET_RAW"])
    config = containers.config("sleep", "100", capabilities=process_caps, rlimits=(("nofile", 512, 1024),))
    pid1 = containers.track(spawn.start(config, spawn.Stdio()))
    r, w = os.pipe()
    try:
        pid = spawn.exec_in(pid1, config, replace(config.process, args=("sh", "-c", "grep CapEff /proc/self/status; ulimit -n; ulimit -Hn")),
                            spawn.Stdio(stdout=w, stderr=w))
    finally:
        os.close(w)
    out = read_all(r)
    os.waitpid(pid, 0)
    expected = (0xA80425FB & ~(1 << 13)) | (1 << 12)
    assert status(out, "CapEff") == expected and out.splitlines()[1:] == ["512", "1024"]


def test_read_only_root_keeps_dev_tmpfs_and_volumes_writable(containers, tmp_path):
    volume = tmp_path / "volume"
    volume.mkdir()
    script = ("touch /x 2>&1; touch /tmp/ok && echo tmpfs; touch /data/ok && echo volume; touch /dev/shm/ok && echo shm; "
              "echo > /dev/null && echo null; grep ' / ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1")
    mounts = [Mount("tmpfs", "tmpfs", "/tmp", ("nosuid", "nodev")), Mount("bind", str(volume), "/data", ())]
    code, out = sh(containers, script, readonly_rootfs=True, mounts=mounts)
    assert out == "touch: /x: Read-only file system\ntmpfs\nvolume\nshm\nnull\nro\n"
    assert (volume / "ok").exists()
    # The upper dir got nothing: the root really was read-only.
    upper = Path(containers.configs[-1].rootfs).parent / "upper"
    assert not (upper / "x").exists()


def test_net_sysctls_land_in_the_containers_namespace_not_on_the_hosts(containers):
    # Each value differs from the host's, so a write that reached the host would show there.
    host = {key: Path("/proc/sys/" + key.replace(".", "/")).read_text().strip()
            for key in ("net.ipv4.ip_forward", "net.core.somaxconn", "kernel.shmmni")}
    wanted = {"net.ipv4.ip_forward": "0" if host["net.ipv4.ip_forward"] == "1" else "1",
              "net.core.somaxconn": "778" if host["net.core.somaxconn"] == "777" else "777",
              "kernel.shmmni": "1235" if host["kernel.shmmni"] == "1234" else "1234"}
    code, out = sh(containers, "cat /proc/sys/net/ipv4/ip_forward /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmni",
                   sysctls=wanted)
    assert (code, out.split()) == (0, list(wanted.values()))
    assert {key: Path("/proc/sys/" + key.replace(".", "/")).read_text().strip() for key in host} == host
    # docker's own example, ip_forward=1, is seen inside too.
    assert sh(containers, "cat /proc/sys/net/ipv4/ip_forward", sysctls={"net.ipv4.ip_forward": "1"}) == (0, "1\n")


def test_ulimits_are_seen_by_ulimit_and_proc_limits(containers):
    code, out = sh(containers, "ulimit -n; ulimit -Hn; grep -E 'Max (open files|processes|core)' /proc/self/limits",
                   rlimits=(("nofile", 1024, 2048), ("nproc", 500, 600), ("core", 0, -1)))
    lines = out.splitlines()
    assert (code, lines[:2]) == (0, ["1024", "2048"])
    # /proc/self/limits: the name, then soft and hard in columns two or more spaces apart.
    limits = {m.group(1): (m.group(2), m.group(3)) for m in map(re.compile(r"(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)").match, lines[2:])}
    assert limits == {"Max open files": ("1024", "2048"), "Max processes": ("500", "600"), "Max core file size": ("0", "unlimited")}


def test_a_hard_limit_above_the_nodes_fails_in_one_line_and_leaves_nothing(containers, cgroups):
    node_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if node_hard == resource.RLIM_INFINITY or capget_effective() & (1 << CAPABILITY_NUMBERS["CAP_SYS_RESOURCE"]):
        pytest.skip("this node may raise its nofile hard limit (CAP_SYS_RESOURCE or no limit): the refusal cannot be shown")
    config = containers.config("true", rlimits=(("nofile", 1024, node_hard + 1),))
    with pytest.raises(StartError) as info:
        spawn.start(config, spawn.Stdio())
    message = str(info.value)
    assert "\n" not in message and f"setrlimit nofile soft=1024 hard={node_hard + 1}" in message
    assert f"use a hard limit of at most {node_hard}" in message
    assert not any(d.exists() for d in cgroups.dirs(config.cgroup_path))
