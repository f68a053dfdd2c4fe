"""Seccomp's driver: libseccomp (libseccomp.so.2 through ctypes) compiles the rules that
seccomp.py (pure) computes from docker's profile into a BPF program, cached per profile and
capability set. Kept apart so that the pure half, which the CLI and the agent's request code
use to check a profile, never loads ctypes.
"""

import ctypes
import hashlib
import os
from dataclasses import replace

from orch.errors import SystemFailure
from orch.node.runtime.seccomp import (DEFAULT, FILTER_FLAGS, NEWER_SYSCALLS, OPERATORS, UNCONFINED, Rules, action_value,
                                       compute_rule_groups, compute_rules, kernel_release, load_default_profile,
                                       native_arch, parse_profile)


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
