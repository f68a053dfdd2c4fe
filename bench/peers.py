"""Peers the benchmarks start for themselves: a private dockerd.

dockerd normally rewrites the host's iptables and makes a docker0 bridge; the one started here
does neither (--iptables=false --ip-masq=false --bridge=none) and keeps everything under a
temporary directory (data root, exec root, socket, pid file), so it leaves the host as it was.
Containers it runs get `--network none` or `host`, which need no bridge.
"""

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def private_dockerd(archive: Path | None = None):
    """Yield the environment (DOCKER_HOST) of a dockerd of our own, or a str saying why there
    is none; with `archive`, `docker load` it first. Stopped and removed on exit."""
    if not shutil.which("dockerd") or not shutil.which("docker"):
        yield "needs dockerd and the docker CLI (apt-get install docker.io)"
        return
    base = Path(tempfile.mkdtemp(prefix="orch-bench-docker-"))
    sock = base / "docker.sock"
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", COMPOSE_INTERACTIVE_NO_CLI="1")
    log = open(base / "dockerd.log", "w")
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"), "--pidfile", str(base / "docker.pid"),
         "--host", f"unix://{sock}", "--iptables=false", "--ip-masq=false", "--bridge=none"],
        stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "info"], env=env, capture_output=True).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                yield f"dockerd did not start (see {base / 'dockerd.log'})"
                return
            time.sleep(0.2)
        if archive is not None:
            subprocess.run(["docker", "load", "-i", str(archive)], env=env, check=True, capture_output=True)
        yield env
    finally:
        daemon.terminate()
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        umount_under(base)
        shutil.rmtree(base, ignore_errors=True)


def umount_under(base: Path) -> None:
    mounts = [line.split()[1] for line in open("/proc/self/mounts") if line.split()[1].startswith(str(base))]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
