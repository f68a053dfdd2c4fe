"""The build's effects on the node: containers for RUN, writable roots for COPY, layers out.

Every step that changes files works on an *active snapshot* of the layer store on top of the
step's parent image: a fresh, empty upper directory over the parent's layers. Whatever the
step writes lands in that upper directory, which therefore IS the step's diff: it becomes the
new layer (`commit_layer`) and the snapshot is dropped.

- RUN: the snapshot's mounts go to the runtime's `spawn.start` as the container's root; the
  container has its own pid, mount, uts, ipc and cgroup namespaces, and the network its mode
  says (BuildKit's `RUN --network=`, `orch build --network`): "default" joins the namespace
  the agent made for the build on the node's default bridge (`BuildNetwork`: NAT to the
  outside, as docker's classic builder gives; the host's loopback is not reachable), "none"
  a namespace with only `lo`, "host" the host's. A resolv.conf is bind-mounted read-only
  (the build network's, or the host's with "host"); if the image had no such file the empty
  mount point the runtime creates is removed from the diff afterwards, as docker keeps it out
  of the image. A Builder used without the agent (its tests) and without a BuildNetwork has
  no bridge to attach to: "default" is "none" there.
- COPY, ADD, WORKDIR: the overlay is mounted on a temporary directory of the builder and the
  files are written through it, so overlayfs copies up the parents' metadata as it does for a
  container. The mount is undone in `finally`.

The calling process must reap the container's pid 1: it is made a child subreaper here.

Reproducibility: every layer is written with mtimes clamped to SOURCE_DATE_EPOCH, 0 when it is
not set, for RUN layers as for COPY layers (the files a RUN writes carry the build's wall clock
otherwise, and two builds would never agree). Entries are sorted and owners numeric (see
orch.node.runtime.layers.create_layer). So two builds from an empty cache give the same diff
IDs whenever the steps themselves write the same bytes.
"""

import ctypes
import os
import shutil
import stat
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from orch.errors import SystemFailure
from orch.node.runtime import layers
from orch.node.runtime.images import MEDIA_LAYER, Image
from orch.node.runtime.mount import Mount

PR_SET_CHILD_SUBREAPER = 36
MNT_DETACH = 2
RESOLV = "/etc/resolv.conf"


def layer_epoch() -> int:
    sde = layers.source_date_epoch()
    return 0 if sde is None else sde


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemFailure(f"prctl(PR_SET_CHILD_SUBREAPER): {os.strerror(ctypes.get_errno())}")


def image_value(config: dict, layer_descs: list[dict]) -> Image:
    """An Image value for a build state that is not (yet) in the store's list of images."""
    return Image(id="", repo_tags=(), repo_digests=(), config=config, manifest_digest="", layers=tuple(layer_descs), size=0)


def new_key() -> str:
    return "build-" + uuid.uuid4().hex[:24]


def build_cgroup_path(root: Path, key: str) -> str:
    """A RUN step's cgroup: under its node's own parent (cgroups.node_cgroup_parent), beside
    the node's containers, so two nodes on one host (a test's and a user's) never touch each
    other's."""
    from orch.node.runtime.cgroups import node_cgroup_parent

    return f"{node_cgroup_parent(root)}/{key}"


def commit_layer(store, key: str) -> tuple[dict, str, int]:
    """Turn the active snapshot's upper directory into a layer blob; drop the snapshot.

    Returns (layer descriptor {"digest", "mediaType", "size"}, diff ID, size)."""
    upper = store.upper_dir(key)
    try:
        with store.content.writer() as w:
            diff_id, size = layers.create_layer(upper, w, epoch=layer_epoch())
            blob = w.commit(diff_id)
    finally:
        store.remove_snapshot(key)
    return {"digest": blob, "mediaType": MEDIA_LAYER, "size": size}, diff_id, size


@contextmanager
def open_root(store, image: Image, *, writable: bool = True):
    """Mount the image's layers plus a fresh upper dir; yield (merged root path, snapshot key).

    With writable=False the snapshot is removed on exit (a read-only view for COPY --from);
    otherwise the caller commits it with commit_layer or removes it.
    """
    from orch.node.runtime.kernel import LinuxSyscalls, split_overlay_options

    key = new_key()
    mounts = store.prepare_rootfs(image, key)
    tmp = Path(tempfile.mkdtemp(prefix="root-", dir=store.tmp))
    target = tmp / "merged"
    target.mkdir()
    sys = LinuxSyscalls()
    mounted = False
    try:
        m = mounts[0]
        if m.type == "bind":
            root = Path(m.source)  # no layers below (FROM scratch): the upper dir is the root
        else:
            lowers, upper, work, rest = split_overlay_options(m.options)
            sys.mount_overlay(lowers, upper, work, str(target), tuple(rest))
            mounted = True
            root = target
        yield root, key
    except BaseException:
        if mounted:
            sys.umount2(str(target), MNT_DETACH)
            mounted = False
        store.remove_snapshot(key)
        raise
    finally:
        if mounted:
            sys.umount2(str(target), MNT_DETACH)
        shutil.rmtree(tmp, ignore_errors=True)
        if not writable:
            store.remove_snapshot(key)


def _in_layers(store, image: Image, rel: str) -> bool:
    """Whether `rel` exists in the image (looking through its layers top down)."""
    for chain in reversed(image.chain_ids):
        d = store.snapshots.committed_path(chain)
        p = d / rel
        try:
            st = os.lstat(p)
        except (FileNotFoundError, NotADirectoryError):
            continue
        return not (stat.S_ISCHR(st.st_mode) and st.st_rdev == 0)  # a whiteout hides it
    return False


def _drop_unchanged_dir(store, image: Image, key: str, rel: str) -> None:
    """Remove a directory the mount point made overlayfs copy up, if nothing else changed in it."""
    upper = store.upper_dir(key) / rel
    try:
        if any(upper.iterdir()):
            return
        st = os.lstat(upper)
    except (FileNotFoundError, NotADirectoryError):
        return
    for chain in reversed(image.chain_ids):
        try:
            low = os.lstat(store.snapshots.committed_path(chain) / rel)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if stat.S_ISDIR(low.st_mode) and (low.st_mode, low.st_uid, low.st_gid) == (st.st_mode, st.st_uid, st.st_gid):
            os.rmdir(upper)
        return


@dataclass(frozen=True)
class BuildNetwork:
    """The network namespace the agent made for a build's "default" RUN steps and the
    resolv.conf text they get (agent/networking.py `setup_build`)."""

    netns_path: str
    resolv_conf: str


class RunFailed(Exception):
    def __init__(self, exit_code: int, message: str = ""):
        super().__init__(message or f"exit code {exit_code}")
        self.exit_code = exit_code


def run(store, image: Image, argv: list[str], *, env: list[str], cwd: str, user: str, network: str, out, cgroups=None,
        build_network: BuildNetwork | None = None) -> str:
    """Run argv in a container of `image`; stream its output lines to `out`; return the
    snapshot key holding its changes (commit it with commit_layer). Raise RunFailed on a
    non-zero exit, after dropping the snapshot. `network` is "default", "none" or "host"."""
    from orch.node.runtime import spawn
    from orch.node.runtime.cgroups import Cgroups
    from orch.node.runtime.config import ContainerConfig, Process

    become_subreaper()
    cgroups = cgroups or Cgroups()
    key = new_key()
    mounts = store.prepare_rootfs(image, key)
    tmp = Path(tempfile.mkdtemp(prefix="run-", dir=store.tmp))
    (tmp / "rootfs").mkdir()
    if network == "default" and build_network is None:
        network = "none"
    extra = ()
    netns_path = None
    if network == "host" and os.path.exists(RESOLV):
        extra = (Mount("bind", os.path.realpath(RESOLV), RESOLV, ("rbind", "ro")),)
    elif network == "default":
        netns_path = build_network.netns_path
        (tmp / "resolv.conf").write_text(build_network.resolv_conf)
        extra = (Mount("bind", str(tmp / "resolv.conf"), RESOLV, ("rbind", "ro")),)
    namespaces = ("pid", "mount", "uts", "ipc", "cgroup") + (("net",) if network == "none" else ())
    config = ContainerConfig(
        id=key, hostname=key[6:18], rootfs=str(tmp / "rootfs"), rootfs_mounts=tuple(mounts), mounts=extra,
        # No no_new_privs: setuid programs (su, sudo) work in a build, as in docker's; the
        # capabilities are docker's defaults and seccomp its default profile all the same.
        process=Process(args=tuple(argv), env=tuple(env), cwd=cwd or "/", user=user or "", no_new_privileges=False),
        namespaces=namespaces, netns_path=netns_path, cgroup_path=build_cgroup_path(store.root, key),
    )
    r, w = os.pipe2(os.O_CLOEXEC)
    ok = False
    try:
        try:
            pid = spawn.start(config, spawn.Stdio(stdin=None, stdout=w, stderr=w))
        except Exception as err:
            code = getattr(err, "exit_code", 125)
            raise RunFailed(code, str(err)) from None
        finally:
            os.close(w)
        _pump(r, out)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            raise RunFailed(code if code > 0 else 128 - code)
        if extra and not _in_layers(store, image, RESOLV.lstrip("/")):
            leftover = store.upper_dir(key) / RESOLV.lstrip("/")
            if leftover.is_file() and not leftover.is_symlink() and leftover.stat().st_size == 0:
                leftover.unlink()
                _drop_unchanged_dir(store, image, key, "etc")
        ok = True
        return key
    finally:
        os.close(r)
        try:
            cgroups.kill_all(config.cgroup_path)
        except Exception:
            pass
        cgroups.remove(config.cgroup_path)
        shutil.rmtree(tmp, ignore_errors=True)
        if not ok:
            store.remove_snapshot(key)


def _pump(fd: int, out) -> None:
    """Copy the container's output to `out`, one line at a time, until every writer closed."""
    buf = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            out(line.decode("utf-8", "replace"))
    if buf:
        out(buf.decode("utf-8", "replace"))
