"""Issue 10's attacks on real containers (spawn.start, as the supervisor calls it): the host's
cgroups from a host-network container, seccomp's refusals, and the release_agent route with
CAP_SYS_ADMIN. Each test tries the attack and checks, inside and on the host, that it failed.

Probes busybox cannot make (keyctl, io_uring, perf_event_open, ...) come from a static helper
(tests/integration/probe.c) bind-mounted at /probe.
"""

import os
from pathlib import Path

import pytest

from orch.node.runtime import spawn
from orch.node.runtime.config import DEFAULT_CAPABILITIES
from orch.node.runtime.mount import Mount
from tests.integration.probe import TARGET, parse, probe_binary

pytestmark = pytest.mark.privileged

HOST_NETWORK = ("pid", "mount", "uts", "ipc", "cgroup")


def sh(containers, script: str, **kwargs) -> tuple[int, str]:
    config = containers.config("sh", "-c", script, **kwargs)
    r, w = os.pipe()
    try:
        pid = containers.track(spawn.start(config, spawn.Stdio(stdout=w, stderr=w)))
    finally:
        os.close(w)
    code = containers.wait(pid)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    return code, b"".join(chunks).decode()


def probe(containers, *attempts, **kwargs) -> dict[str, str]:
    mounts = (*kwargs.pop("mounts", ()), Mount("bind", str(probe_binary()), TARGET, ("ro",)))
    code, out = sh(containers, f"{TARGET} {' '.join(attempts)}", mounts=mounts, **kwargs)
    assert code == 0, out
    return parse(out)


def own_group(pid: int, hierarchy: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if hierarchy in controllers.split(",") or "name=" + hierarchy in controllers.split(","):
            return path
    raise AssertionError(f"pid {pid} is in no {hierarchy} group")


def test_a_host_network_container_cannot_move_itself_out_of_its_cgroups(containers, cgroups):
    # Before issue 10 the host's /sys was bound recursively and only its top made read-only:
    # /sys/fs/cgroup/pids/cgroup.procs was the host's root group, writable.
    script = ("for h in pids memory devices freezer; do (echo $$ > /sys/fs/cgroup/$h/cgroup.procs) 2>/dev/null && echo moved-$h; done; "
              "cat /proc/self/cgroup; grep ' /sys' /proc/mounts")
    code, out = sh(containers, script, namespaces=HOST_NETWORK)
    assert "moved-" not in out
    config = containers.configs[-1]
    # Every /sys mount is read-only, the cgroup ones included, and each shows the
    # container's group as "/" (its cgroup namespace).
    sys_mounts = [line.split() for line in out.splitlines() if " /sys" in line]
    assert sys_mounts and all(fields[3].split(",")[0] == "ro" for fields in sys_mounts), sys_mounts
    assert {fields[1] for fields in sys_mounts if fields[2] == "cgroup"} >= {"/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory"}
    assert all(line.endswith(":/") for line in out.splitlines() if line[:1].isdigit() and "::" not in line)


def test_a_host_network_container_cannot_write_host_cgroup_files_nor_freeze_a_sibling(containers, cgroups):
    # The attack names the sibling's own files only (their host paths, which the host's /sys
    # showed before issue 10), so that a regression freezes this test's container and
    # nothing else on the machine.
    sibling = containers.config("sleep", "30")
    sibling_pid = containers.track(spawn.start(sibling, spawn.Stdio()))
    rel = sibling.cgroup_path
    script = (f"(echo FROZEN > /sys/fs/cgroup/freezer/{rel}/freezer.state) 2>/dev/null && echo froze-sibling; "
              f"(echo 7 > /sys/fs/cgroup/pids/{rel}/pids.max) 2>/dev/null && echo wrote-sibling-pids; "
              f"find /sys/fs/cgroup -name '{sibling.id}*' | grep . && echo sees-sibling; "
              "(echo 100 > /sys/fs/cgroup/pids/pids.max) 2>/dev/null && echo wrote-own-pids; "
              "ls /sys/fs/cgroup/*/release_agent 2>/dev/null && echo sees-release-agent; echo done")
    code, out = sh(containers, script, namespaces=HOST_NETWORK)
    assert out.splitlines() == ["done"], out
    assert not cgroups.is_frozen(sibling.cgroup_path)
    assert own_group(sibling_pid, "freezer") == "/" + rel
    assert Path("/sys/fs/cgroup/pids", rel, "pids.max").read_text().strip() == "max"


def test_a_container_is_in_every_v1_hierarchy_of_the_node(containers, cgroups):
    if cgroups.version == "v2":
        pytest.skip("one hierarchy on a v2 host")
    config = containers.config("sleep", "30")
    pid = containers.track(spawn.start(config, spawn.Stdio()))
    hierarchies = [line.split(":")[1] for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if line.split(":")[1]]
    assert hierarchies and all(own_group(pid, h.split(",")[0].removeprefix("name=")) == "/" + config.cgroup_path
                               for h in hierarchies), Path(f"/proc/{pid}/cgroup").read_text()


def test_seccomp_refuses_the_host_keyring_user_namespaces_and_the_rest(containers):
    attempts = ("keyctl", "add_key", "unshare_user", "io_uring_setup", "perf_event_open", "userfaultfd", "personality",
                "personality_linux", "getpid")
    got = probe(containers, *attempts)
    eperm = {a: "errno 1" for a in attempts[:-2]}
    assert got == {**eperm, "personality_linux": "ok", "getpid": "ok"}
    # Unconfined, the same probe reaches the host's keyring and makes user namespaces: the
    # refusals above are seccomp's, not the kernel's.
    free = probe(containers, *attempts, seccomp="unconfined")
    assert free["keyctl"] == "ok" and free["unshare_user"] == "ok" and free["io_uring_setup"] == "ok"


def test_seccomp_also_holds_in_exec(containers):
    config = containers.config("sleep", "30", mounts=(Mount("bind", str(probe_binary()), TARGET, ("ro",)),))
    pid1 = containers.track(spawn.start(config, spawn.Stdio()))
    r, w = os.pipe()
    try:
        from dataclasses import replace

        pid = spawn.exec_in(pid1, config, replace(config.process, args=(TARGET, "keyctl", "unshare_user")), spawn.Stdio(stdout=w, stderr=w))
    finally:
        os.close(w)
    chunks = []
    while chunk := os.read(r, 65536):
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    out = b"".join(chunks).decode()
    assert parse(out) == {"keyctl": "errno 1", "unshare_user": "errno 1"}


def test_with_cap_sys_admin_the_blkio_root_and_its_release_agent_stay_out_of_reach(containers):
    # Before issue 10: no seccomp, and the container never joined blkio, so in its cgroup
    # namespace blkio's root was the host's and a mount showed release_agent (host root code
    # execution when a group empties).
    caps = (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN")
    got = probe(containers, "mount_cgroup=blkio", "mount_cgroup=net_cls", "mount_cgroup=cpuset", capabilities=caps)
    assert got.get("release_agent_visible", "errno 2") != "ok", got
    # net_cls is mounted nowhere on the host: a new hierarchy cannot be made from a
    # non-initial cgroup namespace (EPERM), and seccomp lets mount through with SYS_ADMIN.
    assert got["mount_cgroup=net_cls"] == "errno 1"
    # The joined hierarchies do mount (docker's profile allows mount with SYS_ADMIN), at the
    # container's own group, where there is no release_agent.
    assert got["mount_cgroup=blkio"] == "ok" and got["mount_cgroup=cpuset"] == "ok"


def test_seccomp_unconfined_and_a_custom_profile(containers, tmp_path):
    import json

    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}
    got = probe(containers, "getpid", "keyctl", seccomp=json.dumps(profile))
    assert got == {"getpid": "errno 13", "keyctl": "ok"}
