"""The values a container is made from: `Process`, `Resources`, `ContainerConfig`.

These are the runtime's input, agreed with the layer store and the agent (prompts/contracts):
frozen dataclasses that round-trip through JSON (`to_json` / `from_json`), so the agent can
persist a container's config.json and the supervisor can hand it to `spawn.start`.

`compute_process` is docker's rule for turning an image's config plus `docker run` flags into
the process to run. It is pure: no kernel, no files.
"""

from dataclasses import asdict, dataclass, field

from orch.errors import InvalidArgument
from orch.node.runtime.mount import Mount

# Docker's default capability set (moby `oci/caps/defaults.go`). As a mask: 0xa80425fb.
DEFAULT_CAPABILITIES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)

# The capability numbers of linux/capability.h.
CAPABILITY_NUMBERS = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
            "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE",
            "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
            "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_SYS_PACCT",
            "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE", "CAP_SYS_RESOURCE", "CAP_SYS_TIME",
            "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL",
            "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
        )
    )
}

# Docker's default masked and read-only paths (moby `oci/defaults.go`).
DEFAULT_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

DEFAULT_NAMESPACES = ("pid", "mount", "uts", "ipc", "net", "cgroup")
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def capability_mask(names) -> int:
    """The bit mask of capability names; an unknown name is the caller's mistake."""
    mask = 0
    for name in names:
        key = name.upper()
        if not key.startswith("CAP_"):
            key = "CAP_" + key
        if key not in CAPABILITY_NUMBERS:
            raise InvalidArgument(f"unknown capability {name!r}; use a name such as CAP_NET_ADMIN")
        mask |= 1 << CAPABILITY_NUMBERS[key]
    return mask


@dataclass(frozen=True)
class Process:
    args: tuple[str, ...]
    env: tuple[str, ...] = ()
    cwd: str = "/"
    user: str = ""
    additional_groups: tuple[str, ...] = ()
    terminal: bool = False
    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    no_new_privileges: bool = True
    # (name, soft, hard) as docker's --ulimit has them ("nofile", 1024, 2048); -1 is unlimited.
    rlimits: tuple[tuple[str, int, int], ...] = ()

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Process":
        return cls(
            args=tuple(data["args"]),
            env=tuple(data.get("env", ())),
            cwd=data.get("cwd", "/"),
            user=data.get("user", ""),
            additional_groups=tuple(data.get("additional_groups", ())),
            terminal=bool(data.get("terminal", False)),
            capabilities=tuple(data.get("capabilities", DEFAULT_CAPABILITIES)),
            no_new_privileges=bool(data.get("no_new_privileges", True)),
            rlimits=tuple((str(n), int(s), int(h)) for n, s, h in data.get("rlimits", ())),
        )


@dataclass(frozen=True)
class Resources:
    memory: int | None = None
    memory_swap: int | None = None
    cpus: float | None = None
    pids: int | None = None

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Resources":
        return cls(data.get("memory"), data.get("memory_swap"), data.get("cpus"), data.get("pids"))


@dataclass(frozen=True)
class ContainerConfig:
    id: str
    hostname: str
    rootfs: str
    rootfs_mounts: tuple[Mount, ...]
    mounts: tuple[Mount, ...]
    process: Process
    namespaces: tuple[str, ...] = DEFAULT_NAMESPACES
    netns_path: str | None = None
    cgroup_path: str = ""
    resources: Resources = field(default_factory=Resources)
    masked_paths: tuple[str, ...] = DEFAULT_MASKED_PATHS
    readonly_paths: tuple[str, ...] = DEFAULT_READONLY_PATHS
    readonly_rootfs: bool = False
    init: bool = False
    sysctls: dict = field(default_factory=dict)
    labels: dict = field(default_factory=dict)
    # "default" (docker's profile), "unconfined", or a profile's JSON text (seccomp.py).
    seccomp: str = "default"

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "hostname": self.hostname,
            "rootfs": self.rootfs,
            "rootfs_mounts": [m.to_json() for m in self.rootfs_mounts],
            "mounts": [m.to_json() for m in self.mounts],
            "process": self.process.to_json(),
            "namespaces": list(self.namespaces),
            "netns_path": self.netns_path,
            "cgroup_path": self.cgroup_path,
            "resources": self.resources.to_json(),
            "masked_paths": list(self.masked_paths),
            "readonly_paths": list(self.readonly_paths),
            "readonly_rootfs": self.readonly_rootfs,
            "init": self.init,
            "sysctls": dict(self.sysctls),
            "labels": dict(self.labels),
            "seccomp": self.seccomp,
        }

    @classmethod
    def from_json(cls, data: dict) -> "ContainerConfig":
        return cls(
            id=data["id"],
            hostname=data.get("hostname", ""),
            rootfs=data["rootfs"],
            rootfs_mounts=tuple(Mount.from_json(m) for m in data.get("rootfs_mounts", ())),
            mounts=tuple(Mount.from_json(m) for m in data.get("mounts", ())),
            process=Process.from_json(data["process"]),
            namespaces=tuple(data.get("namespaces", DEFAULT_NAMESPACES)),
            netns_path=data.get("netns_path"),
            cgroup_path=data.get("cgroup_path", ""),
            resources=Resources.from_json(data.get("resources", {})),
            masked_paths=tuple(data.get("masked_paths", DEFAULT_MASKED_PATHS)),
            readonly_paths=tuple(data.get("readonly_paths", DEFAULT_READONLY_PATHS)),
            readonly_rootfs=bool(data.get("readonly_rootfs", False)),
            init=bool(data.get("init", False)),
            sysctls=dict(data.get("sysctls", {})),
            labels=dict(data.get("labels", {})),
            seccomp=data.get("seccomp", "default"),
        )


def check_sysctls(config: "ContainerConfig") -> None:
    """Refuse sysctls that are not namespaced, or whose namespace the container does not own
    (the rules are security.check_sysctls')."""
    from orch.node.runtime.security import check_sysctls as check

    check(config.sysctls, namespaces=config.namespaces, own_netns=bool(config.netns_path))


def merge_env(base, overrides) -> list[str]:
    """Docker's ReplaceOrAppendEnvValues: a later K=V replaces an earlier K in place.

    An entry without "=" (docker's `-e NAME`) removes NAME: the CLI has already replaced the
    ones it found in its own environment with NAME=value.
    """
    result = list(base)
    for item in overrides:
        key = item.split("=", 1)[0]
        index = next((i for i, e in enumerate(result) if e.split("=", 1)[0] == key), None)
        if "=" not in item:
            if index is not None:
                del result[index]
        elif index is None:
            result.append(item)
        else:
            result[index] = item
    return result


def compute_process(
    image_config: dict,
    *,
    entrypoint: list[str] | None,
    command: list[str] | None,
    env: list[str],
    workdir: str | None,
    user: str | None,
    tty: bool,
    hostname: str = "",
) -> Process:
    """Combine an image's config with the run flags the way `docker run` does.

    `image_config` is the OCI image config (with its "config" key) or that inner dict.
    - `entrypoint` None keeps the image's Entrypoint; a list (even empty: `--entrypoint ""`)
      replaces it and also drops the image's Cmd, as docker does.
    - `command` None or empty keeps the image's Cmd (unless the entrypoint was overridden).
    - env: PATH (docker's default) and HOSTNAME, TERM=xterm with a tty, then the image's Env,
      then the `-e` values; a later value for a name replaces an earlier one.
    - the working dir: `-w`, else the image's WorkingDir, else "/".
    - the user: `-u`, else the image's User, else "" (root).
    """
    inner = image_config.get("config") if isinstance(image_config.get("config"), dict) else image_config
    inner = inner or {}
    if entrypoint is not None:
        args = list(entrypoint) + list(command or [])
    else:
        args = list(inner.get("Entrypoint") or []) + list(command or inner.get("Cmd") or [])
    if not args:
        raise InvalidArgument("no command specified: give a command after the image name, or use an image with a Cmd or Entrypoint")
    base = ["PATH=" + DEFAULT_PATH]
    if hostname:
        base.append("HOSTNAME=" + hostname)
    if tty:
        base.append("TERM=xterm")
    merged = merge_env(merge_env(base, inner.get("Env") or []), env)
    cwd = workdir or inner.get("WorkingDir") or "/"
    if not cwd.startswith("/"):
        raise InvalidArgument(f"working directory {cwd!r} is not absolute; use a path that starts with /")
    return Process(
        args=tuple(args),
        env=tuple(merged),
        cwd=cwd,
        user=user if user is not None else (inner.get("User") or ""),
        terminal=tty,
    )
