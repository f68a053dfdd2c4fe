"""A local etcd member for the embedded default: started, supervised and stopped by the
manager's agent (Debian's /usr/bin/etcd as a child process).

- Data in the directory given (ORCH_ROOT/cluster/etcd for a manager), its log beside it
  (`<data dir>.log`).
- Client and peer URLs on the advertise address, both mutual TLS with certificates from the
  etcd CA (pki.py), which only managers hold: one certificate per member serves as its server,
  peer and health-check client certificate.
- `--max-txn-ops` raised (1,024: a plan commits in fewer transactions), auto-compaction on,
  a backend quota, and frequent watch progress notifications (a watcher learns it is up to
  date, and silence means a dead connection).
- Ready means healthy: the member answers a status request over mTLS and knows a leader; no
  sleeps. A member that exits is restarted with back-off; leaving `open_member` stops it
  (SIGTERM, then SIGKILL after 5 s, trio.run_process's own cancellation).
- Joining is etcd's runtime reconfiguration: `add_member` on an existing member (member add),
  then start the new one with `state="existing"` and the cluster list add_member returned.
  `remove_member` removes one by name.
"""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import trio

from orch.atomic import write_atomic
from orch.cluster import pki
from orch.cluster.etcd import EtcdClient, TLSFiles
from orch.errors import NotFound, OrchError, SystemFailure, Unavailable

ETCD = "/usr/bin/etcd"
START_TIMEOUT = 30.0  # a joining member may need to fetch a snapshot
RESTART_MIN, RESTART_MAX = 1.0, 30.0
STOP_TIMEOUT = 10.0
JOIN_TIMEOUT = 60.0  # etcd refuses a new voting member until every member has been connected for 5 s


@dataclass(frozen=True)
class MemberConfig:
    name: str
    data_dir: Path
    host: str  # the advertise address (an IP: it is in the certificate's SANs)
    tls: TLSFiles  # the etcd CA, and this member's certificate (server, peer and client)
    client_port: int = 2379
    peer_port: int = 2380
    initial_cluster: tuple[tuple[str, str], ...] = ()  # (name, peer URL) of every member, this one included
    state: Literal["new", "existing"] = "new"
    learner_id: int = 0  # the member id `add_learner` gave, while the member is a learner
    max_txn_ops: int = 1024
    max_request_bytes: int = 1572864
    quota_bytes: int = 2 << 30
    auto_compaction: str = "10m"  # periodic retention: history older than this is compacted away
    progress_notify: str = "5s"
    etcd: str = ETCD

    @property
    def client_url(self) -> str:
        return f"https://{_url_host(self.host)}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{_url_host(self.host)}:{self.peer_port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".pid")

    @property
    def log_file(self) -> Path:
        return self.data_dir.with_name(self.data_dir.name + ".log")

    def argv(self) -> list[str]:
        cluster = self.initial_cluster or ((self.name, self.peer_url),)
        t = self.tls
        return [
            self.etcd,
            f"--name={self.name}",
            f"--data-dir={self.data_dir}",
            f"--listen-client-urls={self.client_url}",
            f"--advertise-client-urls={self.client_url}",
            f"--listen-peer-urls={self.peer_url}",
            f"--initial-advertise-peer-urls={self.peer_url}",
            "--initial-cluster=" + ",".join(f"{n}={u}" for n, u in cluster),
            f"--initial-cluster-state={self.state}",
            f"--client-cert-auth", f"--trusted-ca-file={t.ca_file}", f"--cert-file={t.cert_file}", f"--key-file={t.key_file}",
            f"--peer-client-cert-auth", f"--peer-trusted-ca-file={t.ca_file}", f"--peer-cert-file={t.cert_file}",
            f"--peer-key-file={t.key_file}",
            f"--max-txn-ops={self.max_txn_ops}",
            f"--max-request-bytes={self.max_request_bytes}",
            f"--quota-backend-bytes={self.quota_bytes}",
            "--auto-compaction-mode=periodic", f"--auto-compaction-retention={self.auto_compaction}",
            f"--experimental-watch-progress-notify-interval={self.progress_notify}",
            "--logger=zap", "--log-outputs=stderr",
        ]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def write_member_tls(directory: Path, etcd_ca: pki.CA, name: str, hosts: Sequence[str]) -> TLSFiles:
    """Issue a member certificate from the etcd CA and write it (and the CA certificate) to
    `directory`, keys mode 0600. Blocking file I/O: call it through trio.to_thread."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    issued = etcd_ca.issue(name, client=True, server=True, hosts=(*hosts, "127.0.0.1", "localhost"), unit="etcd-member")
    files = TLSFiles(str(directory / "ca.pem"), str(directory / f"{name}.pem"), str(directory / f"{name}-key.pem"))
    _write(files.ca_file, etcd_ca.cert_pem, 0o644)
    _write(files.cert_file, issued.cert_pem, 0o644)
    _write(files.key_file, issued.key_pem, 0o600)
    return files


def _write(path: str, data: bytes, mode: int) -> None:
    write_atomic(path, data, mode=mode)


@dataclass
class LocalMember:
    """A running member, as `open_member` yields it."""

    config: MemberConfig
    process: trio.Process | None = None
    restarts: int = 0
    _restart: bool = True
    _cancel: trio.CancelScope = field(default_factory=trio.CancelScope)

    @property
    def client_url(self) -> str:
        return self.config.client_url

    def kill(self, *, restart: bool = True) -> None:
        """SIGKILL the process (a crash, for tests); the supervisor restarts it unless told not to."""
        self._restart = restart
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    def stop(self) -> None:
        """Stop supervising and terminate the process."""
        self._cancel.cancel()


def _end_stale(config: MemberConfig) -> None:
    """SIGKILL the member whose pid the pid file names, if it is still this data dir's etcd."""
    try:
        pid = int(config.pid_file.read_text())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return
    if f"--data-dir={config.data_dir}".encode() not in cmdline:
        return  # the pid was reused by something else
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        signal.pidfd_send_signal(fd, signal.SIGKILL)
        import select

        select.select([fd], [], [], 10)
    finally:
        os.close(fd)


async def _terminate(process: trio.Process) -> None:
    """SIGTERM, then SIGKILL: a member whose peers are gone may spend seconds trying to hand
    over raft leadership before it exits."""
    process.terminate()
    with trio.move_on_after(STOP_TIMEOUT):
        await process.wait()
        return
    process.kill()


def _log_tail(path: Path) -> str:
    """The last error etcd logged (zap writes one JSON object a line), or its last line."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    for line in reversed(lines[-20:]):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("error"):
            return f"{entry.get('msg', 'error')}: {entry['error']}"[:300]
    return lines[-1][:300] if lines else ""


async def wait_healthy(client: EtcdClient, process: trio.Process | None, log_file: Path | None,
                       *, name: str | None = None, member_id: int = 0, timeout: float = START_TIMEOUT) -> None:
    """Wait until the member at `client.endpoint` answers over TLS and knows a leader, failing
    at once if its process exits. With `name`, the member answering must be that one (not
    another process that holds the port)."""
    delay = 0.02
    last = "no answer yet"
    with trio.move_on_after(timeout):
        while True:
            if process is not None and process.returncode is not None:
                tail = await trio.to_thread.run_sync(_log_tail, log_file) if log_file else ""
                raise SystemFailure(f"etcd member at {client.endpoint} exited with code {process.returncode} while starting"
                                    + (f": {tail}" if tail else "") + (f" (log: {log_file})" if log_file else ""))
            try:
                status = await client.status()
                if status.leader and not status.errors:
                    if name is None:
                        return
                    if member_id:
                        # A learner serves no member list: its id, which member add gave, says who it is.
                        if status.member_id == member_id:
                            return
                        last = f"the member answering there is {status.member_id:x}, not {member_id:x}"
                        await trio.sleep(delay)
                        continue
                    answering = [m.name for m in await client.member_list() if m.id == status.member_id]
                    if answering == [name]:
                        return
                    last = f"the member answering there is {answering[0] if answering else 'unnamed'}, not {name}"
                else:
                    last = "no leader yet" if not status.leader else "; ".join(status.errors)
            except OrchError as err:
                last = err.message
            await trio.sleep(delay)
            delay = min(delay * 2, 0.25)
    raise SystemFailure(f"etcd member at {client.endpoint} is not healthy after {timeout:.0f}s: {last}"
                        + (f" (log: {log_file})" if log_file else ""))


async def run_member(config: MemberConfig, member: LocalMember | None = None, *,
                     task_status: trio.TaskStatus[LocalMember] = trio.TASK_STATUS_IGNORED) -> None:
    """Start the member, report it once healthy, and keep it running until cancelled."""
    member = member or LocalMember(config)
    await trio.to_thread.run_sync(partial(config.data_dir.mkdir, parents=True, exist_ok=True, mode=0o700))
    # A member left running by an agent that was killed (kill -9 does not reach its children)
    # holds the ports and the data: end it before starting ours.
    await trio.to_thread.run_sync(_end_stale, config)
    log = await trio.to_thread.run_sync(partial(open, config.log_file, "ab"))
    delay = RESTART_MIN
    try:
        async with EtcdClient([config.client_url], tls=config.tls, timeout=2.0) as client, trio.open_nursery() as nursery:
            started = False
            while True:
                member._restart = True
                process: trio.Process = await nursery.start(partial(
                    trio.run_process, config.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log, check=False,
                    deliver_cancel=_terminate))
                member.process = process
                await trio.to_thread.run_sync(config.pid_file.write_text, str(process.pid))
                if not started:
                    await wait_healthy(client, process, config.log_file, name=config.name, member_id=config.learner_id)
                    started = True
                    task_status.started(member)
                    began = trio.current_time()
                else:
                    began = trio.current_time()
                await process.wait()
                if not member._restart:
                    await trio.sleep_forever()
                # Restart with back-off; a member that ran a while starts again promptly.
                delay = RESTART_MIN if trio.current_time() - began > RESTART_MAX else min(delay * 2, RESTART_MAX)
                member.restarts += 1
                await trio.sleep(delay)
    finally:
        log.close()


@asynccontextmanager
async def open_member(config: MemberConfig) -> AsyncIterator[LocalMember]:
    """Run a member for the duration of the block; it is healthy when the block starts and
    stopped (and reaped) when it ends, also on error or cancellation. A member that cannot
    start raises its one-line error, not a group."""
    member = LocalMember(config)
    try:
        async with trio.open_nursery() as nursery:
            async def supervise(task_status: trio.TaskStatus[LocalMember]) -> None:
                with member._cancel:
                    await run_member(config, member, task_status=task_status)
            await nursery.start(supervise)
            try:
                yield member
            finally:
                member.stop()
    except BaseExceptionGroup as group:
        leaves = _leaves(group)
        if len(leaves) == 1 and isinstance(leaves[0], OrchError):
            raise leaves[0] from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


async def _member_add(client: EtcdClient, peer_url: str, *, learner: bool = False):
    delay = 0.2
    deadline = trio.current_time() + JOIN_TIMEOUT
    while True:
        try:
            return await client.member_add([peer_url], learner=learner)
        except Unavailable as err:
            # etcd's strict reconfiguration check: a member that joined less than 5 s ago does
            # not count yet, so adding the next one must wait a little.
            if "unhealthy cluster" not in err.message or trio.current_time() + delay > deadline:
                raise
        await trio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def add_member(client: EtcdClient, name: str, peer_url: str) -> tuple[tuple[str, str], ...]:
    """Announce a new member to the cluster `client` speaks to; the `initial_cluster` to start
    it with (state "existing")."""
    new, members = await _member_add(client, peer_url)
    cluster = []
    for m in members:
        member_name = name if m.id == new.id else m.name
        if not member_name:
            raise SystemFailure(f"etcd member {m.id:x} ({', '.join(m.peer_urls)}) was added but never started; "
                                f"start it or remove it before adding {name}")
        cluster.append((member_name, m.peer_urls[0]))
    return tuple(cluster)


async def add_learner(client: EtcdClient, name: str, peer_url: str) -> tuple[tuple[tuple[str, str], ...], int, tuple[str, ...]]:
    """Announce a new member as a learner: (its initial cluster, its member id, the client URLs
    of the voting members, which serve it until it is promoted). A learner that never starts
    can be removed without quorum trouble, which a voting member that never starts cannot."""
    new, members = await _member_add(client, peer_url, learner=True)
    cluster = []
    voters: list[str] = []
    for m in members:
        member_name = name if m.id == new.id else m.name
        if not member_name:
            raise SystemFailure(f"etcd member {m.id:x} ({', '.join(m.peer_urls)}) was added but never started; "
                                f"start it or remove it before adding {name}")
        cluster.append((member_name, m.peer_urls[0]))
        if m.id != new.id and not m.is_learner:
            voters.extend(m.client_urls)
    return tuple(cluster), new.id, tuple(voters)


async def promote_when_synced(client: EtcdClient, member_id: int, *, timeout: float = JOIN_TIMEOUT) -> None:
    """Promote a learner once etcd agrees it has caught up (it refuses until then)."""
    delay = 0.2
    deadline = trio.current_time() + timeout
    while True:
        try:
            await client.member_promote(member_id)
            return
        except OrchError as err:
            # etcd: "can only promote a learner member which is in sync with leader" until it
            # has caught up; "learner member not ready" while it starts.
            retry = any(text in err.message for text in ("in sync with leader", "not ready", "unhealthy"))
            if not retry or trio.current_time() + delay > deadline:
                raise
        await trio.sleep(delay)
        delay = min(delay * 2, 2.0)


async def remove_member(client: EtcdClient, name: str) -> None:
    members = await client.member_list()
    for m in members:
        if m.name == name:
            await client.member_remove(m.id)
            return
    raise NotFound(f"etcd has no member named {name} (members: {', '.join(m.name or hex(m.id) for m in members)})")
