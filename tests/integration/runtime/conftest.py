"""Fixtures for the runtime's privileged tests: a busybox root file system and containers.

The busybox rootfs is built once per machine from Debian's busybox-static package (cached
under /var/cache/orch-test) and shown to `start()` as a one-lower overlay with an upper and
work dir in the test's tmp dir, as the layer store would. Every container a test starts is
killed, reaped and its cgroup removed, also when the test fails.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

import pytest

from orch.node.runtime.cgroups import Cgroups
from orch.node.runtime.config import ContainerConfig, Process, Resources
from orch.node.runtime.mount import Mount

CACHE = Path(os.environ.get("ORCH_TEST_CACHE", "/var/cache/orch-test"))
PR_SET_CHILD_SUBREAPER = 36

PASSWD = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\ntty:x:5:\nuser:x:1000:\nstaff:x:50:user\nnogroup:x:65534:\n"


def _busybox_deb() -> Path:
    debs = sorted(CACHE.glob("busybox-static_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", "busybox-static"], cwd=CACHE, check=True, capture_output=True)
        debs = sorted(CACHE.glob("busybox-static_*.deb"))
    return debs[-1]


@pytest.fixture(scope="session")
def busybox_rootfs() -> Path:
    """A directory with busybox, its applet links, /etc/passwd and /etc/group."""
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / "busybox-rootfs"
    if (rootfs / "bin" / "busybox").exists():
        return rootfs
    building = CACHE / f"busybox-rootfs.{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(_busybox_deb()), str(building)], check=True)
    busybox = building / "bin" / "busybox"
    applets = subprocess.run([str(busybox), "--list-full"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = building / applet
        if link.exists() or link.is_symlink():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to("/bin/busybox")
    for d in ("etc", "tmp", "root", "home/user", "proc", "sys", "dev"):
        (building / d).mkdir(parents=True, exist_ok=True)
    (building / "tmp").chmod(0o1777)
    os.chown(building / "home/user", 1000, 1000)
    (building / "etc/passwd").write_text(PASSWD)
    (building / "etc/group").write_text(GROUP)
    os.rename(building, rootfs)
    return rootfs


@pytest.fixture(scope="module", autouse=True)
def subreaper():
    """exec_in's process is orphaned by its intermediate: the caller, a child subreaper, reaps
    it. Only while these modules run: later tests' daemons (an agent a CLI started) must be
    init's orphans, not zombies of this process."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    yield
    libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


@pytest.fixture
def cgroups() -> Cgroups:
    return Cgroups()


class Containers:
    """Makes ContainerConfigs over the busybox rootfs and cleans up what was started."""

    def __init__(self, tmp: Path, rootfs: Path, cgroups: Cgroups):
        self.tmp = tmp
        self.rootfs = rootfs
        self.cgroups = cgroups
        self.configs: list[ContainerConfig] = []
        self.pids: list[int] = []

    def config(self, *args, lowers=None, resources=Resources(), namespaces=("pid", "mount", "uts", "ipc", "net", "cgroup"), **kwargs) -> ContainerConfig:
        cid = "t" + uuid.uuid4().hex[:12]
        base = self.tmp / cid
        for d in ("upper", "work", "rootfs"):
            (base / d).mkdir(parents=True)
        lowers = lowers or [str(self.rootfs)]
        overlay = Mount("overlay", "overlay", "/", (f"lowerdir={':'.join(lowers)}", f"upperdir={base}/upper", f"workdir={base}/work"))
        process_fields = {k: kwargs.pop(k) for k in list(kwargs) if k in Process.__dataclass_fields__}
        process_fields.setdefault("env", ("PATH=/usr/sbin:/usr/bin:/sbin:/bin",))
        process = Process(args=tuple(args), **process_fields)
        config = ContainerConfig(
            id=cid, hostname=kwargs.pop("hostname", cid), rootfs=str(base / "rootfs"), rootfs_mounts=(overlay,),
            mounts=tuple(kwargs.pop("mounts", ())), process=process, namespaces=namespaces,
            cgroup_path=f"orch-test/{cid}", resources=resources, **kwargs,
        )
        self.configs.append(config)
        return config

    def track(self, pid: int) -> int:
        self.pids.append(pid)
        return pid

    def wait(self, pid: int) -> int:
        """The exit code as a shell reports it: 128+signal when killed."""
        _, status = os.waitpid(pid, 0)
        self.pids.remove(pid)
        return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)

    def cleanup(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for config in self.configs:
            if any(d.exists() for d in self.cgroups.dirs(config.cgroup_path)):
                self.cgroups.kill_all(config.cgroup_path)
                self.cgroups.remove(config.cgroup_path)
        for d in self.cgroups.dirs("orch-test"):
            try:
                d.rmdir()
            except OSError:
                pass


@pytest.fixture
def containers(tmp_path, busybox_rootfs, cgroups):
    """Containers for one test; afterwards no mount of theirs may be in the host's table."""
    c = Containers(tmp_path, busybox_rootfs, cgroups)
    try:
        yield c
    finally:
        c.cleanup()
    # A container's mounts live and die in its own mount namespace. Every one of them is on a
    # path under tmp_path or the rootfs cache (before pivot_root), so a leak shows there. (The
    # whole table is not compared: other work on this machine mounts things meanwhile.)
    assert host_mounts_under(tmp_path, CACHE) == []


def host_mounts_under(*dirs) -> list[str]:
    """Lines of the host's mount table whose mount point is under one of `dirs`."""
    prefixes = tuple(str(d) for d in dirs)
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
            if line.split()[4].startswith(prefixes)]


@pytest.fixture(name="host_mounts_under")
def host_mounts_under_fixture():
    return host_mounts_under
