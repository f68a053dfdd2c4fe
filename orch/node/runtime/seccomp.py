"""Seccomp: docker's profile format, compiled to a BPF program once, loaded by init with one call.

Three parts, in the order a container meets them:

- `compute_rules(profile, capabilities)`, pure: docker's profile (moby's `profiles/seccomp`,
  shipped as data/seccomp-default.json with its Apache-2.0 licence) narrowed to this machine
  and this process, as moby's `setupSeccomp` does: the architectures of the native one's
  `archMap` entry, and each syscall group kept or dropped by its `includes`/`excludes`
  conditions on the architecture, the kernel version and the capabilities in the process's
  bounding set (CAP_SYS_ADMIN adds mount, unshare, setns, ...). `check_profile` gives a
  one-line error for a profile docker would refuse, so a bad `--security-opt seccomp=FILE`
  fails at create, not at start.
- `compile_program(rules)` (seccompbpf.py, the driver): libseccomp (libseccomp.so.2 through ctypes; there is no
  maintained binding on PyPI) builds the filter and `seccomp_export_bpf` writes the program
  out; orch keeps the bytes. `program_for(profile, capabilities)` caches them per distinct
  (profile, capability set), so a node compiles the default profile once per set of
  capabilities (~10 ms) and every later start reuses the bytes: the supervisor is a fork
  server, so its children inherit them.
- `Syscalls.seccomp_load(program)` (kernel.py), called by init.exec_process: one
  seccomp(SECCOMP_SET_MODE_FILTER) just before execve when no_new_privs is set, or before
  the capabilities are dropped when it is not (the kernel wants CAP_SYS_ADMIN then): runc's
  two orders (`standard_init_linux.go`).

runc's rules for arguments hold: several conditions on different arguments are one rule
(all must match); several on the same argument are separate rules (any may match). A syscall
name libseccomp does not know is skipped (runc does the same), unless it is one of the few
newer x86-64 syscalls listed in NEWER_SYSCALLS, which libseccomp 2.5 predates.
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

from orch.errors import InvalidArgument, SystemFailure

DEFAULT = "default"
UNCONFINED = "unconfined"
DEFAULT_PROFILE_PATH = Path(__file__).with_name("data") / "seccomp-default.json"

# moby's names for the machine (Go's GOARCH mapped to libseccomp's names), as profiles use them
# in `includes.arches`; and the profile's SCMP_ARCH_ name for the native architecture.
NATIVE_ARCH = {"x86_64": ("amd64", "SCMP_ARCH_X86_64"), "aarch64": ("arm64", "SCMP_ARCH_AARCH64")}

ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
}
OPERATORS = {"SCMP_CMP_NE": 1, "SCMP_CMP_LT": 2, "SCMP_CMP_LE": 3, "SCMP_CMP_EQ": 4, "SCMP_CMP_GE": 5, "SCMP_CMP_GT": 6,
             "SCMP_CMP_MASKED_EQ": 7}
FILTER_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2, "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4}
EPERM = 1

# x86-64 numbers of syscalls newer than libseccomp 2.5.4 (Debian 12's), from the kernel's
# arch/x86/entry/syscalls/syscall_64.tbl. Without them docker's profile would allow them in
# name only, and a container would get EPERM for mseal or statmount where docker on a newer
# libseccomp allows them. They are added for the native architecture only.
NEWER_SYSCALLS = {
    "x86_64": {
        "uretprobe": 335, "statmount": 457, "listmount": 458, "lsm_get_self_attr": 459, "lsm_set_self_attr": 460,
        "lsm_list_modules": 461, "mseal": 462, "setxattrat": 463, "getxattrat": 464, "listxattrat": 465, "removexattrat": 466,
    },
}


@dataclass(frozen=True)
class Rule:
    names: tuple[str, ...]
    action: str
    errno: int | None
    args: tuple[tuple[int, str, int, int], ...]  # (index, operator, value, value_two)


@dataclass(frozen=True)
class Rules:
    """A profile narrowed to one machine and one process: what libseccomp is given."""

    default_action: str
    default_errno: int | None
    architectures: tuple[str, ...]
    rules: tuple[Rule, ...]
    flags: tuple[str, ...] = ()


# -- the profile (pure) -----------------------------------------------------------------------


def load_default_profile() -> dict:
    with open(DEFAULT_PROFILE_PATH) as f:
        return json.load(f)


def parse_profile(text: str, where: str = "seccomp profile") -> dict:
    """A profile's JSON text, checked; a one-line error names what is wrong."""
    try:
        profile = json.loads(text)
    except ValueError as e:
        raise InvalidArgument(f"invalid {where}: not JSON ({e}); give a profile in docker's format, such as moby's "
                              "profiles/seccomp/default.json") from None
    check_profile(profile, where)
    return profile


def _kernel_version(text: str, where: str) -> tuple[int, int]:
    parts = str(text).split(".")
    if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts == ["0", "0"]:
        raise InvalidArgument(f'invalid {where}: minKernel {text!r} is not "<kernel>.<major>" (e.g. "4.8")')
    return int(parts[0]), int(parts[1])


def check_profile(profile, where: str = "seccomp profile") -> None:
    """docker's checks (moby's setupSeccomp and runc's), as one-line errors."""
    if not isinstance(profile, dict):
        raise InvalidArgument(f"invalid {where}: the profile must be a JSON object")
    if profile.get("architectures") and profile.get("archMap"):
        raise InvalidArgument(f"invalid {where}: both 'architectures' and 'archMap' are specified; use one of them")
    if profile.get("listenerPath") or profile.get("defaultAction") == "SCMP_ACT_NOTIFY":
        raise InvalidArgument(f"invalid {where}: seccomp notification (SCMP_ACT_NOTIFY, listenerPath) is not supported by orch")
    default = profile.get("defaultAction", "")
    if default and default not in ACTIONS:
        raise InvalidArgument(f"invalid {where}: unknown defaultAction {default!r}; use one of {', '.join(sorted(ACTIONS))}")
    for flag in profile.get("flags") or ():
        if flag not in FILTER_FLAGS:
            raise InvalidArgument(f"invalid {where}: unknown flag {flag!r}; use one of {', '.join(FILTER_FLAGS)}")
    syscalls = profile.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidArgument(f"invalid {where}: 'syscalls' must be a list")
    for i, call in enumerate(syscalls):
        at = f"{where}: syscalls[{i}]"
        if not isinstance(call, dict):
            raise InvalidArgument(f"invalid {at}: must be an object")
        if call.get("name") and call.get("names"):
            raise InvalidArgument(f"invalid {at}: both 'name' and 'names' are specified; use 'names'")
        if not (call.get("name") or call.get("names")):
            raise InvalidArgument(f"invalid {at}: no 'names'")
        action = call.get("action")
        if action == "SCMP_ACT_NOTIFY":
            raise InvalidArgument(f"invalid {at}: SCMP_ACT_NOTIFY is not supported by orch")
        if action not in ACTIONS:
            raise InvalidArgument(f"invalid {at}: unknown action {action!r}; use one of {', '.join(sorted(ACTIONS))}")
        for arg in call.get("args") or ():
            if not isinstance(arg, dict) or not isinstance(arg.get("index"), int) or not 0 <= arg["index"] <= 5:
                raise InvalidArgument(f"invalid {at}: each of 'args' needs an 'index' from 0 to 5")
            if arg.get("op") not in OPERATORS:
                raise InvalidArgument(f"invalid {at}: unknown argument operator {arg.get('op')!r}; use one of {', '.join(OPERATORS)}")
            for key in ("value", "valueTwo"):
                if not isinstance(arg.get(key, 0), int) or not 0 <= arg.get(key, 0) < 1 << 64:
                    raise InvalidArgument(f"invalid {at}: argument {key} must be an integer from 0 to 2^64-1")
        for cond in ("includes", "excludes"):
            if call.get(cond) and call[cond].get("minKernel"):
                _kernel_version(call[cond]["minKernel"], at)


def native_arch() -> tuple[str, str]:
    machine = os.uname().machine
    if machine not in NATIVE_ARCH:
        raise SystemFailure(f"seccomp: orch knows no seccomp architecture for this machine ({machine}); run the container "
                            "with --security-opt seccomp=unconfined")
    return NATIVE_ARCH[machine]


def kernel_release() -> tuple[int, int]:
    parts = os.uname().release.split(".")
    return int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or 0)


def compute_rules(profile: dict, capabilities, *, arch: str = "amd64", arch_name: str = "SCMP_ARCH_X86_64",
                  kernel: tuple[int, int] = (6, 0)) -> Rules:
    """The rules of `profile` for a process whose bounding set is `capabilities` (moby's
    setupSeccomp). `arch` is moby's name of the native architecture ("amd64"), `arch_name`
    its profile name."""
    caps = set(capabilities)
    if profile.get("archMap"):
        architectures: tuple[str, ...] = ()
        for entry in profile["archMap"]:
            if entry.get("architecture") == arch_name:
                architectures = (arch_name, *(entry.get("subArchitectures") or ()))
                break
    else:
        architectures = tuple(profile.get("architectures") or ())
    rules = []
    for call in profile.get("syscalls") or ():
        names = tuple(call.get("names") or (call["name"],))
        excludes, includes = call.get("excludes") or {}, call.get("includes") or {}
        if arch in (excludes.get("arches") or ()):
            continue
        if any(c in caps for c in excludes.get("caps") or ()):
            continue
        if excludes.get("minKernel") and kernel >= _kernel_version(excludes["minKernel"], "seccomp profile"):
            continue
        if includes.get("arches") and arch not in includes["arches"]:
            continue
        if any(c not in caps for c in includes.get("caps") or ()):
            continue
        if includes.get("minKernel") and kernel < _kernel_version(includes["minKernel"], "seccomp profile"):
            continue
        args = tuple((a["index"], a["op"], int(a.get("value", 0)), int(a.get("valueTwo", 0))) for a in call.get("args") or ())
        rules.append(Rule(names, call["action"], call.get("errnoRet"), args))
    return Rules(profile.get("defaultAction") or "SCMP_ACT_ALLOW", profile.get("defaultErrnoRet"), architectures, tuple(rules),
                 tuple(profile.get("flags") or ()))


def action_value(action: str, errno: int | None) -> int:
    """libseccomp's action word: ERRNO and TRACE carry their number in the low 16 bits."""
    value = ACTIONS[action]
    if action == "SCMP_ACT_ERRNO":
        return value | ((EPERM if errno is None else errno) & 0xFFFF)
    if action == "SCMP_ACT_TRACE":
        return value | ((EPERM if errno is None else errno) & 0xFFFF)
    return value


def compute_rule_groups(args) -> list[tuple]:
    """runc's grouping: conditions on distinct arguments form one rule; if any argument has
    several conditions, each condition is a rule of its own."""
    indexes = [a[0] for a in args]
    if len(set(indexes)) == len(indexes):
        return [tuple(args)]
    return [(a,) for a in args]
