"""A stack using cap_add, cap_drop, read_only, privileged: false, sysctls and ulimits, on real
containers through `orch compose`; a changed value recreates the service."""

import pytest

pytestmark = pytest.mark.privileged

STACK = """
services:
  app:
    image: busybox:latest
    command: ["sleep", "1000"]
    init: true
    cap_add: [NET_ADMIN]
    cap_drop: [NET_RAW]
    read_only: true
    privileged: false
    tmpfs: [/tmp]
    volumes: [data:/data]
    sysctls:
      net.core.somaxconn: {somaxconn}
      kernel.shmmni: 1234
    ulimits:
      nofile: {{soft: 1024, hard: 2048}}
      nproc: 300
  plain:
    image: busybox:latest
    command: ["sleep", "1000"]
    init: true
volumes:
  data: {{}}
"""

CHECK = ("grep CapEff /proc/self/status; ulimit -n; ulimit -Hn; ulimit -u; cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmni; "
         "touch /x 2>&1; touch /tmp/a && echo tmp; touch /data/a && echo data; ip link add xx0 type veth peer name xx1 && echo netadmin; "
         "ping -c 1 -W 1 127.0.0.1 2>&1 | tail -n 1")


def test_a_stack_with_privileges_and_limits(node, stack):
    stack.write(STACK.format(somaxconn=777))
    assert stack.compose("config", "--unsupported").stdout == ""
    stack.compose("up", "-d")
    lines = stack.compose("exec", "-T", "app", "sh", "-c", CHECK).stdout.splitlines()
    assert int(lines[0].split()[1], 16) == (0xA80425FB | 1 << 12) & ~(1 << 13)
    assert lines[1:] == ["1024", "2048", "300", "777", "1234", "touch: /x: Read-only file system", "tmp", "data", "netadmin",
                         "ping: permission denied (are you root?)"]
    host = node.inspect(f"{stack.name}-app-1")["HostConfig"]
    assert (host["CapAdd"], host["CapDrop"], host["ReadonlyRootfs"], host["Privileged"]) == (["CAP_NET_ADMIN"], ["CAP_NET_RAW"], True, False)
    assert host["Sysctls"] == {"net.core.somaxconn": "777", "kernel.shmmni": "1234"}
    assert host["Ulimits"] == [{"Name": "nofile", "Hard": 2048, "Soft": 1024}, {"Name": "nproc", "Hard": 300, "Soft": 300}]
    # The other service has docker's defaults.
    plain = stack.compose("exec", "-T", "plain", "grep", "CapEff", "/proc/self/status").stdout
    assert int(plain.split()[1], 16) == 0xA80425FB

    before = stack.ids()
    stack.write(STACK.format(somaxconn=778))
    stack.compose("up", "-d")
    after = stack.ids()
    assert after[f"{stack.name}-app-1"] != before[f"{stack.name}-app-1"]
    assert after[f"{stack.name}-plain-1"] == before[f"{stack.name}-plain-1"]
    assert stack.compose("exec", "-T", "app", "cat", "/proc/sys/net/core/somaxconn").stdout == "778\n"


def test_privileged_true_is_refused_in_one_line(node, stack):
    stack.write("services:\n  app: {image: 'busybox:latest', command: [sleep, '1'], privileged: true}\n")
    proc = stack.compose("up", "-d", check=False)
    assert proc.returncode != 0
    assert "service app: privileged: true is not supported by orch" in proc.stderr
    assert stack.ids() == {}


SECCOMP_STACK = """
services:
  confined:
    image: busybox:latest
    command: ["sleep", "1000"]
    init: true
    security_opt: ["seccomp=getpid.json", "no-new-privileges:false"]
    volumes: ["{probe}:/probe:ro"]
  free:
    image: busybox:latest
    command: ["sleep", "1000"]
    init: true
    security_opt: ["seccomp=unconfined"]
    volumes: ["{probe}:/probe:ro"]
"""


def test_security_opt_in_a_stack(node, stack):
    import json

    from tests.integration.probe import parse, probe_binary

    # A profile file relative to the project's directory, read when the stack is applied.
    (stack.dir / "getpid.json").write_text(json.dumps(
        {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]}))
    stack.write(SECCOMP_STACK.format(probe=probe_binary()))
    assert stack.compose("config", "--unsupported").stdout == ""
    stack.compose("up", "-d")
    assert parse(stack.compose("exec", "-T", "confined", "/probe", "getpid", "keyctl").stdout) == {"getpid": "errno 13", "keyctl": "ok"}
    assert parse(stack.compose("exec", "-T", "free", "/probe", "keyctl").stdout) == {"keyctl": "ok"}
    host = node.inspect(f"{stack.name}-confined-1")["HostConfig"]
    assert host["SecurityOpt"][1] == "no-new-privileges=false" and json.loads(host["SecurityOpt"][0].split("=", 1)[1])["syscalls"]
    stack.write(SECCOMP_STACK.replace('"seccomp=getpid.json", ', "").replace('"seccomp=unconfined"', '"label=disable"')
                .format(probe=probe_binary()))
    proc = stack.compose("up", "-d", check=False)
    assert proc.returncode != 0 and "service free: security_opt 'label=disable': this node has no SELinux" in proc.stderr
