"""What the node says about itself in docker's words: the Engine API version it speaks, and
the build facts `orch version` and GET /version show on both sides (client and server are the
same installation). Standard library only."""

import os
import platform
import time

from orch import __version__

# The Engine API version whose shapes the agent's docker routes follow (dockerd 20.10's,
# the peer the tests compare with), and the oldest a client may ask for.
API_VERSION = "1.41"
MIN_API_VERSION = "1.24"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}


def arch() -> str:
    """GOARCH's name for this machine (docker says amd64, not x86_64)."""
    machine = platform.machine()
    return _ARCH.get(machine, machine)


def build_facts() -> dict:
    """Version, GitCommit, BuildTime and the interpreter (docker's GoVersion field) of this
    installation: the commit of the checkout it runs from, if it is one, and when its code
    was last written."""
    package = os.path.dirname(os.path.abspath(__file__))
    source = os.path.dirname(os.path.dirname(package))
    stamp = max(os.stat(os.path.join(package, name)).st_mtime for name in os.listdir(package) if name.endswith(".py"))
    return {"Version": __version__, "GitCommit": _git_commit(source), "GoVersion": "python" + platform.python_version(),
            "BuildTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000+00:00", time.gmtime(stamp)), "Os": "linux", "Arch": arch()}


def _git_commit(source: str) -> str:
    """The short commit of a git checkout at `source`, read from its files (no git process)."""
    git = os.path.join(source, ".git")
    try:
        if os.path.isfile(git):  # a worktree: "gitdir: PATH"
            with open(git) as f:
                git = f.read().split(":", 1)[1].strip()
        with open(os.path.join(git, "HEAD")) as f:
            head = f.read().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            for base in (git, _common_dir(git)):
                try:
                    with open(os.path.join(base, ref)) as f:
                        return f.read().strip()[:7]
                except OSError:
                    pass
                try:
                    with open(os.path.join(base, "packed-refs")) as f:
                        for line in f:
                            if line.rstrip().endswith(" " + ref):
                                return line[:7]
                except OSError:
                    pass
            return ""
        return head[:7]
    except (OSError, IndexError):
        return ""


def _common_dir(git: str) -> str:
    try:
        with open(os.path.join(git, "commondir")) as f:
            return os.path.normpath(os.path.join(git, f.read().strip()))
    except OSError:
        return git
