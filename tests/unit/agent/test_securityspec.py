"""The agent's decider of a container's privileges and limits (securityspec.py), as tables,
and the create request's new fields."""

import pytest
from pydantic import ValidationError

from orch.errors import InvalidArgument
from orch.api.models import CreateRequest
from orch.node.agent.securityspec import compute_readonly_file_mounts, compute_security_plan
from orch.node.runtime.config import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES
from orch.node.runtime.mount import Mount

NODE_CAPS = tuple(c for c in sorted(CAPABILITY_NUMBERS, key=CAPABILITY_NUMBERS.__getitem__) if c != "CAP_SYS_RESOURCE")
BRIDGE = {"namespaces": ("pid", "mount", "uts", "ipc", "cgroup", "net"), "own_netns": True}
HOST = {"namespaces": ("pid", "mount", "ipc", "cgroup"), "own_netns": False}


def plan(net=BRIDGE, **fields):
    return compute_security_plan(available=NODE_CAPS, **net, **fields)


def test_nothing_asked_gives_dockers_defaults_and_inspect_fields():
    p = plan()
    assert set(p.capabilities) == set(DEFAULT_CAPABILITIES) and len(p.capabilities) == len(DEFAULT_CAPABILITIES)
    assert (p.rlimits, p.sysctls, p.readonly_rootfs) == ((), {}, False)
    assert p.host_config == {"CapAdd": None, "CapDrop": None, "Privileged": False, "ReadonlyRootfs": False, "Ulimits": None,
                             "SecurityOpt": None}


@pytest.mark.parametrize("fields, host_config", [
    ({"cap_add": ["net_admin", "SYS_TIME"], "cap_drop": ["NET_RAW", "sys_time"]},
     {"CapAdd": ["CAP_NET_ADMIN", "CAP_SYS_TIME"], "CapDrop": ["CAP_NET_RAW"]}),
    ({"read_only": True}, {"ReadonlyRootfs": True}),
    ({"sysctls": {"net.core.somaxconn": "1024"}}, {"Sysctls": {"net.core.somaxconn": "1024"}}),
    ({"ulimits": [{"name": "nofile", "soft": 1024, "hard": 2048}, {"name": "nproc", "soft": 5, "hard": 5},
                  {"name": "nofile", "soft": 10, "hard": 20}]},
     {"Ulimits": [{"Name": "nofile", "Hard": 20, "Soft": 10}, {"Name": "nproc", "Hard": 5, "Soft": 5}]}),
])
def test_inspect_shows_dockers_host_config_fields(fields, host_config):
    shown = plan(**fields).host_config
    assert {k: shown[k] for k in host_config} == host_config


def test_the_process_gets_the_capabilities_and_rlimits():
    p = plan(cap_add=["ALL"], cap_drop=["sys_admin"], ulimits=[{"name": "core", "soft": 0, "hard": -1}])
    assert "CAP_SYS_ADMIN" not in p.capabilities and "CAP_NET_ADMIN" in p.capabilities
    assert "CAP_SYS_RESOURCE" not in p.capabilities  # ALL is what the node holds
    assert p.rlimits == (("core", 0, -1),)


@pytest.mark.parametrize("net, fields, error", [
    (BRIDGE, {"privileged": True}, "privileged: true is not supported by orch"),
    (BRIDGE, {"cap_add": ["FLY"]}, "invalid cap_add 'FLY': unknown capability CAP_FLY"),
    (BRIDGE, {"cap_drop": ["FLY"]}, "invalid cap_drop 'FLY'"),
    (BRIDGE, {"cap_add": ["SYS_RESOURCE"]}, "capability CAP_SYS_RESOURCE is not available on this node"),
    (BRIDGE, {"sysctls": {"vm.swappiness": "1"}}, "sysctl 'vm.swappiness' is not whitelisted"),
    (HOST, {"sysctls": {"net.ipv4.ip_forward": "1"}}, "is not allowed in the host network namespace"),
    (BRIDGE, {"ulimits": [{"name": "nofile", "soft": 3, "hard": 2}]}, "nofile soft limit must be less than or equal"),
    (BRIDGE, {"ulimits": [{"name": "fly", "soft": 3, "hard": 2}]}, "unknown ulimit 'fly'"),
])
def test_bad_fields_are_one_line_errors(net, fields, error):
    with pytest.raises(InvalidArgument, match=error) as info:
        plan(net, **fields)
    assert "\n" not in str(info.value)


def test_ipc_sysctls_are_fine_with_the_host_network():
    assert plan(HOST, sysctls={"kernel.shmmax": "1"}).sysctls == {"kernel.shmmax": "1"}


FILES = (Mount("bind", "/c/hosts", "/etc/hosts", ("bind",)), Mount("bind", "/c/hostname", "/etc/hostname", ("bind",)),
         Mount("bind", "/c/resolv.conf", "/etc/resolv.conf", ("bind",)))
USER = (Mount("bind", "/mine/hosts", "/etc/hosts", ()), Mount("bind", "/v/_data", "/data", ()), Mount("tmpfs", "tmpfs", "/tmp", ("nosuid",)))


def test_a_read_only_root_makes_the_node_files_read_only_too():
    out = compute_readonly_file_mounts(FILES + USER, True)
    assert [m.options for m in out] == [("bind", "ro")] * 3 + [(), (), ("nosuid",)]
    assert compute_readonly_file_mounts(FILES + USER, False) == FILES + USER


def test_create_request_fields():
    req = CreateRequest(image="busybox", cap_add=["NET_ADMIN"], read_only=True, sysctls={"net.core.somaxconn": "1"},
                        ulimits=[{"name": "nofile", "soft": -1, "hard": -1}])
    assert (req.cap_add, req.cap_drop, req.read_only, req.privileged, req.ulimits[0].soft) == (["NET_ADMIN"], [], True, False, -1)
    with pytest.raises(ValidationError):
        CreateRequest(image="busybox", ulimits=[{"name": "nofile", "soft": -2, "hard": 1}])
    with pytest.raises(ValidationError):
        CreateRequest(image="busybox", ulimits=[{"name": "nofile", "soft": 1, "hard": 1, "extra": 1}])
