"""Where a node keeps its files, and who may reach them.

`ORCH_ROOT` (default /var/lib/orch) holds what must survive a reboot: the content store,
unpacked layers, image references, containers' configs, upper dirs and logs, volumes.
`ORCH_RUN` (default /run/orch) holds sockets and what dies with the machine.
Tests point both at temporary directories.

Only root may reach either (CVE-2021-41091 is docker's hole of this kind). Containers leave
setuid-root programs and device nodes (mknod) in their upper dirs and volumes; were
ORCH_ROOT/snapshots/active/KEY/fs/x reachable by a local user, that user would run it as root.
So ORCH_ROOT, ORCH_RUN and every store directory directly under ORCH_ROOT are 0700 (what a
container sees is reached through its mount namespace, and its mounts are made by root, so no
other user ever needs to traverse the host's path), made so when created and, at every agent
start, when an older orch left them 0755 (`secure_store`). Docker keeps /var/lib/docker 0711
and its store directories 0710 or 0701 only so that the remapped root of `--userns-remap` can
traverse to its layers; orch has no such mode (an idmapped mount is made by root, as the
others are), so 0700 all the way. Below a store directory modes are left as they are: a
snapshot's fs/ is the container's /, a volume's _data its mount point, and init-layer a lower
layer, and their modes are what the container sees.
"""

from __future__ import annotations

import os

DEFAULT_ROOT = "/var/lib/orch"
DEFAULT_RUN = "/run/orch"


def run_file(name: str) -> str:
    """A file under ORCH_RUN, as a plain string: for `orch run`'s client, which must not import
    pathlib (with what it pulls in, about 4 ms)."""
    return os.path.join(os.environ.get("ORCH_RUN") or DEFAULT_RUN, name)


def root() -> Path:
    from pathlib import Path

    return Path(os.environ.get("ORCH_ROOT") or DEFAULT_ROOT)


def run_dir() -> Path:
    from pathlib import Path

    return Path(os.environ.get("ORCH_RUN") or DEFAULT_RUN)


def agent_socket() -> Path:
    return run_dir() / "orch.sock"


def supervisor_socket() -> Path:
    return run_dir() / "supervisor.sock"


PRIVATE = 0o700
# The directories directly under ORCH_ROOT that hold the node's state (never a container's
# view), and its logs.
STORE_DIRS = ("build-cache", "containers", "containers-trash", "content", "images", "networks", "projects",
              "snapshots", "tmp", "volumes")
LOGS = ("agent.log", "supervisor.log")


def private_dir(path) -> None:
    """mkdir -p `path`, each directory it makes 0700, and `path` itself made 0700 if it was
    looser. (os.makedirs gives the directories above the last the umask's mode.)"""
    path = os.fspath(path)
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in reversed(missing):
        try:
            os.mkdir(p, PRIVATE)
        except FileExistsError:
            pass
    if not missing:
        _tighten(path, PRIVATE)


def secure_store(root, run) -> list[str]:
    """At agent start: ORCH_ROOT and ORCH_RUN made (0700) or made 0700, the store directories
    under ORCH_ROOT 0700, the logs 0600 (made empty if missing, so whoever opens them next keeps
    that mode). Returns what was loosened before, for the agent's log."""
    fixed = []
    for d in (root, run):
        if not os.path.isdir(d):
            private_dir(d)
        elif _tighten(d, PRIVATE):
            fixed.append(os.fspath(d))
    for name in STORE_DIRS:
        d = os.path.join(root, name)
        if os.path.isdir(d) and _tighten(d, PRIVATE):
            fixed.append(d)
    for name in LOGS:
        f = os.path.join(root, name)
        os.close(os.open(f, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600))
        if _tighten(f, 0o600):
            fixed.append(f)
    return fixed


def _tighten(path, mode: int) -> bool:
    """Take group's and others' bits off `path` if it has any; True if it had."""
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, mode)
        return True
    return False
