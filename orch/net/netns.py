"""Persistent network namespaces: a file that keeps a namespace alive, as `ip netns add` makes.

Networking prepares a container's namespace before the container exists: `create(path)` makes a
fresh network namespace and bind-mounts it on `path` (ORCH_RUN/netns/<container id>), so it lives
without any process in it. The runtime later joins it (ContainerConfig.netns_path) and
`remove(path)` unmounts and deletes it; the kernel frees the namespace, and every veth end
still inside goes with it, once the last process that joined it has exited.

The namespace is made by a short-lived thread that calls unshare(CLONE_NEWNET): a network
namespace belongs to a thread, so the rest of the (possibly multi-threaded, trio) process is
untouched, and no fork of a threaded process is needed. The thread bind-mounts its own
/proc/thread-self/ns/net on the file and ends.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import socket
import threading
from pathlib import Path

from orch.errors import AlreadyExists, SystemFailure

_MS_BIND = 0x1000
_MNT_DETACH = 0x2
_NS_GET_NSTYPE = 0xB703  # ioctl on a namespace file: its CLONE_NEW* type

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def create(path: str | Path) -> None:
    """Make a new, empty network namespace (only `lo`, down) and pin it on `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o444)
    except FileExistsError:
        raise AlreadyExists(f"network namespace file {path} already exists; remove it first") from None
    os.close(fd)
    failure: list[BaseException] = []

    def make() -> None:
        try:
            os.unshare(os.CLONE_NEWNET)
            if _libc.mount(b"/proc/thread-self/ns/net", os.fsencode(path), None, _MS_BIND, None) != 0:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
        except BaseException as err:  # reported in the caller's thread below
            failure.append(err)

    worker = threading.Thread(target=make, name="orch-netns-create")
    worker.start()
    worker.join()
    if failure:
        path.unlink(missing_ok=True)
        raise SystemFailure(f"create network namespace {path}: unshare(CLONE_NEWNET) + bind mount (MS_BIND): {failure[0]}")


def remove(path: str | Path) -> None:
    """Unmount and delete a namespace file; a missing file is not an error (retries are safe)."""
    path = Path(path)
    if _libc.umount2(os.fsencode(path), _MNT_DETACH) != 0:
        err = ctypes.get_errno()
        # EINVAL: not a mount point (a crash between open and mount left a bare file).
        if err not in (errno.EINVAL, errno.ENOENT):
            raise SystemFailure(f"remove network namespace {path}: umount2(MNT_DETACH): {os.strerror(err)}")
    path.unlink(missing_ok=True)


def socket_in(path: str | Path, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside the namespace pinned at `path`.

    A socket stays in the namespace it was made in, so a short-lived thread joins the
    namespace (setns affects only that thread), makes the socket and ends. pyroute2 would fork
    a child for this, which is unsafe in a multi-threaded process such as the agent.
    """
    result: list = []

    def make() -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
            try:
                os.setns(fd, os.CLONE_NEWNET)
            finally:
                os.close(fd)
            result.append(socket.socket(family, kind, proto))
        except BaseException as err:  # reported in the caller's thread below
            result.append(err)

    worker = threading.Thread(target=make, name="orch-netns-socket")
    worker.start()
    worker.join()
    if isinstance(result[0], BaseException):
        raise SystemFailure(f"open a socket in network namespace {path}: setns(CLONE_NEWNET): {result[0]}")
    return result[0]


def is_namespace(path: str | Path) -> bool:
    """True when `path` is a pinned network namespace (a nsfs bind mount), not a plain file."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        # Namespace files all live on the one nsfs device; NS_GET_NSTYPE says which kind.
        if os.fstat(fd).st_dev != os.stat("/proc/self/ns/net").st_dev:
            return False
        return fcntl.ioctl(fd, _NS_GET_NSTYPE) == os.CLONE_NEWNET
    finally:
        os.close(fd)
