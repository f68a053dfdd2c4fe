"""Where a node keeps its files.

`ORCH_ROOT` (default /var/lib/orch) holds what must survive a reboot: the content store,
unpacked layers, image references, containers' configs, upper dirs and logs, volumes.
`ORCH_RUN` (default /run/orch) holds sockets and what dies with the machine.
Tests point both at temporary directories.
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
