"""`orch run`/`create` privilege and limit flags into the agent's create body (no agent)."""

import pytest

from orch.api import runflags
from orch.errors import InvalidArgument


def create_body(*flags):
    return runflags.create_body(runflags.create_parser("orch run").parse_args([*flags, "busybox", "true"]))


def security_fields(body):
    return {k: body[k] for k in ("cap_add", "cap_drop", "read_only", "sysctls", "ulimits") if k in body}


@pytest.mark.parametrize("flags, expected", [
    ((), {}),
    (("--cap-add", "net_admin", "--cap-add", "CAP_SYS_TIME", "--cap-drop", "NET_RAW"),
     {"cap_add": ["CAP_NET_ADMIN", "CAP_SYS_TIME"], "cap_drop": ["CAP_NET_RAW"]}),
    (("--cap-add=ALL", "--cap-drop", "sys_admin"), {"cap_add": ["ALL"], "cap_drop": ["CAP_SYS_ADMIN"]}),
    (("--cap-drop", "all", "--cap-add", "chown"), {"cap_add": ["CAP_CHOWN"], "cap_drop": ["ALL"]}),
    (("--cap-add", "SYS_TIME", "--cap-drop", "sys_time"), {"cap_add": ["CAP_SYS_TIME"]}),
    (("--read-only",), {"read_only": True}),
    (("--sysctl", "net.ipv4.ip_forward=1", "--sysctl", "kernel.shmmax=65536"),
     {"sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "65536"}}),
    (("--ulimit", "nofile=1024:2048", "--ulimit", "nproc=100", "--ulimit", "nofile=10:20"),
     {"ulimits": [{"name": "nofile", "soft": 10, "hard": 20}, {"name": "nproc", "soft": 100, "hard": 100}]}),
])
def test_flags_become_request_fields(flags, expected):
    assert security_fields(create_body(*flags)) == expected


@pytest.mark.parametrize("flags, message", [
    (("--cap-add", "FLY"), "invalid --cap-add 'FLY': unknown capability CAP_FLY; use a name such as NET_ADMIN"),
    (("--cap-drop", "nope"), "invalid --cap-drop 'nope': unknown capability CAP_NOPE"),
    (("--sysctl", "vm.swappiness=1"), "invalid --sysctl 'vm.swappiness=1': sysctl 'vm.swappiness' is not whitelisted"),
    (("--sysctl", "net.ipv4.ip_forward"), "invalid --sysctl 'net.ipv4.ip_forward': use KEY=VALUE"),
    (("--ulimit", "nofile=2048:1024"), "invalid --ulimit 'nofile=2048:1024': nofile soft limit must be less than or equal"),
    (("--ulimit", "files=1"), "invalid --ulimit 'files=1': unknown ulimit 'files'"),
    (("--privileged",), "--privileged is not supported by orch"),
])
def test_bad_flags_are_one_line_errors(flags, message):
    with pytest.raises(InvalidArgument) as info:
        create_body(*flags)
    assert message in str(info.value) and "\n" not in str(info.value)
