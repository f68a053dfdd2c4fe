"""Where a node keeps its files.

`ORCH_ROOT` (default /var/lib/orch) holds what must survive a reboot: the content store,
unpacked layers, image references, containers' configs, upper dirs and logs, volumes.
`ORCH_RUN` (default /run/orch) holds sockets and what dies with the machine.
Tests point both at temporary directories.
"""

import os
from pathlib import Path


def root() -> Path:
    return Path(os.environ.get("ORCH_ROOT", "/var/lib/orch"))


def run_dir() -> Path:
    return Path(os.environ.get("ORCH_RUN", "/run/orch"))


def agent_socket() -> Path:
    return run_dir() / "orch.sock"


def supervisor_socket() -> Path:
    return run_dir() / "supervisor.sock"
