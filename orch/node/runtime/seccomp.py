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
- `compile_program(rules)`: libseccomp (libseccomp.so.2 through ctypes; there is no
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

import ctypes
import hashlib
import json
import os
from dataclasses import dataclass, replace
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


_x32: bool | None = None


def kernel_has_x32() -> bool:
    """Whether this kernel runs x32 programs: getpid with the x32 bit answers, or ENOSYS."""
    global _x32
    if _x32 is None:
        if os.uname().machine != "x86_64":
            _x32 = False
        else:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.syscall.restype = ctypes.c_long
            _x32 = libc.syscall(ctypes.c_long(0x40000000 | 39)) >= 0  # __X32_SYSCALL_BIT | __NR_getpid
    return _x32


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


# -- libseccomp (the driver) ------------------------------------------------------------------


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


SCMP_FLTATR_CTL_OPTIMIZE = 8
NR_SCMP_ERROR = -1
_lib = None


def _libseccomp():
    global _lib
    if _lib is None:
        try:
            lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
        except OSError as e:
            raise SystemFailure(f"seccomp: cannot load libseccomp.so.2 ({e}); apt-get install libseccomp2, or run the container "
                                "with --security-opt seccomp=unconfined") from None
        lib.seccomp_init.restype = ctypes.c_void_p
        lib.seccomp_init.argtypes = [ctypes.c_uint32]
        lib.seccomp_release.argtypes = [ctypes.c_void_p]
        lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
        lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
        lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
        lib.seccomp_rule_add_exact_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
        lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
        lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.seccomp_merge.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.seccomp_arch_remove.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
        _lib = lib
    return _lib


def compile_program(rules: Rules) -> bytes:
    """The BPF program (an array of struct sock_filter) for `rules`, through libseccomp.

    Two filters merged into one program: the native architecture's, where a syscall newer
    than libseccomp can be added by number, and the other architectures' (x86 and x32 beside
    x86-64), where libseccomp translates each rule by name. libseccomp refuses a number it
    does not know in a filter with several architectures, hence the split.
    """
    lib = _libseccomp()
    machine = os.uname().machine
    native = lib.seccomp_arch_resolve_name(machine.encode())
    default = action_value(rules.default_action, rules.default_errno)
    others = [a for a in rules.architectures if _arch_token(lib, a) != native]
    main = _new_filter(lib, default, rules)
    try:
        _add_rules(lib, main, rules, default, NEWER_SYSCALLS.get(machine, {}))
        if others:
            sub = _new_filter(lib, default, rules)
            try:
                lib.seccomp_arch_remove(sub, native)
                for arch in others:
                    result = lib.seccomp_arch_add(sub, _arch_token(lib, arch))
                    if result < 0 and result != -17:  # EEXIST
                        raise SystemFailure(f"seccomp: add architecture {arch}: {os.strerror(-result)}")
                _add_rules(lib, sub, rules, default, {})
            except BaseException:
                lib.seccomp_release(sub)
                raise
            result = lib.seccomp_merge(main, sub)  # takes `sub` over, also when it fails
            if result < 0:
                raise SystemFailure(f"seccomp: merge the filters of {', '.join(rules.architectures)}: {os.strerror(-result)}")
        fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
        try:
            result = lib.seccomp_export_bpf(main, fd)
            if result < 0:
                raise SystemFailure(f"seccomp: export the filter: {os.strerror(-result)}")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(main)


def _arch_token(lib, arch: str) -> int:
    token = lib.seccomp_arch_resolve_name(arch.removeprefix("SCMP_ARCH_").lower().encode())
    if token == 0:
        raise SystemFailure(f"seccomp: libseccomp does not know the architecture {arch}")
    return token


def _new_filter(lib, default: int, rules: Rules):
    ctx = lib.seccomp_init(default)
    if not ctx:
        raise SystemFailure(f"seccomp: seccomp_init refused the default action {rules.default_action}")
    # A binary tree instead of a list: the allow-list has ~400 syscalls, and every syscall
    # the container makes walks the filter.
    lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)
    return ctx


def _add_rules(lib, ctx, rules: Rules, default: int, newer: dict) -> None:
    for rule in rules.rules:
        action = action_value(rule.action, rule.errno)
        if action == default:
            continue  # libseccomp refuses a rule that repeats the default action
        for name in rule.names:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            add = lib.seccomp_rule_add_array
            if number == NR_SCMP_ERROR:
                if name not in newer:
                    continue  # unknown here: not supported by this kernel or library (runc skips it too)
                number, add = newer[name], lib.seccomp_rule_add_exact_array
            for group in compute_rule_groups(rule.args):
                conds = (_ArgCmp * max(len(group), 1))(*[_ArgCmp(i, OPERATORS[op], a, b) for i, op, a, b in group])
                result = add(ctx, action, number, len(group), conds)
                if result < 0:
                    raise SystemFailure(f"seccomp: add a rule for {name} ({rule.action}): {os.strerror(-result)}")


# -- the cache --------------------------------------------------------------------------------

_programs: dict[tuple[str, tuple[str, ...]], tuple[bytes, int]] = {}
_default_text: str | None = None


def profile_key(seccomp: str) -> str:
    """What a container's `seccomp` field is, as a cache key: default, unconfined, or the
    digest of a custom profile's text."""
    if seccomp in (DEFAULT, UNCONFINED, ""):
        return seccomp or DEFAULT
    return "sha256:" + hashlib.sha256(seccomp.encode()).hexdigest()


def program_for(seccomp: str, capabilities) -> tuple[bytes, int] | None:
    """(BPF program, seccomp() flags) for a process, or None when unconfined.

    `seccomp` is a ContainerConfig's field: "default", "unconfined" or a profile's JSON text.
    Compiled once per distinct (profile, capability set) and kept for the life of the process.
    """
    if seccomp == UNCONFINED:
        return None
    caps = tuple(sorted(set(capabilities)))
    key = (profile_key(seccomp), caps)
    cached = _programs.get(key)
    if cached is None:
        profile = load_default_profile() if profile_key(seccomp) == DEFAULT else parse_profile(seccomp)
        # No default action and no syscalls: docker treats the profile as no profile.
        if not profile.get("defaultAction") and not profile.get("syscalls"):
            return None
        arch, arch_name = native_arch()
        rules = compute_rules(profile, caps, arch=arch, arch_name=arch_name, kernel=kernel_release())
        if "SCMP_ARCH_X32" in rules.architectures and not kernel_has_x32():
            # A third of the program for an ABI this kernel refuses anyway (ENOSYS): loading
            # 1256 instructions costs ~0.85 ms here, 840 ~0.6 ms. An x32 call then meets the
            # filter's bad-architecture action instead of ENOSYS.
            rules = replace(rules, architectures=tuple(a for a in rules.architectures if a != "SCMP_ARCH_X32"))
        flags = 0
        for flag in rules.flags:
            flags |= FILTER_FLAGS[flag]
        cached = _programs[key] = (compile_program(rules), flags)
    return cached
