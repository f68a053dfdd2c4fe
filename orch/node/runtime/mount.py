"""`Mount`: the value the layer store, volumes and the runtime exchange.

As in containerd (`core/mount/mount.go`: "Mount is the lingua franca"), subsystems that decide
what a container's file system looks like return lists of `Mount` values; only the container
init performs them. A mount's `target` is relative to the container's root unless it is the
rootfs itself (target "/").
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Mount:
    type: str  # "overlay", "bind", "tmpfs", "proc", "sysfs", "devpts", "mqueue", ...
    source: str
    target: str
    options: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict:
        return {"type": self.type, "source": self.source, "target": self.target, "options": list(self.options)}

    @classmethod
    def from_json(cls, data: dict) -> "Mount":
        return cls(data["type"], data["source"], data["target"], tuple(data.get("options", ())))


@dataclass(frozen=True)
class CgroupView:
    """What a container sees at /sys/fs/cgroup: mounts (targets inside the container, in
    order) and symbolic links (path, target), as cgroups.Cgroups.view() computes them for the
    node's hierarchies and the container init performs them."""

    mounts: tuple[Mount, ...] = ()
    links: tuple[tuple[str, str], ...] = ()

    @classmethod
    def empty(cls) -> "CgroupView":
        return cls()
