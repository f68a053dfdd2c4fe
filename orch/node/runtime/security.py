"""A container's privileges and limits: capabilities, sysctls, rlimits and a read-only root.

Two halves, kept in one module because they are one concept:

- Deciders, pure (no kernel, no files): docker's grammar and rules for `--cap-add`,
  `--cap-drop`, `--sysctl` and `--ulimit`, and the capability sets a process gets. The CLI, the
  agent and the compose translation call them, so every client gets the same one-line errors.
- Appliers, which the container init (init.py) calls at the right step, through a `Syscalls`
  object, so a unit test runs them against `RecordingSyscalls`.

The rules follow docker: moby's `oci/caps` (TweakCapabilities: ALL, drops, adds) and
`oci.SetCapabilities` (a non-root user gets only the bounding set), the CLI's
`EffectiveCapAddCapDrop` (a capability in both lists is added), the CLI's sysctl allow-list,
and go-units' ulimit grammar. The code is orch's own.
"""

import json
from dataclasses import dataclass

from orch.errors import InvalidArgument
from orch.node.runtime.config import CAPABILITY_NUMBERS, DEFAULT_CAPABILITIES, capability_mask

ALL = "ALL"

# -- capabilities -----------------------------------------------------------------------------


def normalize_capability(name: str) -> str:
    """docker's spelling: upper case with the CAP_ prefix ("net_admin" -> "CAP_NET_ADMIN"); ALL stays ALL."""
    key = name.strip().upper()
    if key == ALL or key.startswith("CAP_"):
        return key
    return "CAP_" + key


def check_capability(name: str, where: str) -> str:
    """The normalized name, or a one-line error naming `where` (a flag or a stack key)."""
    key = normalize_capability(name)
    if key != ALL and key not in CAPABILITY_NUMBERS:
        raise InvalidArgument(f"invalid {where} {name!r}: unknown capability {key}; use a name such as NET_ADMIN "
                              "(with or without CAP_, any case) or ALL")
    return key


def compute_cap_add_drop(add, drop, *, add_where: str = "--cap-add", drop_where: str = "--cap-drop") -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The effective (cap_add, cap_drop): normalized, checked, without duplicates, sorted; a
    capability in both lists is added, as the docker CLI has it."""
    adds = {check_capability(c, add_where) for c in add}
    drops = {check_capability(c, drop_where) for c in drop} - adds
    return tuple(sorted(adds)), tuple(sorted(drops))


def compute_capabilities(add, drop, *, available) -> tuple[str, ...]:
    """The capabilities a container's process holds (moby's TweakCapabilities).

    `add` and `drop` are normalized names (compute_cap_add_drop). `available` is what ALL
    means: the capabilities the node can hand out (known to its kernel and held by its
    processes). ALL in `add` gives every available one less the drops; ALL in `drop` keeps
    only the adds; otherwise docker's defaults, less the drops, plus the adds. A capability the
    node does not hold cannot be given: the kernel would refuse it when the container starts.
    """
    available = tuple(available)
    if ALL in add:
        caps = [c for c in available if c not in drop]
    elif ALL in drop:
        caps = list(add)
    else:
        caps = [c for c in DEFAULT_CAPABILITIES if c not in drop]
        caps += [c for c in add if c not in caps]
    missing = [c for c in caps if c not in available]
    if missing:
        raise InvalidArgument(f"capability {missing[0]} is not available on this node (its processes do not hold it, "
                              "so no container can get it); leave it out of cap_add")
    return tuple(sorted(caps, key=CAPABILITY_NUMBERS.__getitem__))


def capabilities_in_mask(mask: int, last_cap: int) -> tuple[str, ...]:
    """The names of the capabilities set in `mask`, up to this kernel's last one."""
    return tuple(name for name, number in sorted(CAPABILITY_NUMBERS.items(), key=lambda kv: kv[1])
                 if number <= last_cap and mask & (1 << number))


@dataclass(frozen=True)
class CapabilitySets:
    """The five capability sets of a process, as bit masks."""

    bounding: int
    effective: int
    permitted: int
    inheritable: int = 0
    ambient: int = 0


def compute_capability_sets(names, *, uid: int, last_cap: int) -> CapabilitySets:
    """docker's sets for a process holding `names` and running as `uid`.

    Root gets the list as its bounding, permitted and effective sets. Another user gets it as
    the bounding set only: execve gives a non-root program no capabilities either (moby's
    oci.SetCapabilities), and a setuid binary can regain at most the bounding set. Inheritable
    and ambient stay empty, as docker has them since CVE-2022-24769. Bits past the kernel's
    last capability are left out: capset would refuse them.
    """
    mask = capability_mask(names) & ((1 << (last_cap + 1)) - 1)
    if uid == 0:
        return CapabilitySets(bounding=mask, effective=mask, permitted=mask)
    return CapabilitySets(bounding=mask, effective=0, permitted=0)


def apply_capabilities(sys, sets: CapabilitySets, last_cap: int, switch_user) -> None:
    """runc's order: the bounding set while we still hold CAP_SETPCAP, then the user (setuid to
    a non-root user clears the permitted and effective sets), then capset, then ambient."""
    sys.drop_bounding(tuple(cap for cap in range(last_cap + 1) if not sets.bounding & (1 << cap)))
    switch_user()
    sys.capset(sets.effective, sets.permitted, sets.inheritable)
    if sets.ambient:
        sys.raise_ambient(tuple(cap for cap in range(last_cap + 1) if sets.ambient & (1 << cap)))


# -- sysctls ----------------------------------------------------------------------------------

# The sysctls the kernel keeps per IPC namespace. Everything else under kernel.* is the
# host's, and a write from a container (root in it is root on the host) would change the host.
IPC_SYSCTLS = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
               "kernel.shmmni", "kernel.shm_rmid_forced")
ALLOWED = "kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* and net.*"


def classify_sysctl(key: str) -> str | None:
    """The namespace a sysctl belongs to ("ipc" or "net"), or None for one that is not namespaced."""
    if key in IPC_SYSCTLS or key.startswith(("kernel.msg", "kernel.shm", "fs.mqueue.")):
        return "ipc"
    if key.startswith("net."):
        return "net"
    return None


def parse_sysctl(text: str, where: str = "--sysctl") -> tuple[str, str]:
    """`KEY=VALUE` into (key, value), refusing a sysctl that is not namespaced."""
    key, eq, value = text.partition("=")
    key = key.strip()
    if not eq or not key:
        raise InvalidArgument(f"invalid {where} {text!r}: use KEY=VALUE, e.g. net.ipv4.ip_forward=1")
    check_sysctl_key(key, f"{where} {text!r}")
    return key, value


def check_sysctl_key(key: str, where: str = "sysctls") -> str:
    namespace = classify_sysctl(key)
    if namespace is None:
        raise InvalidArgument(f"invalid {where}: sysctl {key!r} is not whitelisted: a container may set only the namespaced "
                              f"ones ({ALLOWED}); the others would change the host")
    return namespace


def check_sysctls(sysctls: dict, *, namespaces, own_netns: bool, where: str = "sysctls") -> None:
    """Refuse sysctls that are not namespaced, or whose namespace the container shares with the host."""
    for key in sysctls:
        namespace = check_sysctl_key(key, where)
        if namespace == "net" and "net" not in namespaces and not own_netns:
            raise InvalidArgument(f"invalid {where}: sysctl {key!r} is not allowed in the host network namespace (it would change "
                                  "the host's network); drop it or use a network other than host")
        if namespace == "ipc" and "ipc" not in namespaces:
            raise InvalidArgument(f"invalid {where}: sysctl {key!r} needs the container's own ipc namespace; it would change the host's")


def apply_sysctls(sys, sysctls: dict) -> None:
    """Write each sysctl under /proc/sys. Called inside the container's namespaces, after its
    own /proc is mounted (so net.* reaches its network namespace) and before /proc/sys is made
    read-only."""
    for key, value in sorted(sysctls.items()):
        sys.write_file("/proc/sys/" + key.replace(".", "/"), str(value))


# -- rlimits ----------------------------------------------------------------------------------

# go-units' ulimit names (docker leaves out "as": it breaks the container's own start-up).
ULIMIT_NAMES = ("core", "cpu", "data", "fsize", "locks", "memlock", "msgqueue", "nice", "nofile", "nproc", "rss", "rtprio",
                "rttime", "sigpending", "stack")
UNLIMITED = -1


def _limit_value(text: str, spec: str, where: str) -> int:
    word = text.strip()
    if word in ("unlimited", "-1"):
        return UNLIMITED
    if not word.isdigit():
        raise InvalidArgument(f"invalid {where} {spec!r}: {text!r} is not a number; use NAME=SOFT[:HARD] with numbers or -1 for unlimited")
    return int(word)


def _at_most(soft: int, hard: int) -> bool:
    return hard == UNLIMITED or (soft != UNLIMITED and soft <= hard)


def check_ulimit(name: str, soft: int, hard: int, where: str = "ulimits") -> tuple[str, int, int]:
    """(name, soft, hard) once the name is known and soft <= hard (-1 is unlimited)."""
    if name not in ULIMIT_NAMES:
        raise InvalidArgument(f"invalid {where}: unknown ulimit {name!r}; use one of {', '.join(ULIMIT_NAMES)}")
    for value in (soft, hard):
        if value < UNLIMITED:
            raise InvalidArgument(f"invalid {where}: {name} limit {value} is negative; use a number or -1 for unlimited")
    if not _at_most(soft, hard):
        raise InvalidArgument(f"invalid {where}: {name} soft limit must be less than or equal to the hard limit: {soft} > {hard}")
    return name, soft, hard


def parse_ulimit(text: str, where: str = "--ulimit") -> tuple[str, int, int]:
    """docker's `NAME=SOFT[:HARD]` (nofile=1024:2048); a single value sets both."""
    name, eq, values = text.partition("=")
    if not eq or not name or not values:
        raise InvalidArgument(f"invalid {where} {text!r}: use NAME=SOFT[:HARD], e.g. nofile=1024:2048")
    parts = values.split(":")
    if len(parts) > 2:
        raise InvalidArgument(f"invalid {where} {text!r}: too many values; use NAME=SOFT[:HARD]")
    soft = _limit_value(parts[0], text, where)
    hard = _limit_value(parts[1], text, where) if len(parts) == 2 else soft
    return check_ulimit(name.strip(), soft, hard, f"{where} {text!r}")


def apply_rlimits(sys, rlimits) -> None:
    """setrlimit for each (name, soft, hard), before execve and before capabilities are
    dropped. Raising a hard limit needs CAP_SYS_RESOURCE; the kernel's refusal is reported
    with the node's own hard limit."""
    for name, soft, hard in rlimits:
        sys.setrlimit(name, soft, hard)


# -- read-only root ---------------------------------------------------------------------------


def apply_readonly_rootfs(sys) -> None:
    """Remount the container's / read-only, after every writable mount is in place: /dev,
    /dev/shm, volumes, tmpfs and the /etc files are mounts of their own and keep their flags.
    MS_REMOUNT with MS_BIND changes only this mount's flags, not the overlay's superblock, so
    the upper dir stays writable for `orch cp` and commit from the host."""
    sys.mount("/", "/", "bind", ("MS_BIND", "MS_REMOUNT", "MS_RDONLY"))


# -- security options -------------------------------------------------------------------------

# strconv.ParseBool's words, which docker's no-new-privileges=VALUE accepts.
_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass(frozen=True)
class SecurityOptions:
    """docker's --security-opt, decided: the seccomp profile ("default", "unconfined" or a
    profile's JSON text) and no_new_privs (None: the node's default, which is on)."""

    seccomp: str = "default"
    no_new_privileges: bool | None = None

    def to_opts(self) -> list[str]:
        """docker's HostConfig.SecurityOpt for these options (a profile inline, as the docker
        CLI sends it)."""
        opts = [] if self.seccomp == "default" else [f"seccomp={self.seccomp}"]
        if self.no_new_privileges is not None:
            opts.append(f"no-new-privileges={'true' if self.no_new_privileges else 'false'}")
        return opts


def read_profile_file(path: str, cwd: str | None = None) -> str:
    """A seccomp profile file named by the user (relative to `cwd`), or a one-line error."""
    full = path if cwd is None or path.startswith("/") else f"{cwd.rstrip('/')}/{path}"
    try:
        with open(full, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        raise InvalidArgument(f"invalid --security-opt seccomp={path}: cannot read {full}: {e.strerror}; give a readable "
                              "profile file in docker's JSON format, or seccomp=unconfined") from None
    except UnicodeDecodeError:
        raise InvalidArgument(f"invalid --security-opt seccomp={path}: {full} is not text; give a profile in docker's JSON format") from None


def parse_security_opts(opts, where: str = "--security-opt", read_file=None) -> SecurityOptions:
    """docker's grammar (moby's parseSecurityOpt): `seccomp=unconfined|builtin|PROFILE`,
    `no-new-privileges[=BOOL]`; `label=...`, `apparmor=...` are refused, as this node has
    neither SELinux nor AppArmor. PROFILE is a profile's JSON text, or, with `read_file`
    (the CLI's side), a file name given to read_file, as the docker CLI reads it."""
    from orch.node.runtime import seccomp as seccomp_rules

    seccomp, nnp = seccomp_rules.DEFAULT, None
    for opt in opts:
        text = str(opt)
        if text == "no-new-privileges":
            nnp = True
            continue
        if text == "disable" or text.startswith(("label=", "label:", "apparmor=", "apparmor:")):
            kind = "AppArmor" if text.startswith("apparmor") else "SELinux"
            raise InvalidArgument(f"invalid {where} {text!r}: this node has no {kind}, so orch cannot apply {kind} options; "
                                  "leave it out (seccomp, capabilities and no-new-privileges are what orch enforces)")
        sep = "=" if "=" in text else ":" if ":" in text else ""
        key, _, value = text.partition(sep) if sep else (text, "", "")
        if key == "seccomp" and sep:
            if value == "unconfined":
                seccomp = seccomp_rules.UNCONFINED
            elif value in ("builtin", "default"):
                seccomp = seccomp_rules.DEFAULT
            elif value.lstrip().startswith("{"):
                profile = seccomp_rules.parse_profile(value, f"{where} seccomp profile")
                seccomp = json.dumps(profile, separators=(",", ":"), sort_keys=True)
            elif read_file is not None:
                profile = seccomp_rules.parse_profile(read_file(value), f"{where} seccomp profile {value}")
                seccomp = json.dumps(profile, separators=(",", ":"), sort_keys=True)
            else:
                raise InvalidArgument(f"invalid {where} {text!r}: give seccomp=unconfined, or a profile in docker's JSON format")
        elif key == "no-new-privileges" and sep:
            if value not in _TRUE + _FALSE:
                raise InvalidArgument(f"invalid {where} {text!r}: no-new-privileges takes true or false")
            nnp = value in _TRUE
        else:
            raise InvalidArgument(f"invalid {where} {text!r}: orch knows seccomp=unconfined|PROFILE.json and "
                                  "no-new-privileges[=true|false]")
    return SecurityOptions(seccomp, nnp)
