"""Peers the benchmarks start for themselves: a private dockerd.

dockerd normally rewrites the host's iptables and makes a docker0 bridge; the one started here
does neither (--iptables=false --ip-masq=false --bridge=none) and keeps everything under a
temporary directory (data root, exec root, socket, pid file), so it leaves the host as it was.
Containers it runs get `--network none` or `host`, which need no bridge; with `bridge=True` it
gets a bridge of its own (made here, a private /24, removed at the end), so that its default
network exists and `-p` publishes through docker-proxy (no iptables rules either way).
"""

import os
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def private_dockerd(archive: Path | None = None, *, bridge: bool = False):
    """Yield the environment (DOCKER_HOST) of a dockerd of our own, or a str saying why there
    is none; with `archive`, `docker load` it first. Stopped and removed on exit."""
    if not shutil.which("dockerd") or not shutil.which("docker"):
        yield "needs dockerd and the docker CLI (apt-get install docker.io)"
        return
    base = Path(tempfile.mkdtemp(prefix="orch-bench-docker-"))
    sock = base / "docker.sock"
    env = dict(os.environ, DOCKER_HOST=f"unix://{sock}", COMPOSE_INTERACTIVE_NO_CLI="1")
    log = open(base / "dockerd.log", "w")
    bridge_name = None
    network = ["--bridge=none"]
    if bridge:
        bridge_name, cidr = _make_bridge()
        # User-defined networks from a pool of their own; their bridges (br-<id>) go at the end.
        network = [f"--bridge={bridge_name}", f"--fixed-cidr={cidr}", "--default-address-pool", "base=10.214.0.0/16,size=24"]
    links_before = _bridges()
    daemon = subprocess.Popen(
        ["dockerd", "--data-root", str(base / "data"), "--exec-root", str(base / "exec"), "--pidfile", str(base / "docker.pid"),
         "--host", f"unix://{sock}", "--iptables=false", "--ip-masq=false", *network],
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
        if bridge_name is not None:
            subprocess.run(["ip", "link", "del", bridge_name], capture_output=True)
        for left in _bridges() - links_before:
            if left.startswith("br-"):  # a user-defined network of this dockerd
                subprocess.run(["ip", "link", "del", left], capture_output=True)


def _bridges() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line}


def _make_bridge() -> tuple[str, str]:
    """A bridge for a private dockerd: a name and a /24 of 10.213.0.0/16 that no link of the
    host uses yet."""
    import ipaddress
    import random

    used = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
    for _ in range(50):
        third = random.randrange(1, 255)
        cidr = f"10.213.{third}.0/24"
        if f"10.213.{third}." not in used:
            break
    name = "orchdk" + os.urandom(3).hex()
    gateway = next(ipaddress.ip_network(cidr).hosts())
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"{gateway}/24", "dev", name], check=True)
    subprocess.run(["ip", "link", "set", name, "up"], check=True)
    return name, cidr


def umount_under(base: Path) -> None:
    mounts = [line.split()[1] for line in open("/proc/self/mounts") if line.split()[1].startswith(str(base))]
    for m in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", m], capture_output=True)
