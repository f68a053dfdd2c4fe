"""A lab of hosts on one machine: each host a network namespace (and, for its processes, a
UTS namespace with its own hostname) with its own ORCH_ROOT and ORCH_RUN, all joined by an
underlay bridge that lives in a "switch" namespace of its own.

The tests' cluster fixture and scripts/cluster build on it. The bridge is not in the
machine's own namespace on purpose: there, the machine's firewall (other nodes' nftables
tables, docker's iptables chains, br_netfilter) would see the lab's traffic. A host reaches
only the other hosts; nothing of the lab is reachable from the machine but through a host.

Entering a host uses setns(2) on its namespace file (`nsenter --net`), never `ip netns exec`:
that one mounts a fresh sysfs whose /sys/fs/cgroup is empty, and a node agent there would
find no cgroups (KERNEL-NOTES.md).

Everything the lab makes carries its prefix, so `Lab.sweep(prefix)` removes what a killed
run left behind before a new run starts.
"""

from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

NETNS_DIR = Path("/run/netns")


def _run(argv: list[str], check: bool = True, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"lab: {' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


@dataclass
class LabHost:
    lab: "Lab"
    index: int
    name: str
    netns: str
    addr: str
    base: Path
    agent_pid: int | None = field(default=None)

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def run_dir(self) -> Path:
        return self.base / "run"

    @property
    def switch_port(self) -> str:
        return f"{self.lab.prefix}p{self.index}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ, ORCH_ROOT=str(self.root), ORCH_RUN=str(self.run_dir),
                   ORCH_AUTH_FILE=str(self.base / "auth.json"), **self.lab.env)  # a host's own registry logins
        env.pop("ORCH_NET_PREFIX", None)  # a host's tables and bridges live in its own namespace
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_REPO), os.environ.get("PYTHONPATH", "")) if p)
        return env

    def argv(self, argv: list[str], *, uts: bool = False) -> list[str]:
        """`argv` run inside this host's network namespace (and a UTS namespace named after
        the host when `uts`: for long-lived processes that report their hostname)."""
        inner = ["nsenter", f"--net={NETNS_DIR / self.netns}"]
        if uts:
            return inner + ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', self.name, *argv]
        return inner + argv

    def orch(self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None,
             env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.argv([sys.executable, "-m", "orch", *args]), env=dict(self.env, **(env or {})),
                              capture_output=True, text=True, timeout=timeout, input=input, cwd=self.base)
        if check and proc.returncode != 0:
            raise AssertionError(f"[{self.name}] orch {' '.join(args)} exited {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(argv), env=kw.pop("env", self.env), **kw)

    # -- the node agent ----------------------------------------------------------------------
    def start_agent(self, timeout: float = 20.0) -> None:
        """Start this host's node agent (its supervisor follows) and wait for its socket."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        log = open(self.root / "agent.log", "ab")
        try:
            proc = subprocess.Popen(self.argv([sys.executable, "-m", "orch", "agent"], uts=True), env=self.env,
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd="/")
        finally:
            log.close()
        self.agent_pid = proc.pid
        sock = self.run_dir / "orch.sock"
        deadline = time.monotonic() + timeout
        while not _answers(sock):
            if proc.poll() is not None:
                raise RuntimeError(f"lab: the agent of {self.name} exited {proc.returncode}; see {self.root / 'agent.log'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"lab: the agent of {self.name} did not answer within {timeout:.0f} s")
            time.sleep(0.02)  # polling a socket that appears: nothing else to wait on

    def kill_agent(self, sig: int = signal.SIGKILL) -> None:
        pid = self._pid_file("agent.pid") or self.agent_pid
        if pid:
            _signal(pid, sig)
            if sig == signal.SIGKILL:
                _wait_gone(pid, 5.0)

    def stop(self) -> None:
        """Remove every container, stop the agent and the supervisor."""
        if _answers(self.run_dir / "orch.sock"):
            ids = self.orch("ps", "-aq", "--no-trunc", check=False, timeout=30).stdout.split()
            if ids:
                self.orch("rm", "-f", *ids, check=False, timeout=60)
        for pid in (self._pid_file("agent.pid") or self.agent_pid, self._supervisor_pid()):
            if pid:
                _signal(pid, signal.SIGTERM)
                if not _wait_gone(pid, 5.0):
                    _signal(pid, signal.SIGKILL)
                    _wait_gone(pid, 5.0)

    def _pid_file(self, name: str) -> int | None:
        try:
            return int((self.run_dir / name).read_text())
        except (OSError, ValueError):
            return None

    def _supervisor_pid(self) -> int | None:
        needle = f"--socket {self.run_dir / 'supervisor.sock'}"
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                except OSError:
                    continue
                if "orch.node.runtime.supervisor" in cmd and needle in cmd:
                    return int(entry.name)
        return None

    # -- the underlay ------------------------------------------------------------------------
    def cut(self) -> None:
        """Take this host off the underlay (its cable pulled): its processes go on."""
        _run(["ip", "-n", self.lab.switch_ns, "link", "set", self.switch_port, "down"])

    def heal(self) -> None:
        _run(["ip", "-n", self.lab.switch_ns, "link", "set", self.switch_port, "up"])


_REPO = Path(__file__).resolve().parents[2]


class Lab:
    """`size` hosts named h1..hN with addresses from `subnet` (.1, .2, ...) on one bridge."""

    def __init__(self, base: Path, size: int, *, prefix: str = "orchlab", subnet: str = "10.213.0.0/24",
                 env: dict[str, str] | None = None):
        if len(prefix) > 9:
            raise ValueError("lab prefix: at most 9 characters (link names are at most 15)")
        self.base = Path(base)
        self.prefix = prefix
        self.env = dict(env or {})  # more environment for every host's processes
        self.net = ipaddress.ip_network(subnet)
        self.switch_ns = f"{prefix}-sw"
        hosts = list(self.net.hosts())
        self.hosts = [LabHost(self, i, f"h{i}", f"{prefix}-h{i}", str(hosts[i - 1]), self.base / f"h{i}")
                      for i in range(1, size + 1)]

    def __getitem__(self, i: int) -> LabHost:
        return self.hosts[i]

    @property
    def client_addr(self) -> str:
        """The switch namespace's own address on the underlay (the subnet's last host address):
        a client outside every host, as a user's machine on the hosts' network would be."""
        return str(self.net.broadcast_address - 1)

    def client_argv(self, argv: list[str]) -> list[str]:
        """`argv` run as that client (in the switch namespace)."""
        return ["nsenter", f"--net={NETNS_DIR / self.switch_ns}", *argv]

    def up(self) -> "Lab":
        self.sweep(self.prefix)
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "lab.json").write_text(json.dumps({"prefix": self.prefix, "hosts": [h.name for h in self.hosts]}))
        _run(["ip", "netns", "add", self.switch_ns])
        bridge = f"{self.prefix}br"
        sw = ["ip", "-n", self.switch_ns]
        # The switch filters nothing, as a real one: br_netfilter (on by default in every new
        # namespace of a kernel that has it) would hand each frame it forwards to the IPv4
        # hooks, costing every packet between hosts about 4% of the overlay's throughput
        # (bench/overlay.py) that no host pays behind a real switch. The hosts keep the default.
        for key in ("iptables", "ip6tables", "arptables") if Path("/proc/sys/net/bridge").exists() else ():
            _run(["nsenter", f"--net={NETNS_DIR / self.switch_ns}", "sysctl", "-q", "-w", f"net.bridge.bridge-nf-call-{key}=0"])
        _run(sw + ["link", "add", bridge, "type", "bridge"])
        _run(sw + ["link", "set", bridge, "up"])
        _run(sw + ["link", "set", "lo", "up"])
        _run(sw + ["addr", "add", f"{self.client_addr}/{self.net.prefixlen}", "dev", bridge])
        for h in self.hosts:
            _run(["ip", "netns", "add", h.netns])
            _run(["ip", "link", "add", h.switch_port, "netns", self.switch_ns, "type", "veth",
                  "peer", "name", "eth0", "netns", h.netns])
            _run(sw + ["link", "set", h.switch_port, "master", bridge, "up"])
            hn = ["ip", "-n", h.netns]
            _run(hn + ["addr", "add", f"{h.addr}/{self.net.prefixlen}", "dev", "eth0"])
            _run(hn + ["link", "set", "eth0", "up"])
            _run(hn + ["link", "set", "lo", "up"])
            # Published ports and forwarding between a host's bridges and the underlay.
            _run(["nsenter", f"--net={NETNS_DIR / h.netns}", "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
        return self

    def down(self) -> None:
        # The hosts stop side by side: a manager's agent takes seconds to stop its etcd member.
        with concurrent.futures.ThreadPoolExecutor(max(len(self.hosts), 1)) as pool:
            for h, err in zip(self.hosts, pool.map(_stop_host, self.hosts)):
                if err is not None:
                    print(f"lab: stopping {h.name}: {err}", file=sys.stderr)
        self.sweep(self.prefix)
        for h in self.hosts:
            _unmount_under(h.base)
        shutil.rmtree(self.base, ignore_errors=True)

    @staticmethod
    def sweep(prefix: str) -> None:
        """Delete the namespaces of a lab with this prefix (and so their links and tables)."""
        if NETNS_DIR.exists():
            for entry in NETNS_DIR.iterdir():
                if entry.name.startswith(prefix + "-"):
                    _run(["ip", "netns", "del", entry.name], check=False)


def _stop_host(h: LabHost) -> Exception | None:
    try:
        h.stop()
    except Exception as err:  # one host's failure must not leave the others behind
        return err
    return None


def _unmount_under(base: Path) -> None:
    prefix = str(base) + "/"
    with open("/proc/self/mounts") as f:
        targets = [line.split()[1] for line in f if line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], capture_output=True)


def _answers(path: Path) -> bool:
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _wait_gone(pid: int, timeout: float) -> bool:
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        import select

        return bool(select.select([fd], [], [], timeout)[0])
    finally:
        os.close(fd)
