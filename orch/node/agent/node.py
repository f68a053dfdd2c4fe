"""The node's state holder: container records, the image store, the supervisor connection.

The agent is a trio program and this object lives in its one trio thread: records are read
and changed only there, so no locks are needed; blocking work (image resolution, rootfs
preparation, supervisor requests, file removal) runs in `trio.to_thread.run_sync`.

Truth is split in two, on purpose:
- records (state.json, written atomically by state.py; typed and versioned in records.py:
  docker's inspect view, and orch's private part as `rec.orch`) hold what the user asked for
  and the last state the agent saw;
- the supervisor holds what runs now, and writes exit.json when a container exits.
On start the agent loads every record, subscribes to the supervisor's events, asks it what
runs, and reconciles (`adopt`): so `kill -9` of the agent at any moment loses nothing.

Every state change goes through lifecycle.transition, so a forbidden operation is a Conflict
with the message the user sees.
"""

import os
import secrets
import signal as signals
import subprocess
import sys
import time
from pathlib import Path

import trio

from orch.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, OrchError, SystemFailure, Unavailable
from orch.node.agent import names as naming
from orch.node.agent import supervision
from orch.node.agent.records import ContainerRecord
from orch.node.agent.state import ContainerStore
from orch.node.runtime import superproto as proto
from orch.node.runtime.containerlog import rfc3339_nano
from orch.node.runtime.lifecycle import transition

ZERO_TIME = "0001-01-01T00:00:00Z"


class Node:
    def __init__(self, root: Path, run_dir: Path, images=None):
        self.root, self.run_dir = Path(root), Path(run_dir)
        self.store = ContainerStore(self.root)
        self.images = images  # None only in unit tests of the events, which make no containers
        self.records: dict[str, ContainerRecord] = {}
        self.reserved: set[str] = set()  # names of containers being created
        self.busy: set[str] = set()  # stopped containers whose overlay a file worker has mounted (routes_archive)
        self.sup_path = str(self.run_dir / "supervisor.sock")
        self.changed = trio.Event()
        self.nursery: trio.Nursery | None = None
        self._cgroups = None
        # Supervision's tasks (supervision.py), by container id: health probes and pending
        # restarts, each (cancel scope, the pid of the run it belongs to).
        self.health_tasks: dict[str, tuple] = {}
        self.restart_tasks: dict[str, tuple] = {}
        # Networks (agent/networking.py) and volumes (runtime/volumes.py); set by app.serve.
        self.net = None
        self.volumes = None
        from orch.node.agent.events import EventBus
        from orch.node.agent.pipes import HeldPipes

        self.pipes = HeldPipes()  # copies of the containers' pipes, for a restarted supervisor
        self.events = EventBus()  # docker's events (events.py), published where things happen
        # Cluster membership (orch.cluster.node.ClusterNode); set by app.serve.
        self.cluster = None

    # -- records ------------------------------------------------------------------------------
    def load(self) -> None:
        records, incomplete = self.store.load_all()
        for cid in incomplete:  # a crash inside `create`: nothing was ever started
            self._discard(cid)
        for rec in records:
            self.records[rec["Id"]] = rec
        self.collect_garbage()

    def collect_garbage(self) -> None:
        """What a crash in the middle of a removal leaves: trashed directories and container
        snapshots (keyed by a container id) without a container record."""
        self.store.empty_trash()
        if self.images is None:
            return
        try:
            keys = self.images.snapshots.list_active()
        except (AttributeError, OSError):
            return
        for key in keys:
            if len(key) == 64 and key not in self.records and all(c in "0123456789abcdef" for c in key):
                try:
                    self.images.remove_snapshot(key)
                except (OrchError, OSError):
                    pass

    def save(self, rec: dict, durable: bool = True) -> None:
        """Persist a record. Changes that come from supervisor events are saved without fsync
        (durable=False): after a power loss nothing runs and adoption derives them again."""
        self.store.save(rec, durable)
        self.notify()

    def notify(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    async def wait_until(self, predicate, timeout: float | None = None) -> bool:
        """Wait until predicate() holds (re-checked at every change); False on timeout."""
        with trio.move_on_after(timeout if timeout is not None else float("inf")):
            while not predicate():
                await self.changed.wait()
            return True
        return False

    def get(self, ref: str) -> dict:
        """A container by full id, name (with or without '/'), or unique id prefix."""
        if ref in self.records:
            return self.records[ref]
        name = ref.lstrip("/")
        for rec in self.records.values():
            if rec["Name"] == "/" + name:
                return rec
        matches = [rec for cid, rec in self.records.items() if ref and cid.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            raise InvalidArgument(f"multiple containers found with id prefix {ref}; give more characters")
        raise NotFound(f"no such container: {ref}")

    def display(self, rec: dict) -> str:
        return rec["Name"].lstrip("/")

    def change(self, rec: dict, op: str) -> str:
        if op in ("start", "restart") and rec["Id"] in self.busy:
            raise Conflict(f"container {self.display(rec)} is being copied to or from; start it when the copy is done")
        return transition(rec["State"]["Status"], op, self.display(rec))

    async def cluster_member(self):
        """The node's orch.cluster.node.ClusterNode, made and started on first use."""
        if self.cluster is None:
            from orch.cluster.node import ClusterNode

            member = ClusterNode(self.root, self)
            await self.nursery.start(member.run)
            self.cluster = member
        return self.cluster

    # -- the supervisor -------------------------------------------------------------------------
    async def call(self, msg: dict, fds=()) -> dict:
        return await trio.to_thread.run_sync(proto.call, self.sup_path, msg, fds)

    def ensure_supervisor(self, extra_args=()) -> None:
        """Start the node supervisor if none answers (setsid: it outlives the agent)."""
        try:
            proto.call(self.sup_path, {"op": "ping"}, timeout=2.0)
            return
        except OrchError:
            pass
        log = open(self.root / "supervisor.log", "ab")
        try:
            subprocess.Popen(
                [sys.executable, "-m", "orch.node.runtime.supervisor", "--socket", self.sup_path, *extra_args],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, cwd="/", close_fds=True,
            )
        finally:
            log.close()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                proto.call(self.sup_path, {"op": "ping"}, timeout=2.0)
                return
            except OrchError:
                time.sleep(0.02)
        raise Unavailable(f"the node supervisor did not come up at {self.sup_path}; see {self.root / 'supervisor.log'}")

    async def watch_supervisor(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Subscribe to the supervisor's events, adopt what runs, then apply events forever.
        If the supervisor goes away it is started again and adoption runs again."""
        first = True
        while True:
            await trio.to_thread.run_sync(self.ensure_supervisor)
            sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_SEQPACKET)
            try:
                await sock.connect(self.sup_path)
                await sock.send(proto.encode({"op": "subscribe"}))
                proto.raise_for(proto.decode(await sock.recv(proto.MAX_MESSAGE)), "subscribe")
                await self.adopt()
                supervision.after_adopt(self, first=first)
                if first:
                    task_status.started()
                    first = False
                while True:
                    data, ancdata, _, _ = await sock.recvmsg(proto.MAX_MESSAGE, trio.socket.CMSG_LEN(proto.MAX_FDS * 4),
                                                             trio.socket.MSG_CMSG_CLOEXEC)
                    if not data:
                        break
                    self.apply_event(proto.decode(data), proto.fds_of(ancdata))
            except OSError as err:
                print(f"agent: lost the supervisor ({err}); reconnecting", file=sys.stderr, flush=True)
            finally:
                sock.close()
            await trio.sleep(0.1)

    async def adopt(self) -> None:
        running = {c["id"]: c for c in (await self.call({"op": "list"}))["containers"]}
        for cid, rec in list(self.records.items()):
            state = rec["State"]
            if cid in running:
                if state["Status"] not in ("running", "paused", "removing"):
                    self.apply_event(dict(running[cid], event="started"))
                continue
            exit_record = self.store.read_exit(cid)
            if exit_record and exit_record.get("pid") != rec.orch.exited_pid:
                # It ran and exited while the agent was away, perhaps started by an attached
                # CLI before the agent saw the start: the supervisor's record says how it ended.
                self.apply_event(dict(exit_record, event="exited", id=cid))
            elif state["Status"] in ("running", "paused", "removing"):
                # Running as far as the record knows, unknown to this supervisor: a previous one
                # started it and died. The supervisor adopts it if its pid 1 lives (supervisor.py).
                if await self._adopt_one(rec):
                    continue
                exit_record = {
                    "exit_code": 255, "finished_at": rfc3339_nano(), "oom_killed": False, "pid": state.get("Pid", 0),
                    "error": "the container exited while no supervisor watched it: its exit status is unknown (255, as docker reports it)",
                }
                self.apply_event(dict(exit_record, event="exited", id=cid))
        if self.net is not None:
            # Networks of containers that ended while no agent was watching (kill -9 of both).
            keep = {cid for cid, r in self.records.items() if r["State"]["Status"] in ("running", "paused", "created")}
            await trio.to_thread.run_sync(self.net.reconcile, keep)

    async def _adopt_one(self, rec: dict) -> bool:
        """Ask the supervisor to adopt `rec`, with the agent's copies of its pipes (pipes.py)."""
        cid, state = rec["Id"], rec["State"]
        roles, fds = self.pipes.get(cid)
        msg = {"op": "adopt", "id": cid, "config": self.store.config_path(cid), "pid": state.get("Pid", 0),
               "pid_start": rec.orch.pid_start, "started_at": state.get("StartedAt"), "log": rec.orch.log.model_dump(), "pipes": roles}
        try:
            answer = await self.call(msg, fds)
        except NotFound:
            self.pipes.release(cid)
            return False
        except Unavailable as err:
            raise OSError(str(err)) from err  # the supervisor went away again: reconnect and retry
        except OrchError as err:
            print(f"agent: adopting {cid[:12]}: {err}", file=sys.stderr, flush=True)
            return False
        if answer["pid"] != state.get("Pid"):
            state["Pid"] = answer["pid"]
            self.save(rec, durable=False)
        return True

    def apply_event(self, ev: dict, fds=()) -> None:
        rec = self.records.get(ev.get("id", ""))
        if rec is None or ev["event"] not in ("started", "pipes"):
            for fd in fds:
                os.close(fd)
        if rec is None:
            return
        state, kind = rec["State"], ev["event"]
        if kind == "pipes":
            self.pipes.hold(rec["Id"], ev.get("pipes"), fds)
            return
        if kind == "started":
            if fds:
                self.pipes.hold(rec["Id"], ev.get("pipes"), fds)
            if rec.orch.exited_pid == ev["pid"] or state["Status"] == "removing":
                return
            rec.orch.pid_start = ev.get("pid_start")
            state.update(Status="running", Running=True, Paused=False, Pid=ev["pid"], StartedAt=ev["started_at"], ExitCode=0, Error="", OOMKilled=False)
            self._save_event(rec)
            self._publish_wiring(rec, "connect", "mount")
            self.events.container(rec, "start")
        elif kind == "exited":
            self.pipes.release(rec["Id"])
            if rec.orch.exited_pid == ev.get("pid") and state["Status"] == "exited":
                return
            rec.orch.exited_pid = ev.get("pid")
            if state.get("Pid") != ev.get("pid") and ev.get("started_at"):
                state["StartedAt"] = ev["started_at"]  # a run whose start the agent never saw
            if state["Status"] != "removing":
                state["Status"] = "exited"
            state.update(Running=False, Paused=False, Pid=0, ExitCode=ev["exit_code"], FinishedAt=ev["finished_at"], OOMKilled=bool(ev.get("oom_killed")), Error=ev.get("error", ""))
            self._save_event(rec)
            self.events.container(rec, "die", exitCode=ev["exit_code"])
            self._release_network(rec["Id"])
            self._publish_wiring(rec, "disconnect", "unmount")
            if rec["HostConfig"].get("AutoRemove") and state["Status"] == "exited" and self.nursery is not None:
                self.nursery.start_soon(self._auto_remove, rec["Id"])
        elif kind == "exec_exited":
            self.events.container(rec, "exec_die", execID=ev.get("exec_id", ""), exitCode=ev.get("exit_code", 0))
            return
        elif kind == "start_failed":
            state.update(ExitCode=ev.get("exit_code", 125), Error=ev.get("message", ""))
            self.save(rec, durable=False)
            if rec["HostConfig"].get("AutoRemove") and self.nursery is not None:
                self.nursery.start_soon(self._auto_remove, rec["Id"])
        supervision.after_event(self, rec, kind)

    def _save_event(self, rec: dict) -> None:
        """A start or an exit the supervisor reported. The file is written without fsync (a
        reboot ends every container, and adoption derives both facts again from the
        supervisor), and not at all for `--rm` containers, which are about to be removed."""
        if rec["HostConfig"].get("AutoRemove"):
            self.notify()
        else:
            self.save(rec, durable=False)

    async def _auto_remove(self, cid: str) -> None:
        rec = self.records.get(cid)
        if rec is None or rec["State"]["Status"] in ("running", "paused", "removing"):
            return
        try:
            await self.remove(rec, force=True, volumes=True)
        except OrchError as err:
            print(f"agent: auto-remove of {cid[:12]}: {err}", file=sys.stderr, flush=True)

    # -- operations -----------------------------------------------------------------------------
    async def create(self, req) -> dict:
        """A new container from an image: its record, config.json and rootfs, not started."""
        taken = {r["Name"].lstrip("/") for r in self.records.values()} | self.reserved
        if req.name:
            name = naming.check_name(req.name)
            if name in taken:
                other = next((cid for cid, r in self.records.items() if r["Name"] == "/" + name), "")
                raise AlreadyExists(f'the container name "/{name}" is already in use by container {other[:12] or "being created"}; remove it or pick another name')
        else:
            name = naming.random_name(taken)
        cid = secrets.token_hex(32)
        self.reserved.add(name)
        try:
            rec = await trio.to_thread.run_sync(self._build, cid, name, req)
        finally:
            self.reserved.discard(name)
        self.records[cid] = rec
        self.notify()
        self.events.container(rec, "create")
        return rec

    def _build(self, cid: str, name: str, req) -> dict:
        from orch.node.agent.create import build_container

        try:
            return build_container(self, cid, name, req)
        except BaseException:
            self._discard(cid)
            raise

    def _discard(self, cid: str) -> None:
        if self.images is not None:
            try:
                self.images.remove_snapshot(cid)
            except (OrchError, OSError):
                pass
        self.store.delete(cid)

    async def start(self, rec: dict, by_policy: bool = False) -> None:
        if not by_policy:
            supervision.cancel_restart(self, rec)
            supervision.on_user_start(rec)
        if self.change(rec, "start") == "running" and rec["State"]["Status"] in ("running",):
            return  # docker: starting a running container does nothing
        from orch.node.agent import wiring

        await trio.to_thread.run_sync(wiring.setup_network, self, rec)
        answer = await self.call(dict(self._start_message(rec), open_stdin=bool(rec["Config"].get("OpenStdin"))))
        pid = answer["pid"]
        # The started event may not have arrived yet on the other connection; wait for it so
        # that `start` returns a running container (or one that already exited again).
        await self.wait_until(lambda: rec["State"].get("Pid") == pid or rec.orch.exited_pid == pid or rec["Id"] not in self.records, 10)

    def _start_message(self, rec: dict) -> dict:
        return {"op": "start", "id": rec["Id"], "config": self.store.config_path(rec["Id"]), "log": rec.orch.log.model_dump()}

    async def start_attached(self, rec: dict, roles: list[str], fds: list[int], tty_size=None):
        """Start `rec` with a client's descriptors as its stdio (`roles`: "stdin", "stdout",
        "stderr", or "tty"), as `orch run` does; return the supervisor connection, on which
        the exit event comes. The network was set up by `create` (or the caller), just before."""
        supervision.cancel_restart(self, rec)
        supervision.on_user_start(rec)
        self.change(rec, "start")
        # A container made with an open stdin that no client feeds keeps it open (a pipe the
        # supervisor holds), as in `docker start -a` of a container created with -i.
        msg = dict(self._start_message(rec), attach=roles, open_stdin=bool(rec["Config"].get("OpenStdin")))
        return await self._attach(msg, fds, tty_size, "start")

    async def exec_attached(self, rec: dict, process: dict, roles: list[str], fds: list[int], tty_size=None, exec_id=None,
                            answer: dict | None = None):
        """Run `process` (exec_process's) in running container `rec` with a client's
        descriptors; return the supervisor connection, on which its exit event comes.
        `exec_id` names the process (docker's exec id, for a later resize); `answer`, when
        given, gets the supervisor's answer ({"pid", "exec_id"})."""
        exec_id = self._exec_events(rec, process, exec_id)
        msg = {"op": "exec", "id": rec["Id"], "process": process, "attach": roles, "exec_id": exec_id}
        return await self._attach(msg, fds, tty_size, "exec", answer)

    def _exec_events(self, rec: dict, process: dict, exec_id: str | None = None) -> str:
        """A new exec's id (unless given) and docker's exec_create and exec_start events
        (exec_die follows from the supervisor's exec_exited)."""
        exec_id = exec_id or secrets.token_hex(32)
        command = " ".join(process.get("args") or ())
        self.events.container(rec, f"exec_create: {command}", execID=exec_id)
        self.events.container(rec, f"exec_start: {command}", execID=exec_id)
        return exec_id

    async def attach_running(self, rec: dict, roles: list[str], fds: list[int], tty_size, detach_keys: bytes):
        """Join running container `rec`'s stdio with a client's descriptors (docker attach);
        return the supervisor connection, on which its exit, or "detached", comes."""
        msg = {"op": "attach", "id": rec["Id"], "attach": roles, "detach_keys": list(detach_keys)}
        return await self._attach(msg, fds, tty_size, "attach")

    async def _attach(self, msg: dict, fds: list[int], tty_size, op: str, answer: dict | None = None):
        import array

        if tty_size:
            msg["tty_size"] = list(tty_size)
        sock = trio.socket.socket(trio.socket.AF_UNIX, trio.socket.SOCK_SEQPACKET)
        try:
            await sock.connect(self.sup_path)
            await sock.sendmsg([proto.encode(msg)], [(trio.socket.SOL_SOCKET, trio.socket.SCM_RIGHTS, array.array("i", fds))])
            data = await sock.recv(proto.MAX_MESSAGE)
            reply = proto.decode(data) if data else None
            proto.raise_for_program(reply, op)
        except BaseException:
            sock.close()
            raise
        if answer is not None:
            answer.update(reply or {})
        return sock

    async def exec_detached(self, rec: dict, process: dict, exec_id: str | None = None) -> str:
        """`exec -d`: the process runs on its own, its output goes nowhere (as docker's)."""
        exec_id = self._exec_events(rec, process, exec_id)
        answer = await self.call({"op": "exec", "id": rec["Id"], "process": process, "detach": True, "exec_id": exec_id})
        return answer.get("exec_id", "")

    async def kill(self, rec: dict, sig: int) -> None:
        self.change(rec, "kill")
        supervision.on_user_stop(rec)
        await self._signal(rec, sig)

    async def _signal(self, rec: dict, sig: int) -> None:
        try:
            # The config lets a SIGKILL reach every process of the cgroup even when the
            # supervisor does not track the container (supervisor.op_kill).
            await self.call({"op": "kill", "id": rec["Id"], "signal": sig, "config": self.store.config_path(rec["Id"])})
        except OrchError:
            return  # it exited meanwhile
        self.events.container(rec, "kill", signal=sig)
        if rec["State"]["Status"] == "paused":
            # A frozen process handles no signal, not even SIGKILL, until it is thawed.
            await self._freezer(rec, "thaw")

    async def stop(self, rec: dict, timeout: float | None, *, event: bool = True) -> None:
        self.change(rec, "stop")
        supervision.cancel_restart(self, rec)
        supervision.on_user_stop(rec)
        if rec["State"]["Status"] not in ("running", "paused"):
            self.save(rec)
            return
        stop_signal = _signal_number(rec["Config"].get("StopSignal") or "SIGTERM")
        if timeout is None:
            timeout = rec["Config"].get("StopTimeout")
        timeout = 10 if timeout is None else timeout
        pid = rec["State"]["Pid"]
        gone = lambda: rec["State"]["Status"] not in ("running", "paused") or rec["State"]["Pid"] != pid  # noqa: E731
        if timeout >= 0:
            await self._signal(rec, stop_signal)
            if await self.wait_until(gone, timeout):
                if event:
                    self.events.container(rec, "stop")
                return
        await self._signal(rec, signals.SIGKILL)
        if not await self.wait_until(gone, 30):
            raise SystemFailure(f"container {self.display(rec)} did not exit 30 seconds after SIGKILL")
        if event:
            self.events.container(rec, "stop")

    async def restart(self, rec: dict, timeout: float | None) -> None:
        self.change(rec, "restart")
        await self.stop(rec, timeout)
        await self.start(rec)
        self.events.container(rec, "restart")

    async def pause(self, rec: dict) -> None:
        rec["State"]["Status"] = self.change(rec, "pause")
        await self._freezer(rec, "freeze")
        rec["State"]["Paused"] = True
        self.save(rec)
        self.events.container(rec, "pause")

    async def unpause(self, rec: dict) -> None:
        rec["State"]["Status"] = self.change(rec, "unpause")
        await self._freezer(rec, "thaw")
        rec["State"]["Paused"] = False
        self.save(rec)
        self.events.container(rec, "unpause")

    async def _freezer(self, rec: dict, what: str) -> None:
        path = rec.orch.cgroup
        await trio.to_thread.run_sync(lambda: getattr(self.cgroups(), what)(path))

    def cgroups(self):
        if self._cgroups is None:
            from orch.node.runtime.cgroups import Cgroups

            self._cgroups = Cgroups()
        return self._cgroups

    async def remove(self, rec: dict, force: bool = False, volumes: bool = False) -> None:
        """docker rm: the record and directory go at once (one rename); the container's
        snapshot and files are deleted right after, in a worker thread."""
        self.change(rec, "force_remove" if force else "remove")
        if rec["State"]["Status"] in ("running", "paused"):
            await self.stop(rec, -1, event=False)  # straight to SIGKILL, as `docker rm -f` (a kill, no stop event)
        cid = rec["Id"]
        try:
            self.store.discard(cid)
        except OSError as err:
            rec["State"].update(Status="dead", Dead=True, Error=f"removal failed: {err}")
            self.save(rec)
            raise SystemFailure(f"cannot remove container {self.display(rec)}: {err.strerror}") from None
        self.records.pop(cid, None)
        self.notify()
        self._release_network(cid)
        self.events.container(rec, "destroy")
        anonymous = []
        if volumes:
            from orch.node.agent.wiring import anonymous_volumes

            anonymous = anonymous_volumes(self, rec)
        if self.nursery is not None:
            self.nursery.start_soon(trio.to_thread.run_sync, self._cleanup_removed, cid, anonymous)
        else:
            await trio.to_thread.run_sync(self._cleanup_removed, cid, anonymous)

    async def drain(self, rec: dict, grace: float | None) -> str:
        """Until the container's clients are gone (orch.node.agent.drain), at most `grace`."""
        from orch.node.agent.drain import drain_container

        return await drain_container(self, rec, grace)

    def _publish_wiring(self, rec: dict, network_action: str, volume_action: str) -> None:
        """docker's network connect/disconnect and volume mount/unmount events of a container
        that starts or exits (its bridge and overlay networks; orch's none and host are no objects)."""
        cid = rec["Id"]
        if self.net is not None and (rec.orch.net or {}).get("mode") == "bridge":
            for entry in rec.orch.net["networks"]:
                try:
                    n = self.net.nets.get(entry["name"])
                except OrchError:
                    continue
                self.events.publish("network", network_action, n.id, {"container": cid, "name": n.name, "type": n.driver})
        for e in rec.orch.mounts or ():
            if e.get("type") != "volume" or not e.get("source"):
                continue
            attrs = {"container": cid, "driver": "local"}
            if volume_action == "mount":
                attrs.update({"destination": e["target"], "propagation": "", "read/write": str(not e.get("read_only")).lower()})
            self.events.publish("volume", volume_action, e["source"], attrs)

    def _release_network(self, cid: str) -> None:
        """Done at once in this thread (~25 ms): a start that follows must find it released."""
        if self.net is not None:
            try:
                self.net.release(cid)
            except OrchError as err:
                print(f"agent: releasing the network of {cid[:12]}: {err}", file=sys.stderr, flush=True)

    def _cleanup_removed(self, cid: str, volumes=()) -> None:
        for name in volumes:
            try:
                self.volumes.remove(name, force=True)
            except (OrchError, OSError) as err:
                print(f"agent: removing volume {name} of {cid[:12]}: {err}", file=sys.stderr, flush=True)
        if self.images is not None:
            try:
                self.images.remove_snapshot(cid)
            except (OrchError, OSError) as err:
                print(f"agent: removing the snapshot of {cid[:12]}: {err}", file=sys.stderr, flush=True)
        self.store.empty_trash()

    async def wait(self, rec: dict, condition: str) -> int:
        cid, exited = rec["Id"], rec.orch.exited_pid
        if condition == "removed":
            await self.wait_until(lambda: cid not in self.records)
        elif condition == "next-exit":
            # The next exit applied after this call: of the run going on, or of one not yet
            # started (docker's client waits so before it starts a container).
            await self.wait_until(lambda: cid not in self.records or (rec.orch.exited_pid != exited and rec["State"]["Status"] == "exited"))
        else:  # not-running
            await self.wait_until(lambda: cid not in self.records or rec["State"]["Status"] not in ("running", "paused"))
        return rec["State"].get("ExitCode", 0)

    def task_files(self, task_id: str) -> Path:
        """A directory for a cluster task's secrets and configs, on a tmpfs of the node's own
        (ORCH_RUN/task-files, mounted on first use; 0700, no exec, no devices), so that a
        secret never touches a disk. Blocking: call it from a worker thread."""
        import os

        base = self.run_dir / "task-files"
        if not os.path.ismount(base):
            from orch.node.runtime.kernel import LinuxSyscalls

            base.mkdir(mode=0o700, parents=True, exist_ok=True)
            LinuxSyscalls().mount("tmpfs", str(base), "tmpfs", ("MS_NOSUID", "MS_NODEV", "MS_NOEXEC"), "mode=0700,size=64m")
        path = base / task_id
        path.mkdir(mode=0o700, exist_ok=True)
        return path

    def remove_task_files(self, task_id: str) -> None:
        import shutil

        shutil.rmtree(self.run_dir / "task-files" / task_id, ignore_errors=True)

    def release_task_files(self) -> None:
        """Unmount the tasks' tmpfs (the node left its cluster): what was on it is gone."""
        import os

        base = self.run_dir / "task-files"
        if os.path.ismount(base):
            from orch.node.runtime.kernel import LinuxSyscalls

            LinuxSyscalls().umount2(str(base), 2)  # MNT_DETACH
        try:
            base.rmdir()
        except OSError:
            pass

    async def log_lines(self, rec, *, follow: bool = False, tail: int | None = None, since: float | None = None):
        """The container's json-file log as JSON lines ({"log", "stream", "time"}), for orch.sock's
        route and the cluster's worker: the entries logstream chooses by docker's rules (the last
        `tail`, from `since`), then, with `follow`, what is appended until the container is no
        longer running and the file is drained (across rotations)."""
        import json

        from orch.node.agent.logstream import entries

        async for entry in entries(self, rec, follow=follow, tail=tail, since=since):
            yield json.dumps(entry) + "\n"

    async def top(self, rec: dict, ps_args: str = "-ef") -> dict:
        if rec["State"]["Status"] not in ("running", "paused"):
            raise Conflict(f"container {self.display(rec)} is not running; start it first")
        path = rec.orch.cgroup
        pids = set(await trio.to_thread.run_sync(lambda: self.cgroups().pids(path)))
        out = (await trio.run_process(["ps", *ps_args.split()], capture_stdout=True)).stdout.decode()
        lines = out.splitlines()
        titles = lines[0].split()
        pid_col = titles.index("PID")
        rows = []
        for line in lines[1:]:
            fields = line.split(None, len(titles) - 1)
            if len(fields) == len(titles) and fields[pid_col].isdigit() and int(fields[pid_col]) in pids:
                rows.append(fields)
        return {"Titles": titles, "Processes": rows}

    def exec_process(self, rec: dict, req) -> dict:
        """The Process an `exec` runs: the container's own env, user and dir, with overrides."""
        self.change(rec, "exec")
        import json

        from orch.node.runtime.config import Process, merge_env

        if req.user:
            from orch.node.runtime.users import check_user

            check_user(req.user)
        with open(self.store.config_path(rec["Id"])) as f:
            base = Process.from_json(json.load(f)["process"])
        env = merge_env(list(base.env), list(req.env))
        if req.tty and not any(e.startswith("TERM=") for e in env):
            env.append("TERM=xterm")
        cwd = req.workdir or base.cwd
        if not cwd.startswith("/"):
            raise InvalidArgument(f"working directory {cwd!r} is not absolute; use a path that starts with /")
        proc = Process(args=tuple(req.cmd), env=tuple(env), cwd=cwd, user=req.user if req.user is not None else base.user,
                       additional_groups=base.additional_groups, terminal=req.tty, capabilities=base.capabilities,
                       no_new_privileges=base.no_new_privileges, rlimits=base.rlimits)
        return proc.to_json()

    def image_in_use(self, image_id: str) -> list[str]:
        """Names of the containers made from an image (the image store's `rmi` asks; it runs
        in a worker thread, so it reads a copy of the records)."""
        return [self.display(r) for r in list(self.records.values()) if r["Image"] == image_id]


def _signal_number(sig) -> int:
    if isinstance(sig, int) or str(sig).isdigit():
        return int(sig)
    name = str(sig).upper()
    name = name if name.startswith("SIG") else "SIG" + name
    try:
        return int(getattr(signals.Signals, name))
    except AttributeError:
        raise InvalidArgument(f"invalid signal: {sig}; use a name such as SIGTERM or a number") from None
