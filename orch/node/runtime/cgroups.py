"""cgroups v1, v2 and hybrid: create a container's group with its limits, freeze, kill, remove.

`Cgroups(mountpoint)` looks at what is mounted there:
- v2 ("unified"): `cgroup.controllers` at the mount point. One directory per container; the
  controllers it needs are enabled in every ancestor's `cgroup.subtree_control`.
- v1: one hierarchy per controller (`memory/`, `cpu/`, `pids/`, `freezer/`, ...). A container has
  a directory of the same relative path in each hierarchy the node has.
- hybrid (this machine): v1 controllers plus a v2 hierarchy at `unified/` that holds no
  controller we use. The container's limits live in v1 and it does not join `unified/`:
  moving a process in a v2 hierarchy costs an RCU grace period (below). It inherits the
  supervisor's group there, a leaf of the node's own (`settle`), never the host's root.

Joining is the hot path of every start and exec. Writing a pid to `cgroup.procs` moves a whole
thread group, which takes the kernel's global threadgroup lock for writing: an RCU grace
period, 6-14 ms on this machine, per hierarchy whenever no other move happened in the last
few milliseconds. The process that joins is a freshly forked, single-threaded intermediate, so
it writes "0" (itself) to each v1 hierarchy's `tasks` file instead: moving one thread (the
calling one) needs no threadgroup lock (kernel 6.x `cgroup_procs_write_start`), and the whole
join costs well under a millisecond. Its children inherit the group. On a pure v2 host the
only file is `cgroup.procs`, and the grace period is paid (clone3's CLONE_INTO_CGROUP would
avoid it; not done yet).

The limits follow docker: memory with swap equal to memory unless told otherwise (so a
container that runs out is OOM-killed rather than swapped; docker itself allows as much swap
again as memory, which on hosts without swap, like this one, is the same thing), cpus as a CFS
quota over a 100 ms period, pids as pids.max, and on v1 docker's device allow-list.

A container joins EVERY v1 hierarchy the node has, not only the controllers whose limits it
sets (blkio, cpuset, the named systemd hierarchy, whatever is mounted): in its cgroup namespace
the root of a hierarchy it had not joined would be the supervisor's group, and with
CAP_SYS_ADMIN it could mount that hierarchy and write its release_agent (issue 10). A
controller mounted nowhere cannot be mounted from a non-initial cgroup namespace (the kernel
refuses to create a hierarchy there). `view()` says what the container mounts, read-only, at
/sys/fs/cgroup: its own groups, as runc does for v1 with a private cgroup namespace.

Each node keeps its groups under a parent of its own (`node_cgroup_parent`): `orch` for the
default root, `orch-<hash of ORCH_ROOT>` for any other, as its nftables table is named, so two
nodes on a host (a test's and the user's) never touch each other's groups.

The mount point is an argument, so unit tests point the class at a temporary directory that
imitates the interface files.
"""

import errno
import hashlib
import os
import signal
import time
from pathlib import Path

from orch.errors import SystemFailure
from orch.node.runtime.config import Resources
from orch.node.runtime.mount import CgroupView, Mount

DEFAULT_ROOT = "/var/lib/orch"
# Mount flags and superblock words of /proc/self/mountinfo that are not cgroup options.
_NOT_OPTIONS = ("rw", "ro")


def node_cgroup_parent(root) -> str:
    """The group under which the node at ORCH_ROOT `root` makes every container's group."""
    path = str(Path(root).resolve())
    if path == DEFAULT_ROOT:
        return "orch"
    return "orch-" + hashlib.sha256(path.encode()).hexdigest()[:8]


def _mount_options(mountinfo: str) -> dict[str, tuple[str, ...]]:
    """Mount point -> the cgroup v1 options of its superblock ("memory", "cpu,cpuacct",
    "name=systemd"), from /proc/self/mountinfo's text."""
    options = {}
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line:
            continue
        after = line.split(" - ", 1)[1].split()
        if len(after) >= 3 and after[0] == "cgroup":
            options[fields[4]] = tuple(o for o in after[2].split(",") if o not in _NOT_OPTIONS)
    return options

# What `orch stats` reads (cgroup v1: controller, file; v2: files of the one group).
STAT_FILES_V1 = (
    ("memory", "memory.usage_in_bytes"), ("memory", "memory.max_usage_in_bytes"), ("memory", "memory.limit_in_bytes"),
    ("memory", "memory.failcnt"), ("memory", "memory.stat"),
    ("cpuacct", "cpuacct.usage"), ("cpuacct", "cpuacct.usage_percpu"), ("cpuacct", "cpuacct.stat"), ("cpu", "cpu.stat"),
    ("pids", "pids.current"), ("pids", "pids.max"),
    ("blkio", "blkio.io_service_bytes_recursive"), ("blkio", "blkio.io_serviced_recursive"),
    ("blkio", "blkio.throttle.io_service_bytes_recursive"), ("blkio", "blkio.throttle.io_serviced_recursive"),
)
STAT_FILES_V2 = ("cpu.stat", "memory.current", "memory.max", "memory.peak", "memory.stat", "pids.current", "pids.max", "io.stat")

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids", "freezer", "devices", "cpuset")
V2_CONTROLLERS = ("memory", "cpu", "pids")
CFS_PERIOD_US = 100_000

# Docker's default device allow-list (moby `oci/devices_linux.go` and runc's AllowedDevices):
# mknod of anything (the device nodes in /dev are created by the init), read and write only
# of the harmless character devices and the pty slaves.
V1_DEVICE_RULES = (
    ("devices.deny", "a"),
    ("devices.allow", "c *:* m"),
    ("devices.allow", "b *:* m"),
    ("devices.allow", "c 1:3 rwm"),  # null
    ("devices.allow", "c 1:5 rwm"),  # zero
    ("devices.allow", "c 1:7 rwm"),  # full
    ("devices.allow", "c 1:8 rwm"),  # random
    ("devices.allow", "c 1:9 rwm"),  # urandom
    ("devices.allow", "c 5:0 rwm"),  # tty
    ("devices.allow", "c 5:1 rwm"),  # console
    ("devices.allow", "c 5:2 rwm"),  # ptmx
    ("devices.allow", "c 136:* rwm"),  # pty slaves
)


def compute_limits(resources: Resources, version: str) -> list[tuple[str, str, str]]:
    """The (controller, file, value) writes that set `resources`, in the order they must happen.

    v1 wants memory.limit_in_bytes before memory.memsw.limit_in_bytes (memsw may never be
    below the memory limit). `memory_swap` is docker's --memory-swap: memory plus swap, -1 for
    unlimited swap.
    """
    writes = []
    r = resources
    if version == "v1":
        if r.memory:
            writes.append(("memory", "memory.limit_in_bytes", str(r.memory)))
            swap = r.memory if r.memory_swap is None else r.memory_swap
            writes.append(("memory", "memory.memsw.limit_in_bytes", "-1" if swap == -1 else str(swap)))
        if r.cpus:
            writes.append(("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)))
            writes.append(("cpu", "cpu.cfs_quota_us", str(int(r.cpus * CFS_PERIOD_US))))
        if r.pids and r.pids > 0:  # docker: 0 or a negative limit is no limit
            writes.append(("pids", "pids.max", str(r.pids)))
    else:
        if r.memory:
            writes.append(("memory", "memory.max", str(r.memory)))
            swap = r.memory if r.memory_swap is None else r.memory_swap
            writes.append(("memory", "memory.swap.max", "max" if swap == -1 else str(max(swap - r.memory, 0))))
        if r.cpus:
            writes.append(("cpu", "cpu.max", f"{int(r.cpus * CFS_PERIOD_US)} {CFS_PERIOD_US}"))
        if r.pids and r.pids > 0:
            writes.append(("pids", "pids.max", str(r.pids)))
    return writes


def compute_update(old: Resources, new: Resources, version: str) -> list[tuple[str, str, str]]:
    """The writes that take a running container's group from `old` to `new` limits (`docker
    update`): only what changed, an absent limit written as the kernel's "unlimited".

    On v1 the kernel keeps memory.memsw.limit_in_bytes >= memory.limit_in_bytes at every
    moment, so a memory limit raised above the current memory+swap limit goes after the new
    memsw, and one lowered goes first."""
    unlimited = float("inf")

    def total(r: Resources) -> float:
        if not r.memory or r.memory_swap == -1:
            return unlimited
        return r.memory if r.memory_swap is None else r.memory_swap

    writes: list[tuple[str, str, str]] = []
    if (old.memory, old.memory_swap) != (new.memory, new.memory_swap):
        if version == "v1":
            mem = ("memory", "memory.limit_in_bytes", str(new.memory) if new.memory else "-1")
            memsw = ("memory", "memory.memsw.limit_in_bytes", "-1" if total(new) == unlimited else str(int(total(new))))
            writes += [memsw, mem] if (new.memory or unlimited) > total(old) else [mem, memsw]
        else:
            writes.append(("memory", "memory.max", str(new.memory) if new.memory else "max"))
            swap = "max" if total(new) == unlimited else str(max(int(total(new)) - new.memory, 0))
            writes.append(("memory", "memory.swap.max", swap))
    if old.cpus != new.cpus:
        if version == "v1":
            writes.append(("cpu", "cpu.cfs_period_us", str(CFS_PERIOD_US)))
            writes.append(("cpu", "cpu.cfs_quota_us", str(int(new.cpus * CFS_PERIOD_US)) if new.cpus else "-1"))
        else:
            writes.append(("cpu", "cpu.max", f"{int(new.cpus * CFS_PERIOD_US) if new.cpus else 'max'} {CFS_PERIOD_US}"))
    if old.pids != new.pids:
        writes.append(("pids", "pids.max", str(new.pids) if new.pids and new.pids > 0 else "max"))
    return writes


def _write(path: Path, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, value.encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise SystemFailure(f"cgroup: write {value!r} to {path}: {e.strerror}") from e


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


class Cgroups:
    def __init__(self, mountpoint: str | os.PathLike = "/sys/fs/cgroup"):
        self.root = Path(mountpoint)
        self._device_parents: dict[str, bool] = {}  # parent group -> its device rules are in place
        self._view: CgroupView | None = None
        if (self.root / "cgroup.controllers").exists():
            self.version = "v2"
            self.unified: Path | None = self.root
            self.v1: dict[str, Path] = {}
        else:
            self.version = "v1"
            unified = self.root / "unified"
            self.unified = unified if (unified / "cgroup.controllers").exists() else None
            # cpu and cpuacct are often one hierarchy with two names: keep one directory each.
            self.v1 = {}
            seen = set()
            for name in V1_CONTROLLERS:
                path = self.root / name
                if path.is_dir() and path.resolve() not in seen:
                    seen.add(path.resolve())
                    self.v1[name] = path
            # Every v1 hierarchy, controllers or not: the directories a container joins. A
            # symbolic link ("cpu" -> "cpu,cpuacct") names a hierarchy already listed.
            try:
                mountinfo = Path("/proc/self/mountinfo").read_text()
            except OSError:
                mountinfo = ""
            options = _mount_options(mountinfo)
            self.hierarchies: list[tuple[Path, tuple[str, ...]]] = []
            self.links: list[tuple[str, str]] = []
            for entry in sorted(self.root.iterdir()):
                if entry.is_symlink():
                    self.links.append((entry.name, os.readlink(entry)))
                elif entry.is_dir() and not (entry / "cgroup.controllers").exists():
                    self.hierarchies.append((entry, options.get(str(entry), tuple(entry.name.split(",")))))
            self._cpuset_parents: set[str] = set()

    @property
    def mode(self) -> str:
        if self.version == "v2":
            return "v2"
        return "hybrid" if self.unified is not None else "v1"

    def dirs(self, path: str) -> list[Path]:
        """Every directory that makes up the group `path` (relative, e.g. "orch/<id>")."""
        rel = path.strip("/")
        if self.version == "v2":
            return [self.root / rel]
        return [root / rel for root, _ in self.hierarchies]

    def view(self) -> CgroupView:
        """What a container mounts at /sys/fs/cgroup, inside its cgroup namespace (init.py):
        cgroup2 on a v2 host; on v1 a tmpfs with each hierarchy it joined, and the host's
        links between them. The v2 hierarchy of a hybrid host is left out: the container has
        no group of its own there (see the module's docstring on the cost of joining it)."""
        if self._view is None:
            self._view = self._compute_view()
        return self._view

    def settle(self, name: str) -> None:
        """On a hybrid host, move the calling process (the supervisor, once, at its start) into
        a leaf group `name` of the v2 hierarchy. Containers do not join that hierarchy (the
        module's docstring says why), so they inherit this group, and it is the root of their
        cgroup namespace there: a container given CAP_SYS_ADMIN that mounts cgroup2 sees the
        node's own group, not the host's root with docker's, podman's or systemd's groups."""
        if self.mode != "hybrid":
            return
        leaf = self.unified / name
        try:
            leaf.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SystemFailure(f"cgroup: create {leaf}: {e.strerror}") from e
        _write(leaf / "cgroup.procs", str(os.getpid()))

    def _compute_view(self) -> CgroupView:
        if self.version == "v2":
            return CgroupView((Mount("cgroup2", "cgroup", "/sys/fs/cgroup"),))
        mounts = [Mount("tmpfs", "tmpfs", "/sys/fs/cgroup", ("mode=755",))]
        names = set()
        for path, options in self.hierarchies:
            names.add(path.name)
            mounts.append(Mount("cgroup", "cgroup", "/sys/fs/cgroup/" + path.name, options))
        links = tuple(("/sys/fs/cgroup/" + name, target) for name, target in self.links if target in names)
        return CgroupView(tuple(mounts), links)

    def _controller_dir(self, controller: str, rel: str) -> Path:
        if self.version == "v2":
            return self.root / rel
        return self.v1[controller] / rel

    def create(self, path: str, resources: Resources) -> None:
        rel = path.strip("/")
        if self.version == "v2":
            self._enable_v2_controllers(rel)
        if self.version == "v1" and "cpuset" in self.v1:
            self._cpuset_parent(rel)
        for d in self.dirs(rel):
            try:
                d.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise SystemFailure(f"cgroup: create {d}: {e.strerror}") from e
        if self.version == "v1" and "devices" in self.v1:
            self._device_rules(rel)
        for controller, name, value in compute_limits(resources, self.version):
            if self.version == "v1" and controller not in self.v1:
                raise SystemFailure(f"cgroup: the {controller} controller is not mounted under {self.root}; cannot set {name}")
            directory = self._controller_dir(controller, rel)
            # Swap accounting can be off (no memory.memsw.* files): then there is no swap
            # limit to set, and without swap the memory limit alone OOM-kills.
            # (v1 shows the files at the hierarchy's root; v2 only in the new group itself.)
            probe = directory if self.version == "v2" else self._controller_root(controller)
            if name.startswith(("memory.memsw.", "memory.swap.")) and not (probe / name).exists():
                continue
            _write(directory / name, value)

    def update(self, path: str, old: Resources, new: Resources) -> None:
        """Change a live group's limits (compute_update's writes). A memory limit below what
        the group uses now is refused by the kernel (EBUSY), as docker reports it."""
        rel = path.strip("/")
        for controller, name, value in compute_update(old, new, self.version):
            if self.version == "v1" and controller not in self.v1:
                raise SystemFailure(f"cgroup: the {controller} controller is not mounted under {self.root}; cannot set {name}")
            probe = self._controller_dir(controller, rel) if self.version == "v2" else self._controller_root(controller)
            if name.startswith(("memory.memsw.", "memory.swap.")) and not (probe / name).exists():
                continue
            _write(self._controller_dir(controller, rel) / name, value)

    def _device_rules(self, rel: str) -> None:
        """docker's device allow-list for the group `rel`. A new v1 devices group copies its
        parent's list when it is made, so the rules are written once, on the parent (which
        holds no process), and each container's group starts with them: thirteen writes
        fewer on every start. A group directly under the root gets its own."""
        parent = rel.rpartition("/")[0]
        devices = self.v1["devices"]
        if parent and parent not in self._device_parents:
            wanted = {rule for name, rule in V1_DEVICE_RULES if name == "devices.allow"}
            ready = set(_read(devices / parent / "devices.list").splitlines()) == wanted
            if not ready:
                try:
                    for name, rule in V1_DEVICE_RULES:
                        _write(devices / parent / name, rule)
                    ready = True
                except SystemFailure:
                    # The kernel refuses to change a group's default ("a") while it has
                    # children: groups made before orch set the parent up. Each group then
                    # gets its own rules, until the next supervisor finds the parent empty.
                    pass
            self._device_parents[parent] = ready
        if not self._device_parents.get(parent):
            for name, rule in V1_DEVICE_RULES:
                _write(devices / rel / name, rule)

    def _cpuset_parent(self, rel: str) -> None:
        """A new v1 cpuset group has no CPUs and no memory nodes, and joining it fails
        (ENOSPC). Each ancestor gets its parent's, once, and `cgroup.clone_children` on the
        container's parent makes every new group start with a copy (kernel v1 cpuset)."""
        parent = rel.rpartition("/")[0]
        if not parent or parent in self._cpuset_parents:
            return
        above = self.v1["cpuset"]
        for part in parent.split("/"):
            here = above / part
            try:
                here.mkdir(exist_ok=True)
            except OSError as e:
                raise SystemFailure(f"cgroup: create {here}: {e.strerror}") from e
            for name in ("cpuset.cpus", "cpuset.mems"):
                value = _read(above / name).strip()
                if value and not _read(here / name).strip():
                    _write(here / name, value)
            above = here
        if _read(above / "cgroup.clone_children").strip() != "1":
            _write(above / "cgroup.clone_children", "1")
        self._cpuset_parents.add(parent)

    def _controller_root(self, controller: str) -> Path:
        return self.root if self.version == "v2" else self.v1[controller]

    def _enable_v2_controllers(self, rel: str) -> None:
        available = set(_read(self.root / "cgroup.controllers").split())
        wanted = " ".join("+" + c for c in V2_CONTROLLERS if c in available)
        if not wanted:
            return
        parent = self.root
        for part in rel.split("/")[:-1]:
            _write(parent / "cgroup.subtree_control", wanted)
            parent = parent / part
            parent.mkdir(exist_ok=True)
        _write(parent / "cgroup.subtree_control", wanted)

    def add(self, path: str, pid: int) -> None:
        """Move process `pid` (all its threads) into the group."""
        for d in self.dirs(path):
            _write(d / "cgroup.procs", str(pid))

    def join(self, path: str) -> None:
        """Move the calling thread into the group: the cheap move, for a single-threaded
        process that is about to fork the container (see the module's docstring)."""
        name = "cgroup.procs" if self.version == "v2" else "tasks"
        for d in self.dirs(path):
            _write(d / name, "0")

    def pids(self, path: str) -> list[int]:
        rel = path.strip("/")
        if self.version == "v2":
            d = self.root / rel
        else:
            d = (self.v1.get("pids") or self.v1.get("memory") or next(iter(self.v1.values()))) / rel
        return [int(line) for line in _read(d / "cgroup.procs").split()]

    def exists(self, path: str) -> bool:
        """Whether the group at `path` is there (in the freezer's hierarchy, or the v2 one)."""
        rel = path.strip("/")
        if self.version == "v2":
            return (self.root / rel).is_dir()
        base = self.v1.get("freezer") or next(iter(self.v1.values()), None)
        return base is not None and (base / rel).is_dir()

    def freeze(self, path: str) -> None:
        self._set_frozen(path, True)

    def thaw(self, path: str) -> None:
        self._set_frozen(path, False)

    def _set_frozen(self, path: str, frozen: bool) -> None:
        rel = path.strip("/")
        if self.version == "v2":
            d = self.root / rel
            _write(d / "cgroup.freeze", "1" if frozen else "0")
            done = lambda: ("frozen 1" in _read(d / "cgroup.events")) == frozen  # noqa: E731
        else:
            if "freezer" not in self.v1:
                raise SystemFailure(f"cgroup: no freezer controller under {self.root}; cannot pause")
            d = self.v1["freezer"] / rel
            want = "FROZEN" if frozen else "THAWED"
            _write(d / "freezer.state", want)
            done = lambda: _read(d / "freezer.state").strip() == want  # noqa: E731
        # Freezing is asynchronous: the state reads FREEZING until every task has stopped.
        # Writing FROZEN again nudges tasks that were forking when the first write landed.
        deadline = time.monotonic() + 5
        delay = 0.0005
        while not done():
            if time.monotonic() > deadline:
                raise SystemFailure(f"cgroup: {path} did not become {'frozen' if frozen else 'thawed'} within 5 s")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            if self.version == "v1" and frozen:
                _write(d / "freezer.state", "FROZEN")

    def stat_files(self, path: str) -> dict[str, str]:
        """The texts of the files a container's resource usage is read from (`orch stats`):
        file name -> its text ("" when the kernel has no such file); {} when the group does
        not exist (the container is not running). Parsed by the agent's statsview.py."""
        rel = path.strip("/")
        if self.version == "v2":
            d = self.root / rel
            if not d.is_dir():
                return {}
            return {name: _read(d / name) for name in STAT_FILES_V2}
        found: dict[str, str] = {}
        for controller, name in STAT_FILES_V1:
            base = self.v1.get(controller)
            if base is None:
                base = next((h for h, options in self.hierarchies if controller in options), None)
            if base is None:
                continue
            if controller == "memory" and not (base / rel).is_dir():
                return {}
            found[name] = _read(base / rel / name)
        return found

    def oom_killed(self, path: str) -> bool:
        rel = path.strip("/")
        if self.version == "v2":
            text = _read(self.root / rel / "memory.events")
        else:
            if "memory" not in self.v1:
                return False
            text = _read(self.v1["memory"] / rel / "memory.oom_control")
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value) > 0
        return False

    def kill_all(self, path: str, sig: int = signal.SIGKILL) -> None:
        """Signal every process in the group. SIGKILL freezes first, so no fork escapes.

        A container's pid 1 dies only once every process of its pid namespace is reaped,
        including processes started by exec_in, whose parent is the caller: the caller must
        keep reaping all its children (a subreaper loop) for pid 1's exit to be seen.
        """
        rel = path.strip("/")
        if self.version == "v2" and sig == signal.SIGKILL and (self.root / rel / "cgroup.kill").exists():
            _write(self.root / rel / "cgroup.kill", "1")
            return
        freeze = sig == signal.SIGKILL and (self.version == "v2" or "freezer" in self.v1)
        if freeze:
            self.freeze(rel)
        try:
            self._signal(self.pids(rel), sig)
        finally:
            if freeze:
                self.thaw(rel)

    def is_frozen(self, path: str) -> bool:
        rel = path.strip("/")
        if self.version == "v2":
            return "frozen 1" in _read(self.root / rel / "cgroup.events")
        if "freezer" not in self.v1:
            return False
        return _read(self.v1["freezer"] / rel / "freezer.state").strip() in ("FROZEN", "FREEZING")

    @staticmethod
    def _signal(pids, sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def remove(self, path: str, timeout: float = 2.0) -> None:
        """Remove the group's directories, retrying while its last processes exit."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        for d in self.dirs(path):
            while True:
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    if e.errno not in (errno.EBUSY, errno.ENOTEMPTY) or time.monotonic() > deadline:
                        raise SystemFailure(f"cgroup: remove {d}: {e.strerror}; processes still in it: {_read(d / 'cgroup.procs').split()}") from e
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)

