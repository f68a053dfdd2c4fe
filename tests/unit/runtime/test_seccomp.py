"""seccomp.py's pure half (docker's profile narrowed to a machine and a capability set) and
--security-opt's grammar; compile_program is checked against libseccomp where it is installed."""

import json

import pytest

from orch.errors import InvalidArgument
from orch.node.runtime import seccomp, seccompbpf
from orch.node.runtime.config import DEFAULT_CAPABILITIES
from orch.node.runtime.security import SecurityOptions, parse_security_opts

PROFILE = seccomp.load_default_profile()


def allowed(rules: seccomp.Rules) -> set[str]:
    return {name for rule in rules.rules if rule.action == "SCMP_ACT_ALLOW" and not rule.args for name in rule.names}


def rules_for(*caps, arch="amd64", kernel=(6, 18)):
    return seccomp.compute_rules(PROFILE, caps or DEFAULT_CAPABILITIES, arch=arch, kernel=kernel)


def test_the_default_profile_denies_with_eperm_and_covers_x86_64s_three_abis():
    rules = rules_for()
    assert (rules.default_action, rules.default_errno) == ("SCMP_ACT_ERRNO", 1)
    assert rules.architectures == ("SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32")


@pytest.mark.parametrize("name", ["keyctl", "add_key", "request_key", "io_uring_setup", "userfaultfd", "unshare", "mount", "setns",
                                  "perf_event_open", "bpf", "kexec_load", "init_module", "open_by_handle_at", "ptrace"])
def test_docker_defaults_leave_out_the_dangerous_syscalls(name):
    # ptrace is allowed from kernel 4.8 on; it is listed here for an older kernel.
    assert name not in allowed(rules_for(kernel=(4, 4)))


def test_capabilities_add_their_syscalls():
    base = allowed(rules_for())
    admin = allowed(rules_for(*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))
    assert {"mount", "umount2", "unshare", "setns", "clone3"} <= admin - base
    assert "perf_event_open" in allowed(rules_for(*DEFAULT_CAPABILITIES, "CAP_PERFMON"))
    assert "chroot" in base  # CAP_SYS_CHROOT is a default capability


def test_without_cap_sys_admin_clone_is_masked_and_clone3_says_enosys():
    rules = rules_for()
    clone = [r for r in rules.rules if r.names == ("clone",)]
    assert [r.args for r in clone] == [((0, "SCMP_CMP_MASKED_EQ", 2114060288, 0),)]  # no CLONE_NEW* flag
    assert [(r.action, r.errno) for r in rules.rules if r.names == ("clone3",)] == [("SCMP_ACT_ERRNO", 38)]
    admin = rules_for(*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN")
    assert not [r for r in admin.rules if r.names == ("clone",) and r.args]


def test_arch_and_kernel_conditions():
    assert "arch_prctl" in allowed(rules_for())
    assert "arch_prctl" not in allowed(rules_for(arch="arm64"))
    assert "ptrace" in allowed(rules_for(kernel=(4, 8))) and "ptrace" not in allowed(rules_for(kernel=(4, 7)))


def test_personality_is_allowed_for_docker_s_values_only():
    values = sorted(r.args[0][2] for r in rules_for().rules if r.names == ("personality",))
    assert values == [0, 8, 0x20000, 0x20008, 0xFFFFFFFF]


def test_conditions_on_one_argument_are_separate_rules_on_several_one_rule():
    a, b = (0, "SCMP_CMP_EQ", 1, 0), (0, "SCMP_CMP_EQ", 2, 0)
    c = (1, "SCMP_CMP_EQ", 3, 0)
    assert seccomp.compute_rule_groups((a, b)) == [(a,), (b,)]
    assert seccomp.compute_rule_groups((a, c)) == [(a, c)]
    assert seccomp.compute_rule_groups(()) == [()]


def test_action_values_carry_their_errno():
    assert seccomp.action_value("SCMP_ACT_ERRNO", None) == 0x00050001
    assert seccomp.action_value("SCMP_ACT_ERRNO", 38) == 0x00050026
    assert seccomp.action_value("SCMP_ACT_ALLOW", None) == 0x7FFF0000


@pytest.mark.parametrize("profile, message", [
    ([], "must be a JSON object"),
    ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown defaultAction"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{}]}, "both 'architectures' and 'archMap'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_NOTIFY"}]}, "SCMP_ACT_NOTIFY"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "read", "names": ["read"], "action": "SCMP_ACT_ERRNO"}]}, "both 'name' and 'names'"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 6, "op": "SCMP_CMP_EQ"}]}]},
     "index"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "EQ"}]}]},
     "unknown argument operator"),
    ({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}}]},
     "minKernel"),
])
def test_bad_profiles_are_one_line_errors(profile, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        seccomp.check_profile(profile, "--security-opt seccomp profile p.json")
    assert "\n" not in str(info.value) and "p.json" in str(info.value)


def test_security_opt_grammar():
    assert parse_security_opts([]) == SecurityOptions()
    assert parse_security_opts(["seccomp=unconfined"]) == SecurityOptions("unconfined", None)
    assert parse_security_opts(["seccomp:unconfined"]).seccomp == "unconfined"  # docker's old separator
    assert parse_security_opts(["seccomp=builtin"]).seccomp == "default"
    assert parse_security_opts(["no-new-privileges"]).no_new_privileges is True
    assert parse_security_opts(["no-new-privileges=false"]).no_new_privileges is False
    assert parse_security_opts(["no-new-privileges:true"]).no_new_privileges is True
    inline = parse_security_opts(['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}'])
    assert json.loads(inline.seccomp) == {"defaultAction": "SCMP_ACT_ALLOW"}
    assert inline.to_opts() == ['seccomp={"defaultAction":"SCMP_ACT_ALLOW"}']
    read = parse_security_opts(["seccomp=p.json"], read_file=lambda path: '{"defaultAction": "SCMP_ACT_LOG"}')
    assert json.loads(read.seccomp) == {"defaultAction": "SCMP_ACT_LOG"}
    assert SecurityOptions("unconfined", False).to_opts() == ["seccomp=unconfined", "no-new-privileges=false"]


@pytest.mark.parametrize("opt, message", [
    ("label=type:svirt_apache_t", "no SELinux"),
    ("label:disable", "no SELinux"),
    ("apparmor=unconfined", "no AppArmor"),
    ("no-new-privileges=maybe", "takes true or false"),
    ("systempaths=unconfined", "orch knows seccomp="),
    ("seccomp", "orch knows seccomp="),
    ("seccomp=profile.json", "give seccomp=unconfined, or a profile"),
    ("seccomp={not json", "not JSON"),
])
def test_security_opt_refusals_are_one_line(opt, message):
    with pytest.raises(InvalidArgument, match=message) as info:
        parse_security_opts([opt])
    assert "\n" not in str(info.value) and "--security-opt" in str(info.value)


def test_compiled_programs_are_cached_per_profile_and_capability_set():
    program, flags = seccompbpf.program_for("default", DEFAULT_CAPABILITIES)  # libseccomp2 is a dependency (scripts/setup)
    assert flags == 0 and len(program) % 8 == 0 and len(program) > 8 * 100
    assert seccompbpf.program_for("default", tuple(reversed(DEFAULT_CAPABILITIES)))[0] is program
    assert seccompbpf.program_for("default", (*DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN"))[0] != program
    assert seccompbpf.program_for("unconfined", DEFAULT_CAPABILITIES) is None
    assert seccompbpf.program_for('{"syscalls": []}', DEFAULT_CAPABILITIES) is None  # docker: no action, no syscalls
