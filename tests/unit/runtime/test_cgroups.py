"""cgroups.py against temporary directories that imitate v1, hybrid and v2 mounts."""

import pytest

from orch.errors import SystemFailure
from orch.node.runtime.cgroups import V1_DEVICE_RULES, Cgroups, compute_limits, node_cgroup_parent
from orch.node.runtime.config import Resources
from orch.node.runtime.mount import CgroupView, Mount

MB = 1 << 20


def fake_v1(root, *, unified=False, memsw=True, controllers=("memory", "cpu", "cpuacct", "pids", "freezer", "devices")):
    for name in controllers:
        (root / name).mkdir()
    if memsw:
        (root / "memory" / "memory.memsw.limit_in_bytes").write_text("9223372036854771712\n")
    if unified:
        (root / "unified").mkdir()
        (root / "unified" / "cgroup.controllers").write_text("hugetlb\n")
    return Cgroups(root)


def fake_v2(root):
    (root / "cgroup.controllers").write_text("cpuset cpu io memory hugetlb pids\n")
    return Cgroups(root)


@pytest.mark.parametrize(
    "resources, version, writes",
    [
        (Resources(), "v1", []),
        (Resources(memory=20 * MB), "v1", [("memory", "memory.limit_in_bytes", "20971520"),
                                           ("memory", "memory.memsw.limit_in_bytes", "20971520")]),
        (Resources(memory=20 * MB, memory_swap=-1), "v1", [("memory", "memory.limit_in_bytes", "20971520"),
                                                           ("memory", "memory.memsw.limit_in_bytes", "-1")]),
        (Resources(cpus=1.5, pids=64), "v1", [("cpu", "cpu.cfs_period_us", "100000"), ("cpu", "cpu.cfs_quota_us", "150000"),
                                              ("pids", "pids.max", "64")]),
        (Resources(memory=20 * MB), "v2", [("memory", "memory.max", "20971520"), ("memory", "memory.swap.max", "0")]),
        (Resources(memory=20 * MB, memory_swap=30 * MB), "v2", [("memory", "memory.max", "20971520"),
                                                                ("memory", "memory.swap.max", "10485760")]),
        (Resources(memory=MB, memory_swap=-1), "v2", [("memory", "memory.max", "1048576"), ("memory", "memory.swap.max", "max")]),
        (Resources(cpus=0.25, pids=5), "v2", [("cpu", "cpu.max", "25000 100000"), ("pids", "pids.max", "5")]),
        (Resources(pids=-1), "v1", []),  # docker: 0 or -1 is no limit
        (Resources(pids=-1), "v2", []),
    ],
)
def test_compute_limits(resources, version, writes):
    assert compute_limits(resources, version) == writes


def test_modes(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    assert fake_v1(tmp_path / "a").mode == "v1"
    assert fake_v1(tmp_path / "b", unified=True).mode == "hybrid"
    assert fake_v2(tmp_path / "c").mode == "v2"


def test_v1_create_writes_limits_and_device_rules(tmp_path):
    cg = fake_v1(tmp_path, unified=True)
    cg.create("orch/c1", Resources(memory=20 * MB, cpus=0.5, pids=10))
    assert [d.relative_to(tmp_path).as_posix() for d in cg.dirs("orch/c1")] == [
        "cpu/orch/c1", "cpuacct/orch/c1", "devices/orch/c1", "freezer/orch/c1", "memory/orch/c1", "pids/orch/c1"]  # not unified/: nothing of ours lives there
    assert all(d.is_dir() for d in cg.dirs("orch/c1"))
    read = lambda p: (tmp_path / p).read_text()  # noqa: E731
    assert read("memory/orch/c1/memory.limit_in_bytes") == "20971520"
    assert read("memory/orch/c1/memory.memsw.limit_in_bytes") == "20971520"
    assert read("cpu/orch/c1/cpu.cfs_quota_us") == "50000"
    assert read("pids/orch/c1/pids.max") == "10"
    # docker's device rules are on the parent, which each new group copies (kernel v1).
    assert read("devices/orch/devices.deny") == "a"
    assert not (tmp_path / "devices/orch/c1/devices.deny").exists()


def test_v1_device_rules_fall_back_to_each_group_when_the_parent_refuses(tmp_path):
    cg = fake_v1(tmp_path)
    (tmp_path / "devices/orch/devices.deny").mkdir(parents=True)  # a write there fails, as EINVAL would
    cg.create("orch/c1", Resources())
    cg.create("orch/c2", Resources())
    assert (tmp_path / "devices/orch/c1/devices.deny").read_text() == "a"
    assert (tmp_path / "devices/orch/c2/devices.deny").read_text() == "a"


def test_v1_device_rules_already_on_the_parent_are_not_written_again(tmp_path):
    cg = fake_v1(tmp_path)
    parent = tmp_path / "devices/orch"
    parent.mkdir(parents=True)
    allowed = [rule for name, rule in V1_DEVICE_RULES if name == "devices.allow"]
    (parent / "devices.list").write_text("\n".join(reversed(allowed)) + "\n")
    cg.create("orch/c1", Resources())
    assert not (parent / "devices.deny").exists()
    assert not (tmp_path / "devices/orch/c1/devices.deny").exists()


def test_v1_without_swap_accounting_sets_memory_only(tmp_path):
    cg = fake_v1(tmp_path, memsw=False)
    cg.create("orch/c1", Resources(memory=20 * MB))
    assert (tmp_path / "memory/orch/c1/memory.limit_in_bytes").exists()
    assert not (tmp_path / "memory/orch/c1/memory.memsw.limit_in_bytes").exists()


def test_v1_limit_without_its_controller_is_an_error(tmp_path):
    cg = fake_v1(tmp_path, controllers=("memory",))
    with pytest.raises(SystemFailure, match="the pids controller is not mounted"):
        cg.create("orch/c1", Resources(pids=3))


def test_v2_enables_controllers_down_the_tree(tmp_path):
    cg = fake_v2(tmp_path)
    cg.create("orch/c1", Resources(memory=MB, cpus=2, pids=7))
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (tmp_path / "orch/cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (tmp_path / "orch/c1/memory.max").read_text() == "1048576"
    assert (tmp_path / "orch/c1/cpu.max").read_text() == "200000 100000"
    assert (tmp_path / "orch/c1/pids.max").read_text() == "7"
    assert cg.dirs("orch/c1") == [tmp_path / "orch/c1"]


def test_add_and_pids(tmp_path):
    cg = fake_v1(tmp_path, unified=True)
    cg.create("orch/c1", Resources())
    cg.add("orch/c1", 4242)
    assert {(d / "cgroup.procs").read_text() for d in cg.dirs("orch/c1")} == {"4242"}
    cg.join("orch/c1")  # the calling thread: "0" into v1's per-thread file
    assert {(d / "tasks").read_text() for d in cg.dirs("orch/c1")} == {"0"}
    (tmp_path / "pids/orch/c1/cgroup.procs").write_text("1\n2\n3\n")
    assert cg.pids("orch/c1") == [1, 2, 3]


@pytest.mark.parametrize(
    "version, text, killed",
    [
        ("v1", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", False),
        ("v1", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", True),
        ("v1", None, False),
        ("v2", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 0\n", True),
        ("v2", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n", False),
    ],
)
def test_oom_killed(tmp_path, version, text, killed):
    cg = fake_v1(tmp_path) if version == "v1" else fake_v2(tmp_path)
    cg.create("c", Resources())
    if text is not None:
        name = "memory/c/memory.oom_control" if version == "v1" else "c/memory.events"
        (tmp_path / name).write_text(text)
    assert cg.oom_killed("c") is killed


def test_v1_freeze_and_thaw_write_the_freezer_state(tmp_path):
    cg = fake_v1(tmp_path)
    cg.create("c", Resources())
    cg.freeze("c")
    assert (tmp_path / "freezer/c/freezer.state").read_text() == "FROZEN"
    cg.thaw("c")
    assert (tmp_path / "freezer/c/freezer.state").read_text() == "THAWED"


def test_v2_freeze_waits_for_the_frozen_event(tmp_path):
    cg = fake_v2(tmp_path)
    cg.create("c", Resources())
    (tmp_path / "c/cgroup.events").write_text("populated 1\nfrozen 1\n")
    cg.freeze("c")
    assert (tmp_path / "c/cgroup.freeze").read_text() == "1"


def test_remove_empty_groups_and_report_a_busy_one(tmp_path):
    cg = fake_v1(tmp_path, controllers=("memory", "pids"))
    for d in cg.dirs("orch/c1"):
        d.mkdir(parents=True)
    cg.remove("orch/c1")
    assert not any(d.exists() for d in cg.dirs("orch/c1"))
    cg.remove("orch/c1")  # removing again is fine
    (tmp_path / "memory/orch/c2").mkdir(parents=True)
    (tmp_path / "memory/orch/c2/cgroup.procs").write_text("77\n")
    with pytest.raises(SystemFailure, match=r"cgroup: remove .*/memory/orch/c2: .*processes still in it: \['77'\]"):
        cg.remove("orch/c2", timeout=0.01)


def test_a_container_joins_every_v1_hierarchy_not_only_the_limited_ones(tmp_path):
    # blkio, cpuset and a named hierarchy set no limit of orch's; a container that did not
    # join them would sit at their root inside its cgroup namespace, where release_agent is.
    cg = fake_v1(tmp_path, unified=True, controllers=("memory", "cpu", "pids", "freezer", "devices", "blkio", "cpuset", "systemd"))
    for name in ("cpuset.cpus", "cpuset.mems"):
        (tmp_path / "cpuset" / name).write_text("0-1\n")
    cg.create("orch/c1", Resources())
    joined = sorted(d.relative_to(tmp_path).as_posix() for d in cg.dirs("orch/c1"))
    assert joined == [f"{h}/orch/c1" for h in ("blkio", "cpu", "cpuset", "devices", "freezer", "memory", "pids", "systemd")]
    assert all((tmp_path / d).is_dir() for d in joined)
    # A new cpuset group has no CPUs: the parent gets the root's and hands copies down.
    assert (tmp_path / "cpuset/orch/cpuset.cpus").read_text() == "0-1"
    assert (tmp_path / "cpuset/orch/cpuset.mems").read_text() == "0-1"
    assert (tmp_path / "cpuset/orch/cgroup.clone_children").read_text() == "1"


def test_the_view_mounts_each_joined_hierarchy_and_the_hosts_links(tmp_path):
    cg_root = tmp_path / "cg"
    cg_root.mkdir()
    (cg_root / "cpu,cpuacct").mkdir()
    (cg_root / "cpu").symlink_to("cpu,cpuacct")
    (cg_root / "elsewhere").symlink_to("/nowhere")
    cg = fake_v1(cg_root, unified=True, controllers=("memory", "systemd"))
    assert cg.view() == CgroupView(
        (Mount("tmpfs", "tmpfs", "/sys/fs/cgroup", ("mode=755",)),
         Mount("cgroup", "cgroup", "/sys/fs/cgroup/cpu,cpuacct", ("cpu", "cpuacct")),
         Mount("cgroup", "cgroup", "/sys/fs/cgroup/memory", ("memory",)),
         Mount("cgroup", "cgroup", "/sys/fs/cgroup/systemd", ("systemd",))),
        (("/sys/fs/cgroup/cpu", "cpu,cpuacct"),))
    assert fake_v2(tmp_path).view() == CgroupView((Mount("cgroup2", "cgroup", "/sys/fs/cgroup"),))


def test_the_real_mount_options_come_from_mountinfo():
    cg = Cgroups()
    if cg.version == "v2":
        pytest.skip("a v2 host has one hierarchy")
    options = {m.target: m.options for m in cg.view().mounts[1:]}
    expected = {}
    for line in open("/proc/self/mountinfo"):
        fields, after = line.split(" - ")[0].split(), line.split(" - ")[1].split()
        if after[0] == "cgroup" and fields[4].startswith("/sys/fs/cgroup/"):
            expected[fields[4]] = tuple(o for o in after[2].split(",") if o not in ("rw", "ro"))
    assert options == expected


def test_each_node_has_its_own_cgroup_parent(tmp_path):
    assert node_cgroup_parent("/var/lib/orch") == "orch"
    a, b = node_cgroup_parent(tmp_path / "a"), node_cgroup_parent(tmp_path / "b")
    assert a != b and a.startswith("orch-") and len(a) == len("orch-") + 8
    assert node_cgroup_parent(tmp_path / "a") == a


def test_the_supervisor_settles_in_its_nodes_leaf_of_a_hybrid_hosts_v2_hierarchy(tmp_path):
    import os

    cg = fake_v1(tmp_path, unified=True)
    cg.settle("orch-12345678/supervisor")
    assert (tmp_path / "unified/orch-12345678/supervisor/cgroup.procs").read_text() == str(os.getpid())
    plain = tmp_path / "plain"
    plain.mkdir()
    fake_v1(plain).settle("orch/supervisor")  # v1 only: no v2 hierarchy to settle in
    assert not (plain / "unified").exists()
