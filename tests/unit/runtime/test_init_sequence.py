"""The container init's sequence as values: run init.run against RecordingSyscalls."""

from dataclasses import replace

import pytest

from orch.node.runtime import init
from orch.node.runtime.config import ContainerConfig, Process
from orch.node.runtime.init import StartError, find_executable, resolve_in_root, split_mount_options
from orch.node.runtime.kernel import MNT_DETACH, RecordingSyscalls
from orch.node.runtime.mount import CgroupView, Mount

R = "/r/c1/rootfs"
PASSWD = "root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n"
GROUP = "staff:x:50:user\n"
NOSUID_NOEXEC_NODEV = ("MS_NOSUID", "MS_NOEXEC", "MS_NODEV")


def make_config(**changes) -> ContainerConfig:
    process = Process(args=("sh", "-c", "x"), env=("PATH=/bin",), cwd="/", user=changes.pop("user", "user"),
                      terminal=changes.pop("terminal", False))
    fields = dict(
        id="c1", hostname="web", rootfs=R,
        rootfs_mounts=(Mount("overlay", "overlay", "/", ("lowerdir=/l/2:/l/1", "upperdir=/u", "workdir=/w")),),
        mounts=(Mount("bind", "/host/data", "/data", ("ro",)), Mount("tmpfs", "tmpfs", "/run", ("size=1m",))),
        process=process, cgroup_path="orch/c1", sysctls={"net.ipv4.ip_forward": "1"},
        masked_paths=("/proc/kcore", "/sys/firmware", "/proc/nope"), readonly_paths=("/proc/sys",),
    )
    fields.update(changes)
    return ContainerConfig(**fields)


def recording(**extra_files) -> RecordingSyscalls:
    files = {"/host/data": "dir", "/proc/kcore": "file", "/sys/firmware": "dir", "/proc/sys": "dir", "/bin/sh": "file"}
    files.update(extra_files)
    return RecordingSyscalls(files=files, contents={"/etc/passwd": PASSWD, "/etc/group": GROUP})


DEV_SETUP = [
    ("mkdir", R + "/dev", 0o755),
    ("mount", "tmpfs", R + "/dev", "tmpfs", ("MS_NOSUID", "MS_STRICTATIME"), "mode=755,size=65536k"),
    ("mknod", R + "/dev/null", 0o20666, 1, 3),
    ("mknod", R + "/dev/zero", 0o20666, 1, 5),
    ("mknod", R + "/dev/full", 0o20666, 1, 7),
    ("mknod", R + "/dev/random", 0o20666, 1, 8),
    ("mknod", R + "/dev/urandom", 0o20666, 1, 9),
    ("mknod", R + "/dev/tty", 0o20666, 5, 0),
    ("symlink", "/proc/self/fd", R + "/dev/fd"),
    ("symlink", "/proc/self/fd/0", R + "/dev/stdin"),
    ("symlink", "/proc/self/fd/1", R + "/dev/stdout"),
    ("symlink", "/proc/self/fd/2", R + "/dev/stderr"),
    ("symlink", "pts/ptmx", R + "/dev/ptmx"),
    ("mkdir", R + "/dev/pts", 0o755),
    ("mount", "devpts", R + "/dev/pts", "devpts", ("MS_NOSUID", "MS_NOEXEC"), "newinstance,ptmxmode=0666,mode=0620,gid=5"),
    ("mkdir", R + "/dev/shm", 0o755),
    ("mount", "shm", R + "/dev/shm", "tmpfs", NOSUID_NOEXEC_NODEV, "mode=1777,size=65536k"),
    ("mkdir", R + "/dev/mqueue", 0o755),
    ("mount", "mqueue", R + "/dev/mqueue", "mqueue", NOSUID_NOEXEC_NODEV, ""),
]

VIEW = CgroupView((Mount("tmpfs", "tmpfs", "/sys/fs/cgroup", ("mode=755",)), Mount("cgroup", "cgroup", "/sys/fs/cgroup/memory", ("memory",))),
                  (("/sys/fs/cgroup/mem", "memory"),))
PROGRAM = (b"\0" * 8 * 3, 0)

# Docker's default set is capabilities 0,1,3-8,10,13,18,27,29,31; the rest up to 40 is dropped.
DROPPED = (2, 9, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 28, 30, 32, 33, 34, 35, 36, 37, 38, 39, 40)


def test_the_whole_sequence_for_a_non_root_user():
    sys = recording()
    init.run(sys, make_config(), (10, 11, 12), None, 7, 40, cgroup_view=VIEW, seccomp=PROGRAM)
    assert sys.calls == [
        # Nothing propagates back to the host.
        ("mount", "", "/", "", ("MS_SLAVE", "MS_REC"), ""),
        ("mkdir", R, 0o755),
        ("mount_overlay", ("/l/2", "/l/1"), "/u", "/w", R, ()),
        ("mkdir", R + "/proc", 0o755),
        ("mount", "proc", R + "/proc", "proc", NOSUID_NOEXEC_NODEV, ""),
        *DEV_SETUP,
        ("mkdir", R + "/sys", 0o755),
        ("mount", "sysfs", R + "/sys", "sysfs", (*NOSUID_NOEXEC_NODEV, "MS_RDONLY"), ""),
        # The container's own cgroups (its cgroup namespace is their root), each mount
        # read-only, and their tmpfs once its directories and links are in place.
        ("mkdir", R + "/sys/fs/cgroup", 0o755),
        ("mount", "tmpfs", R + "/sys/fs/cgroup", "tmpfs", NOSUID_NOEXEC_NODEV, "mode=755"),
        ("mkdir", R + "/sys/fs/cgroup/memory", 0o755),
        ("mount", "cgroup", R + "/sys/fs/cgroup/memory", "cgroup", (*NOSUID_NOEXEC_NODEV, "MS_RDONLY"), "memory"),
        ("symlink", "memory", R + "/sys/fs/cgroup/mem"),
        ("mount", R + "/sys/fs/cgroup", R + "/sys/fs/cgroup", "tmpfs", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY", *NOSUID_NOEXEC_NODEV), ""),
        # User mounts, parents first; a read-only bind is a bind then a remount.
        ("mkdir", R + "/data", 0o755),
        ("mount", "/host/data", R + "/data", "bind", ("MS_BIND", "MS_REC"), ""),
        ("mount", "/host/data", R + "/data", "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY"), ""),
        ("mkdir", R + "/run", 0o755),
        ("mount", "tmpfs", R + "/run", "tmpfs", (), "size=1m"),
        # pivot_root(".", ".") and detach the old root.
        ("chdir", R),
        ("pivot_root", ".", "."),
        ("mount", "", ".", "", ("MS_SLAVE", "MS_REC"), ""),
        ("umount2", ".", MNT_DETACH),
        ("chdir", "/"),
        ("loopback_up",),
        ("sethostname", "web"),
        ("write_file", "/proc/sys/net/ipv4/ip_forward", "1"),
        # Masked: a file gets /dev/null, a directory a read-only tmpfs, a missing path nothing.
        ("mount", "/dev/null", "/proc/kcore", "bind", ("MS_BIND",), ""),
        ("mount", "tmpfs", "/sys/firmware", "tmpfs", ("MS_RDONLY",), ""),
        ("mount", "/proc/sys", "/proc/sys", "bind", ("MS_BIND", "MS_REC"), ""),
        ("mount", "/proc/sys", "/proc/sys", "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY", *NOSUID_NOEXEC_NODEV), ""),
        ("setsid",),
        ("setup_stdio", 10, 11, 12),
        ("drop_bounding", DROPPED),
        ("setgroups", (1000, 50)),
        ("setgid", 1000),
        ("setuid", 1000),
        ("capset", 0, 0, 0),
        ("set_no_new_privs",),
        ("close_fds", 7),
        ("chdir", "/"),
        # With no_new_privs, seccomp goes in last: the program's syscalls are all it filters.
        ("seccomp_load", 3, 0),
        ("execve", "/bin/sh", ("sh", "-c", "x"), ("PATH=/bin", "HOME=/home/user")),
    ]


def test_root_keeps_dockers_default_capabilities():
    sys = recording()
    init.run(sys, make_config(user=""), (0, 1, 2), None, 7, 40)
    assert ("capset", 0xA80425FB, 0xA80425FB, 0) in sys.calls
    assert ("setgroups", (0,)) in sys.calls


def test_a_terminal_is_made_and_becomes_the_console():
    sys = recording()
    init.run(sys, make_config(terminal=True), (0, 1, 2), 9, 7, 40)
    start = sys.calls.index(("setsid",))
    assert sys.calls[start:start + 4] == [
        ("setsid",),
        ("setup_terminal", 9, 1000),
        ("touch", "/dev/console"),
        ("mount", "/dev/pts/0", "/dev/console", "bind", ("MS_BIND",), ""),
    ]
    assert not [c for c in sys.calls if c[0] == "setup_stdio"]


def test_a_terminal_without_a_console_socket_is_refused():
    with pytest.raises(StartError, match="no console socket"):
        init.run(recording(), make_config(terminal=True), (0, 1, 2), None, 7, 40)


def test_host_network_gets_a_new_sysfs_read_only_all_the_way_down():
    # Never a bind of the host's /sys: its submounts (the host's cgroup hierarchies) came
    # along writable (issue 10).
    sys = recording()
    init.run(sys, make_config(namespaces=("pid", "mount", "uts", "ipc", "cgroup")), (0, 1, 2), None, 7, 40, cgroup_view=VIEW)
    assert not [c for c in sys.calls if c[0] == "mount" and c[1] == "/sys"]
    sys_mounts = [c for c in sys.calls if c[0] == "mount" and c[2].startswith(R + "/sys")]
    assert [c[3] for c in sys_mounts] == ["sysfs", "tmpfs", "cgroup", "tmpfs"]
    # Every one of them read-only: at its mount, or (the tmpfs) by the remount that ends it.
    assert all("MS_RDONLY" in c[4] for c in sys_mounts[:1] + sys_mounts[2:])


def test_without_a_cgroup_namespace_no_hierarchy_is_mounted():
    # Outside a cgroup namespace a cgroup mount would show the hierarchy's root.
    sys = recording()
    init.run(sys, make_config(namespaces=("pid", "mount", "uts", "ipc", "net")), (0, 1, 2), None, 7, 40, cgroup_view=VIEW)
    assert not [c for c in sys.calls if c[0] == "mount" and c[3] == "cgroup"]
    assert [c[3] for c in sys.calls if c[0] == "mount" and c[2].startswith(R + "/sys")] == ["sysfs"]


def test_without_no_new_privs_seccomp_goes_in_before_the_capabilities_are_dropped():
    # The kernel takes a filter from a process without no_new_privs only while it holds
    # CAP_SYS_ADMIN (runc's order; build RUN steps run so, for setuid programs).
    sys = recording()
    config = make_config()
    config = replace(config, process=replace(config.process, no_new_privileges=False))
    init.run(sys, config, (0, 1, 2), None, 7, 40, seccomp=PROGRAM)
    names = [c[0] for c in sys.calls]
    assert names.index("seccomp_load") < names.index("drop_bounding") < names.index("setuid") < names.index("capset")
    assert names.count("seccomp_load") == 1 and "set_no_new_privs" not in names


def test_an_unconfined_container_loads_no_filter():
    sys = recording()
    init.run(sys, make_config(), (0, 1, 2), None, 7, 40, seccomp=None)
    assert not [c for c in sys.calls if c[0] == "seccomp_load"]


def test_a_prepared_network_namespace_is_left_to_the_network_code():
    sys = recording()
    init.run(sys, make_config(netns_path="/run/netns/n1"), (0, 1, 2), None, 7, 40)
    assert ("loopback_up",) not in sys.calls


def test_no_uts_namespace_leaves_the_hostname_alone():
    sys = recording()
    init.run(sys, make_config(namespaces=("pid", "mount")), (0, 1, 2), None, 7, 40)
    assert not [c for c in sys.calls if c[0] == "sethostname"]


def test_init_true_binds_tini_and_runs_it_first():
    sys = recording(**{"/sbin/docker-init": "file"})
    init.run(sys, make_config(init=True, mounts=()), (0, 1, 2), None, 7, 40, init_binary="/usr/bin/tini-static")
    assert ("mount", "/usr/bin/tini-static", R + "/sbin/docker-init", "bind", ("MS_BIND",), "") in sys.calls
    assert ("mount", "/usr/bin/tini-static", R + "/sbin/docker-init", "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY"), "") in sys.calls
    assert sys.calls[-1][:3] == ("execve", "/sbin/docker-init", ("/sbin/docker-init", "--", "sh", "-c", "x"))


def test_readonly_rootfs_is_remounted_last():
    sys = recording()
    init.run(sys, make_config(readonly_rootfs=True), (0, 1, 2), None, 7, 40)
    remount = ("mount", "/", "/", "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY"), "")
    assert sys.calls.index(remount) == sys.calls.index(("setsid",)) - 1


def test_a_missing_working_directory_is_created_inside_the_root():
    sys = recording(**{R + "/app": "link:/srv"})
    config = make_config()
    config = replace(config, process=replace(config.process, cwd="/app/x"))
    init.run(sys, config, (0, 1, 2), None, 7, 40)
    assert ("mkdir", R + "/srv/x", 0o755) in sys.calls
    assert ("chdir", "/app/x") in sys.calls


@pytest.mark.parametrize(
    "files, path, expected",
    [
        ({}, "/data", R + "/data"),
        ({}, "/", R),
        ({}, "/a/../../../etc", R + "/etc"),
        ({R + "/data": "link:/etc"}, "/data", R + "/etc"),
        ({R + "/data": "link:/etc"}, "/data/x", R + "/etc/x"),
        ({R + "/data": "link:../../../../etc"}, "/data", R + "/etc"),
        ({R + "/a": "dir", R + "/a/b": "link:c"}, "/a/b/d", R + "/a/c/d"),
        ({R + "/a": "link:/b", R + "/b": "link:/c"}, "/a", R + "/c"),
    ],
)
def test_resolve_in_root_never_leaves_the_root(files, path, expected):
    assert resolve_in_root(R, path, lambda p: files.get(p, "missing")) == expected


def test_resolve_in_root_refuses_a_link_loop():
    with pytest.raises(StartError, match="too many levels"):
        resolve_in_root(R, "/a", lambda p: "link:/a" if p == R + "/a" else "missing")


@pytest.mark.parametrize(
    "files, name, path, result",
    [
        ({"/bin/sh": "file"}, "sh", "/usr/bin:/bin", "/bin/sh"),
        ({"/usr/bin/sh": "file", "/bin/sh": "file"}, "sh", "/usr/bin:/bin", "/usr/bin/sh"),
        ({"/usr/bin/sh": "dir", "/bin/sh": "file"}, "sh", "/usr/bin:/bin", "/bin/sh"),
        ({"/bin/sh": "file"}, "/bin/sh", "", "/bin/sh"),
        ({}, "nope", "/bin", (127, 'exec: "nope": executable file not found in $PATH')),
        ({}, "/bin/nope", "/bin", (127, 'exec: "/bin/nope": stat /bin/nope: no such file or directory')),
        ({"/etc/passwd": "noexec"}, "/etc/passwd", "/bin", (126, 'exec: "/etc/passwd": permission denied')),
        ({"/etc": "dir"}, "/etc", "/bin", (126, 'exec: "/etc": permission denied')),
    ],
)
def test_find_executable(files, name, path, result):
    sys = RecordingSyscalls(files=files)
    if isinstance(result, str):
        assert find_executable(sys, name, [f"PATH={path}"]) == result
    else:
        with pytest.raises(StartError) as info:
            find_executable(sys, name, [f"PATH={path}"])
        assert (info.value.exit_code, str(info.value)) == result


@pytest.mark.parametrize(
    "options, expected",
    [
        (("ro",), (("MS_RDONLY",), (), "")),
        (("rbind", "rprivate", "nosuid"), (("MS_NOSUID",), ("MS_PRIVATE", "MS_REC"), "")),
        (("size=64m", "mode=1777", "noexec"), (("MS_NOEXEC",), (), "size=64m,mode=1777")),
        (("rw", "slave"), ((), ("MS_SLAVE",), "")),
    ],
)
def test_split_mount_options(options, expected):
    assert split_mount_options(options) == expected
