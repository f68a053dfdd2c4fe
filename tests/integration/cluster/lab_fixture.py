"""A lab of real hosts for the cluster's end-to-end tests: network namespaces joined by an
underlay bridge (orch.cluster.lab), each with its own ORCH_ROOT, ORCH_RUN and node agent, and
busybox:latest in its image store. Everything is removed at the end, also when a test fails:
containers, agents, supervisors, etcd members, namespaces, links, mounts, cgroup parents."""

from __future__ import annotations

import concurrent.futures
import fcntl
import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from orch.cluster.lab import Lab
from tests.integration.processes import remove_node_cgroups


def _bootstrap_once(base: Path) -> Path:
    """busybox:latest (the bootstrap's image, made once per machine) loaded once, in a root
    whose image store the hosts copy."""
    from orch.node.runtime.images import ImageStore
    from tests.integration.build.conftest import cached_base

    root = base / "seed"
    root.mkdir(parents=True)
    ImageStore(root).load(cached_base("busybox"))
    return root


def _copy_store(seed: Path, root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name in os.listdir(seed):
        src = seed / name
        if src.is_dir():
            shutil.copytree(src, root / name, symlinks=True)
        else:
            shutil.copy2(src, root / name)


def open_lab(size: int, prefix: str, env: dict[str, str] | None = None):
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, cgroups); run as root, as CI does")
    # A lab's names (namespaces, links) are fixed by its prefix, so that a killed run's are swept
    # by the next; two suites on one machine (worktrees side by side) take turns per prefix.
    lock = open(f"/run/lock/orch-lab-{prefix}.lock", "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    base = Path(tempfile.mkdtemp(prefix=f"orch-{prefix}-"))
    lab = Lab(base / "hosts", size, prefix=prefix, env=env)
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        seed = _bootstrap_once(base)
        lab.up()
        for h in lab.hosts:
            _copy_store(seed, h.root)
        # The agents start side by side: each takes its interpreter's and imports' half second.
        with concurrent.futures.ThreadPoolExecutor(len(lab.hosts)) as pool:
            list(pool.map(lambda h: h.start_agent(), lab.hosts))
        yield lab
    finally:
        try:
            lab.down()
        finally:
            for h in lab.hosts:
                remove_node_cgroups(h.root)
            shutil.rmtree(base, ignore_errors=True)
            signal.signal(signal.SIGTERM, previous)
            lock.close()  # releases the turn


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2, describe=None):
    """Poll `predicate` (a CLI command's output, across hosts: nothing to wait on but the
    answers) until it holds; an AssertionError naming `what` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    detail = f"\n{describe()}" if describe else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r}){detail}")


def tasks(host, *args: str) -> list[dict]:
    """`orch service ps` / `stack ps` rows as JSON objects."""
    out = host.orch(*args, "--format", "{{json .}}", "--no-trunc").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def containers(host, all: bool = False) -> list[dict]:
    out = host.orch("ps", *(["-a"] if all else []), "--format", "{{json .}}", "--no-trunc").stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]
