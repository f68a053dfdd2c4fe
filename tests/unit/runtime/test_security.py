"""orch.node.runtime.security: docker's capability, sysctl and ulimit rules as tables, and the
appliers' calls and their place in the init sequence (RecordingSyscalls)."""

from dataclasses import replace

import pytest

from orch.errors import InvalidArgument
from orch.node.runtime import init, security
from orch.node.runtime.config import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES
from orch.node.runtime.kernel import RecordingSyscalls
from orch.node.runtime.security import CapabilitySets

ALL_CAPS = tuple(sorted(CAPABILITY_NUMBERS, key=CAPABILITY_NUMBERS.__getitem__))
# This machine's node: every capability but CAP_SYS_RESOURCE.
NODE_CAPS = tuple(c for c in ALL_CAPS if c != "CAP_SYS_RESOURCE")
DEFAULT_MASK = 0xA80425FB


def check(fn, args, expected, **kwargs):
    """One helper for every table: a value, or (InvalidArgument, a piece of its message)."""
    if isinstance(expected, tuple) and expected and expected[0] is InvalidArgument:
        with pytest.raises(InvalidArgument) as info:
            fn(*args, **kwargs)
        assert expected[1] in str(info.value)
        assert "\n" not in str(info.value)
    else:
        assert fn(*args, **kwargs) == expected


# -- capabilities --------------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("NET_ADMIN", "CAP_NET_ADMIN"),
    ("net_admin", "CAP_NET_ADMIN"),
    ("cap_net_admin", "CAP_NET_ADMIN"),
    (" CAP_SYS_TIME ", "CAP_SYS_TIME"),
    ("all", "ALL"),
    ("ALL", "ALL"),
    ("FLY", (InvalidArgument, "invalid --cap-add 'FLY': unknown capability CAP_FLY")),
    ("CAP_", (InvalidArgument, "unknown capability CAP_")),
])
def test_check_capability(name, expected):
    check(security.check_capability, (name, "--cap-add"), expected)


@pytest.mark.parametrize("add, drop, expected", [
    ([], [], ((), ())),
    (["net_admin", "NET_ADMIN", "sys_time"], ["net_raw"], (("CAP_NET_ADMIN", "CAP_SYS_TIME"), ("CAP_NET_RAW",))),
    # A capability in both lists is added (docker's EffectiveCapAddCapDrop).
    (["SYS_TIME"], ["SYS_TIME", "NET_RAW"], (("CAP_SYS_TIME",), ("CAP_NET_RAW",))),
    (["all"], ["chown"], (("ALL",), ("CAP_CHOWN",))),
    ([], ["BOGUS"], (InvalidArgument, "invalid --cap-drop 'BOGUS': unknown capability CAP_BOGUS")),
])
def test_compute_cap_add_drop(add, drop, expected):
    check(security.compute_cap_add_drop, (add, drop), expected)


def _default_with(without=(), extra=()):
    caps = [c for c in DEFAULT_CAPABILITIES if c not in without] + list(extra)
    return tuple(sorted(caps, key=CAPABILITY_NUMBERS.__getitem__))


@pytest.mark.parametrize("add, drop, expected", [
    ((), (), _default_with()),
    (("CAP_NET_ADMIN",), ("CAP_NET_RAW",), _default_with(without=["CAP_NET_RAW"], extra=["CAP_NET_ADMIN"])),
    (("CAP_CHOWN",), (), _default_with()),  # adding a default one changes nothing
    (("ALL",), (), NODE_CAPS),
    (("ALL",), ("CAP_SYS_ADMIN", "CAP_NET_RAW"), tuple(c for c in NODE_CAPS if c not in ("CAP_SYS_ADMIN", "CAP_NET_RAW"))),
    ((), ("ALL",), ()),
    (("CAP_CHOWN", "CAP_NET_ADMIN"), ("ALL",), ("CAP_CHOWN", "CAP_NET_ADMIN")),
    (("CAP_SYS_RESOURCE",), (), (InvalidArgument, "capability CAP_SYS_RESOURCE is not available on this node")),
])
def test_compute_capabilities(add, drop, expected):
    check(security.compute_capabilities, (add, drop), expected, available=NODE_CAPS)


@pytest.mark.parametrize("names, uid, expected", [
    (DEFAULT_CAPABILITIES, 0, CapabilitySets(DEFAULT_MASK, DEFAULT_MASK, DEFAULT_MASK)),
    # A non-root user: only the bounding set, as execve would leave it (docker).
    (DEFAULT_CAPABILITIES, 1000, CapabilitySets(DEFAULT_MASK, 0, 0)),
    (("CAP_NET_ADMIN",), 0, CapabilitySets(1 << 12, 1 << 12, 1 << 12)),
    ((), 0, CapabilitySets(0, 0, 0)),
    # Past the kernel's last capability (here 38): left out, capset would refuse it.
    (("CAP_CHOWN", "CAP_CHECKPOINT_RESTORE"), 0, CapabilitySets(1, 1, 1)),
])
def test_compute_capability_sets(names, uid, expected):
    last_cap = 38 if "CAP_CHECKPOINT_RESTORE" in names else 40
    assert security.compute_capability_sets(names, uid=uid, last_cap=last_cap) == expected


def test_capabilities_in_mask_reads_a_proc_status_mask():
    assert security.capabilities_in_mask(0x1FFFEFFFFFF, 40) == NODE_CAPS
    assert security.capabilities_in_mask(DEFAULT_MASK, 40) == _default_with()


def test_apply_capabilities_bounds_before_the_user_and_sets_after():
    sys = RecordingSyscalls()
    sets = CapabilitySets(bounding=0b1011, effective=0b1, permitted=0b11, ambient=0b1)
    security.apply_capabilities(sys, sets, 5, lambda: sys.setuid(7))
    assert sys.calls == [("drop_bounding", (2, 4, 5)), ("setuid", 7), ("capset", 0b1, 0b11, 0), ("raise_ambient", (0,))]


# -- sysctls ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, namespace", [
    ("kernel.msgmax", "ipc"), ("kernel.msgmnb", "ipc"), ("kernel.msgmni", "ipc"), ("kernel.sem", "ipc"),
    ("kernel.shmall", "ipc"), ("kernel.shmmax", "ipc"), ("kernel.shmmni", "ipc"), ("kernel.shm_rmid_forced", "ipc"),
    ("fs.mqueue.msg_max", "ipc"), ("fs.mqueue.queues_max", "ipc"),
    ("net.ipv4.ip_forward", "net"), ("net.core.somaxconn", "net"),
    ("vm.swappiness", None), ("kernel.pid_max", None), ("kernel.hostname", None), ("kernel.domainname", None),
    ("fs.file-max", None), ("kernel.semx", None), ("netx.y", None),
])
def test_classify_sysctl(key, namespace):
    assert security.classify_sysctl(key) == namespace


@pytest.mark.parametrize("text, expected", [
    ("net.ipv4.ip_forward=1", ("net.ipv4.ip_forward", "1")),
    ("net.ipv4.ip_local_port_range=40000 41000", ("net.ipv4.ip_local_port_range", "40000 41000")),
    ("kernel.shmmax=a=b", ("kernel.shmmax", "a=b")),
    ("net.core.somaxconn=", ("net.core.somaxconn", "")),
    ("net.ipv4.ip_forward", (InvalidArgument, "invalid --sysctl 'net.ipv4.ip_forward': use KEY=VALUE")),
    ("=1", (InvalidArgument, "use KEY=VALUE")),
    ("vm.swappiness=1", (InvalidArgument, "invalid --sysctl 'vm.swappiness=1': sysctl 'vm.swappiness' is not whitelisted")),
])
def test_parse_sysctl(text, expected):
    check(security.parse_sysctl, (text,), expected)


@pytest.mark.parametrize("sysctls, namespaces, own_netns, error", [
    ({"net.ipv4.ip_forward": "1", "kernel.shmmax": "1", "fs.mqueue.msg_max": "10"}, ("net", "ipc"), False, None),
    # A prepared network namespace (a bridge network) is the container's own.
    ({"net.core.somaxconn": "9"}, ("ipc",), True, None),
    ({"net.core.somaxconn": "9"}, ("ipc",), False, "sysctl 'net.core.somaxconn' is not allowed in the host network namespace"),
    ({"kernel.sem": "1 2 3 4"}, ("net",), False, "needs the container's own ipc namespace"),
    ({"vm.swappiness": "0"}, ("net", "ipc", "uts"), False, "sysctl 'vm.swappiness' is not whitelisted"),
    ({"kernel.domainname": "x"}, ("uts",), False, "sysctl 'kernel.domainname' is not whitelisted"),
])
def test_check_sysctls(sysctls, namespaces, own_netns, error):
    check(security.check_sysctls, (sysctls,), None if error is None else (InvalidArgument, error),
          namespaces=namespaces, own_netns=own_netns)


def test_apply_sysctls_writes_under_proc_sys_in_order():
    sys = RecordingSyscalls()
    security.apply_sysctls(sys, {"net.ipv4.ip_forward": 1, "kernel.shmmax": "65536"})
    assert sys.calls == [("write_file", "/proc/sys/kernel/shmmax", "65536"), ("write_file", "/proc/sys/net/ipv4/ip_forward", "1")]


# -- ulimits ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("nofile=1024:2048", ("nofile", 1024, 2048)),
    ("nofile=1024", ("nofile", 1024, 1024)),
    ("nproc=100:100", ("nproc", 100, 100)),
    ("core=-1", ("core", -1, -1)),
    ("core=0:-1", ("core", 0, -1)),
    ("memlock=unlimited", ("memlock", -1, -1)),
    ("stack=8388608:unlimited", ("stack", 8388608, -1)),
    ("nofile=2048:1024", (InvalidArgument, "invalid --ulimit 'nofile=2048:1024': nofile soft limit must be less than or equal to the hard limit: 2048 > 1024")),
    ("nofile=-1:1024", (InvalidArgument, "soft limit must be less than or equal to the hard limit: -1 > 1024")),
    ("nofiles=1", (InvalidArgument, "unknown ulimit 'nofiles'; use one of core, cpu")),
    ("as=1", (InvalidArgument, "unknown ulimit 'as'")),
    ("nofile", (InvalidArgument, "invalid --ulimit 'nofile': use NAME=SOFT[:HARD]")),
    ("nofile=", (InvalidArgument, "use NAME=SOFT[:HARD]")),
    ("nofile=1:2:3", (InvalidArgument, "too many values")),
    ("nofile=ten", (InvalidArgument, "'ten' is not a number")),
    ("nofile=-2", (InvalidArgument, "'-2' is not a number")),
])
def test_parse_ulimit(text, expected):
    check(security.parse_ulimit, (text,), expected)


@pytest.mark.parametrize("args, expected", [
    (("nofile", 10, 20), ("nofile", 10, 20)),
    (("nofile", -1, -1), ("nofile", -1, -1)),
    (("nofile", 30, 20), (InvalidArgument, "invalid ulimits: nofile soft limit must be less than or equal")),
    (("nofile", -3, 20), (InvalidArgument, "nofile limit -3 is negative")),
    (("bogus", 1, 1), (InvalidArgument, "invalid ulimits: unknown ulimit 'bogus'")),
])
def test_check_ulimit(args, expected):
    check(security.check_ulimit, args, expected)


# -- in the init sequence ------------------------------------------------------------------------

def _run_init(**changes):
    from tests.unit.runtime.test_init_sequence import make_config, recording

    config = make_config(**changes)
    sys = recording()
    init.run(sys, config, (0, 1, 2), None, 7, 40)
    return sys.calls


def test_rlimits_are_set_as_root_before_capabilities_are_dropped():
    from tests.unit.runtime.test_init_sequence import make_config

    base = make_config()
    calls = _run_init(process=replace(base.process, rlimits=(("nofile", 1024, 2048), ("nproc", 10, 10))))
    names = [c[0] for c in calls]
    assert calls[names.index("setrlimit"):names.index("setrlimit") + 2] == [("setrlimit", "nofile", 1024, 2048), ("setrlimit", "nproc", 10, 10)]
    assert names.index("setrlimit") < names.index("drop_bounding") < names.index("setuid") < names.index("capset") < names.index("execve")


def test_added_capabilities_reach_capset_for_root():
    from tests.unit.runtime.test_init_sequence import make_config

    base = make_config(user="")
    caps = security.compute_capabilities(("CAP_NET_ADMIN",), ("CAP_NET_RAW",), available=NODE_CAPS)
    calls = _run_init(process=replace(base.process, capabilities=caps))
    mask = (DEFAULT_MASK & ~(1 << 13)) | (1 << 12)
    assert ("capset", mask, mask, 0) in calls
    dropped = next(c[1] for c in calls if c[0] == "drop_bounding")
    assert 12 not in dropped and 13 in dropped


def test_sysctls_before_proc_sys_is_read_only_and_the_root_last():
    calls = _run_init(readonly_rootfs=True)
    sysctl = calls.index(("write_file", "/proc/sys/net/ipv4/ip_forward", "1"))
    proc_ro = calls.index(("mount", "/proc/sys", "/proc/sys", "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY", "MS_NOSUID", "MS_NOEXEC", "MS_NODEV"), ""))
    root_ro = calls.index(("mount", "/", "/", "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY"), ""))
    last_user_mount = max(i for i, c in enumerate(calls) if c[0] == "mount" and c[2].startswith("/r/c1/rootfs/"))
    assert last_user_mount < sysctl < proc_ro < root_ro < calls.index(("setsid",))
