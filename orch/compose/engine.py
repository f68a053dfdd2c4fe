"""The executor of `orch compose`: images, networks and volumes, then observe → plan → apply.

The deciding is the pure `orch.scheduler.reconcile.plan_reconcile`, driven by the one converge
loop (`orch.scheduler.converge`); this module carries plans out against the agent's API (the
loop's node is `AgentNode`) and reports in docker compose's words (" ✔ Container
web-redis-1  Started"). Actions of one stage run in parallel (a thread each: every action is
a few blocking HTTP calls on the agent's socket), and a stage finishes before the next starts,
which is the contract of `Plan` (orch/scheduler/README.md). A stage of plain removals (`down`)
is one request, POST /containers/remove, which the agent carries out side by side: twenty
requests cost the agent ~50 ms of HTTP handling that one does not.

The loop is level-triggered, like the reconciler: after applying, it observes again and plans
again, until the plan is settled (converged, or only the agent's own supervision is left: a
restart back-off, which the loop leaves to the agent, orch.node.agent.supervision). An
interrupted `up` therefore needs no repair: the next one sees what is there.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from orch.api.labels import START_DRAINED
from orch.client import quoted
from orch.compose import translate as t
from orch.compose.observe import list_records, observed_from_records
from orch.errors import Conflict, InvalidArgument, NotFound, OrchError, from_kind
from orch.scheduler.model import NOTICE_ROLLED_BACK, ObservedState, Plan, ReconcileOptions

MAX_PARALLEL = 32
POLL = 0.1
# The pull events that end a layer: compose prints these under the image's Pulling line.
LAYER_DONE = ("Pull complete", "Already exists")


class Reporter:
    """docker compose's progress lines, one per finished step (safe from many threads)."""

    def __init__(self, out=None, quiet: bool = False):
        self.out = out or sys.stderr
        self.quiet = quiet
        self.lock = threading.Lock()
        self.seen: set = set()

    def done(self, kind: str, name: str, status: str) -> None:
        self._line(f" ✔ {kind} {name:<28} {status}")

    def failed(self, kind: str, name: str, message: str) -> None:
        self._line(f" ✘ {kind} {name:<28} Error: {message}", force=True)

    def once(self, text: str) -> None:
        with self.lock:
            if text in self.seen:
                return
            self.seen.add(text)
        self._line(text)

    def _line(self, text: str, force: bool = False) -> None:
        if self.quiet and not force:
            return
        with self.lock:
            print(text, file=self.out, flush=True)


class Stack:
    def __init__(self, client, project, *, reporter: Reporter | None = None, environ=None):
        self.client = client
        self.project = project
        self.name = project.name
        self.report = reporter or Reporter()
        self.environ = dict(os.environ if environ is None else environ)
        self.image_ids: dict[str, str] = {}
        self.rolled_back: dict[str, str] = {}
        self.draining = False  # up drains replicas it removes; down does not need to
        self.stop_timeout: float | None = None  # down -t: overrides each container's grace period
        self._serving: set[str] = set()  # services with a running, ready replica (this pass)
        self._unready: set[str] = set()  # new replicas kept out of DNS until healthy
        self._cloned: dict[str, dict] = {}  # rollback sources read before their removal
        self.quiet_pull = False  # up --quiet-pull: no pull progress
        self.remembered: dict[str, dict] = {}  # updates rolled back by an earlier up (compose.memory)
        self._memory_doc: dict = {}
        self._last_observed: ObservedState | None = None

    # -- images -------------------------------------------------------------------------------
    def resolve_images(self, services=None, *, build: bool = False, pull: bool = False, no_build: bool = False) -> dict[str, str]:
        """Each service's image id: built when it has `build:` and is missing (or with --build),
        pulled with --pull or when missing and not buildable. With `no_build` (up --no-build)
        nothing is built: a buildable service whose image is missing is an error, as in compose,
        rather than a pull of an image that only exists as a build."""
        if build and no_build:
            raise InvalidArgument("--build and --no-build are incompatible; drop one of them")
        names = list(services or self.project.services)
        built: set[str] = set()
        for name in names:
            svc = self.project.services[name]
            if svc.build is None or svc.image in built:
                continue
            if no_build:
                if not pull and self._image_id(svc.image) is None:
                    raise NotFound(f"service {name}: image {svc.image} is missing and --no-build forbids building it; "
                                   f"run 'orch compose build {name}' first, or up without --no-build")
                continue
            if build or self._image_id(svc.image) is None:
                self.build_service(name)
                built.add(svc.image)
        for name in names:
            svc = self.project.services[name]
            if not svc.image:
                raise InvalidArgument(f"service {name} has neither image nor build; give it one of them")
            image_id = None if (pull and svc.image not in built) else self._image_id(svc.image)
            if image_id is None:
                self.pull(svc.image, name)
                image_id = self._image_id(svc.image)
                if image_id is None:
                    raise NotFound(f"image {svc.image} of service {name} is still missing after the pull")
            self.image_ids[name] = image_id
        return self.image_ids

    def _image_id(self, ref: str) -> str | None:
        try:
            return self.client.call("GET", f"/images/{quoted(ref, safe='/:@')}/json")["Id"]
        except NotFound:
            return None

    def build_service(self, name: str) -> str:
        import json

        svc = self.project.services[name]
        b = svc.build
        context = b.context if os.path.isabs(b.context) else os.path.join(str(self.project.project_dir), b.context)
        body = {"context": context, "tags": [svc.image]}
        if b.dockerfile:
            body["dockerfile"] = b.dockerfile if os.path.isabs(b.dockerfile) else os.path.join(context, b.dockerfile)
        if b.args:
            body["build_args"] = {k: v for k, v in b.args.items() if v is not None}
        if b.target:
            body["target"] = b.target
        if b.labels:
            body["labels"] = dict(b.labels)
        self.report.once(f" ⠿ Service {name:<30} Building")
        image_id = None
        buf = b""
        for chunk in self.client.stream("POST", "/build", body):
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if not line.strip():
                    continue
                msg = json.loads(line)
                if "error" in msg:
                    from orch.errors import from_kind

                    raise from_kind(msg.get("kind", "error"), f"building service {name}: {msg['error']}")
                if "stream" in msg and not self.report.quiet:
                    text = msg["stream"].rstrip("\n")
                    if text:
                        print(f"   {name}  {text}", file=self.report.out, flush=True)
                if "aux" in msg:
                    image_id = msg["aux"].get("ID")
        self.report.done("Service", name, "Built")
        return image_id or ""

    def pull(self, ref: str, service: str) -> None:
        """Pull `ref` through the agent. Progress (the Pulling line and one line per layer as it
        completes, as compose nests them under the image) is left out with up --quiet-pull;
        the result line and errors are not progress and stay."""
        import json

        if not self.quiet_pull:
            self.report.once(f" ⠿ Image {ref:<32} Pulling")
        try:
            buf = b""
            for chunk in self.client.stream("POST", "/images/pull", {"ref": ref}):
                buf += chunk
                *lines, buf = buf.split(b"\n")
                for line in lines:
                    event = json.loads(line) if line.strip() else {}
                    if "error" in event:
                        # Errors travel in-band in a pull's stream, as in docker's.
                        from orch.errors import from_kind

                        raise from_kind(event.get("kind", "error"), event["error"])
                    if not self.quiet_pull and event.get("id") and not event.get("progressDetail") and event.get("status") in LAYER_DONE:
                        self.report.once(f"   ✔ {event['id']} {event['status']}")
        except OrchError as err:
            raise NotFound(f"image {ref} of service {service} is not on this node and could not be pulled ({err}); "
                           "bootstrap or build it first (orch bootstrap, or give the service a build:)") from None
        self.report.done("Image", ref, "Pulled")

    # -- networks and volumes ---------------------------------------------------------------------
    def ensure_resources(self, services=None) -> None:
        used_nets, used_vols = set(), set()
        for name in services or self.project.services:
            svc = self.project.services[name]
            if not svc.network_mode:
                used_nets.update(svc.networks or {"default": None})
            for v in svc.volumes or ():
                if v.type == "volume" and v.source:
                    used_vols.add(v.source)
        for key in sorted(used_nets):
            net = self.project.networks.get(key)
            net_name = net.name if net is not None and net.name else f"{self.name}_{key}"
            self._ensure_network(key, net_name, net)
        for key in sorted(used_vols):
            vol = self.project.volumes.get(key)
            if vol is None:
                continue  # a bind written as a volume source; the spec checks references
            self._ensure_volume(key, vol.name or f"{self.name}_{key}", vol)

    def _ensure_network(self, key, name, net) -> None:
        try:
            self.client.call("GET", f"/networks/{quoted(name)}")
            return
        except NotFound:
            if net is not None and net.external:
                raise NotFound(f"network {name} is declared external but does not exist; create it with 'orch network create {name}'") from None
        body = {"name": name, "labels": {t.PROJECT: self.name, t.NETWORK: key, **(dict(net.labels or {}) if net else {})},
                "internal": bool(net and net.internal), "options": dict((net.driver_opts or {}) if net else {})}
        config = (net.ipam.config or []) if net is not None and net.ipam else []
        if config:
            if config[0].subnet:
                body["subnet"] = config[0].subnet
            if config[0].gateway:
                body["gateway"] = config[0].gateway
        try:
            self.client.call("POST", "/networks/create", body)
        except Conflict:
            return  # made meanwhile by a parallel up
        self.report.done("Network", name, "Created")

    def _ensure_volume(self, key, name, vol) -> None:
        try:
            self.client.call("GET", f"/volumes/{quoted(name)}")
            return
        except NotFound:
            if vol.external:
                raise NotFound(f"volume {name} is declared external but does not exist; create it with 'orch volume create {name}'") from None
        self.client.call("POST", "/volumes/create", {"name": name, "labels": {t.PROJECT: self.name, t.VOLUME: key, **dict(vol.labels or {})},
                                                     "driver_opts": dict(vol.driver_opts or {})})
        self.report.done("Volume", name, "Created")

    # -- observe, plan, apply -------------------------------------------------------------------
    def records(self, service: str | None = None) -> list[dict]:
        return list_records(self.client, self.name, service)

    def observe(self) -> ObservedState:
        observed = observed_from_records(self.name, self.records())
        self._last_observed = observed
        rolled_back = {name: entry["hash"] for name, entry in self.remembered.items()} | self.rolled_back
        if rolled_back:
            observed = ObservedState(observed.project, observed.containers, rolled_back=rolled_back)
        return observed

    def recall(self, desired, options: ReconcileOptions, *, report: bool = True, persist: bool = True) -> None:
        """Read the updates earlier `up`s rolled back (orch.compose.memory) before planning;
        drop the entries the stack file or --force-recreate made obsolete (on the node too,
        with `persist`; `plan` only looks)."""
        from orch.compose import memory

        doc = memory.load(self.client, self.name)
        forced = set(options.services or desired.services) if options.force_recreate else set()
        hashes = {name: svc.config_hash for name, svc in desired.services.items()}
        self.remembered = memory.compute_remembered(doc, hashes, forced)
        self._memory_doc = dict(doc, rolled_back=dict(self.remembered))
        if persist and self.remembered != (doc.get("rolled_back") or {}):
            memory.save(self.client, self.name, self._memory_doc)
        selected = set(options.services or desired.services)
        for name, entry in sorted(self.remembered.items()):
            if report and name in selected:
                self.report.once(f" ! Service {name:<30} Rolled back: {memory.describe(name, entry)}")

    def _remember(self, action) -> None:
        from orch.compose import memory

        entry = {"hash": action.config_hash, "reason": action.reason, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._memory_doc = dict(self._memory_doc, rolled_back={**(self._memory_doc.get("rolled_back") or {}), action.service: entry})
        memory.save(self.client, self.name, self._memory_doc)

    def desired(self):
        from orch.scheduler.desired import desired_from_project

        # Services this command did not resolve are not planned (ReconcileOptions.services);
        # they still need an entry to be part of the graph.
        ids = {name: self.image_ids.get(name, "unresolved") for name in self.project.services}
        return desired_from_project(self.project, image_ids=ids)

    def apply(self, plan: Plan) -> None:
        """Carry out a plan's actions, stage by stage; raise the first failure after its stage."""
        stages: dict[int, list] = {}
        for action in plan.actions:
            stages.setdefault(action.stage, []).append(action)
        for stage in sorted(stages):
            actions = stages[stage]
            errors = []
            if len(actions) > 1 and not self.draining and all(a.kind == "remove" for a in actions):
                self._remove_many(actions, errors)
            elif len(actions) == 1:
                self._run_one(actions[0], errors)
            else:
                with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(actions))) as pool:
                    list(pool.map(lambda a: self._run_one(a, errors), actions))
            if errors:
                raise errors[0]

    def _remove_many(self, actions, errors: list) -> None:
        """A stage of removals without draining (`down`): one request for all of them, which
        the agent carries out side by side (POST /containers/remove), instead of one each."""
        body = {"ids": [a.target for a in actions], "stop": True, "force": True, "t": self.stop_timeout}
        answer = self.client.call("POST", "/containers/remove", body)
        failed = {e["id"]: e for e in answer.get("errors") or ()}
        for a in actions:
            if a.target in failed:
                err = from_kind(failed[a.target]["kind"], failed[a.target]["message"])
                self.report.failed("Container", a.name or a.service, str(err))
                errors.append(err)
            else:
                self.report.done("Container", a.name, "Removed")

    def _run_one(self, action, errors: list) -> None:
        try:
            self.perform(action)
        except OrchError as err:
            self.report.failed("Container", action.name or action.service, str(err))
            errors.append(err)

    def perform(self, a) -> None:
        c = self.client
        if a.kind == "create":
            self._create(a)
            self.report.done("Container", a.name, "Started")
        elif a.kind == "recreate":
            if a.clone_from:
                self._cloned[a.clone_from] = self.client.call("GET", f"/containers/{a.clone_from}/json")
            self._remove(a.target)
            self._create(a)
            self.report.done("Container", a.name, "Recreated")
        elif a.kind == "start":
            c.call("POST", f"/containers/{a.target}/start")
            self.report.done("Container", a.name, "Started")
        elif a.kind == "restart":
            c.call("POST", f"/containers/{a.target}/restart")
            self.report.done("Container", a.name, "Restarted")
        elif a.kind == "stop":
            c.call("POST", f"/containers/{a.target}/stop")
            self.report.done("Container", a.name, "Stopped")
        elif a.kind == "remove":
            self._remove(a.target, drain=self.draining, name=a.name)
            self.report.done("Container", a.name, "Removed")
        elif a.kind == "rollback":
            self.rolled_back[a.service] = a.config_hash
            self._remember(a)
            self.report.once(f" ! Service {a.service:<30} Rolled back: {a.reason}")

    def _create(self, a) -> None:
        svc = self.project.services[a.service]
        if a.clone_from:
            from orch.compose.clone import clone_body

            body = clone_body(self._cloned.get(a.clone_from) or self.client.call("GET", f"/containers/{a.clone_from}/json"),
                              name=a.name, number=a.number)
            joins = self.network_container_of(a.service)
            if joins:  # the old configuration's owner may have been replaced since
                body["network_mode"] = f"container:{joins}"
        else:
            joins = self.network_container_of(a.service)
            body = t.compute_create_body(self.project, a.service, svc, number=a.number, config_hash=a.config_hash,
                                         image=svc.image, os_environ=self.environ, cname=a.name,
                                         network_container=joins)
        # A replica that joins others that serve: unnamed in DNS until it is healthy.
        drained = self.draining and svc.healthcheck is not None and a.service in self._serving
        labels = {k: v for k, v in (body.get("labels") or {}).items() if k != START_DRAINED}  # a clone's too
        body["labels"] = {**labels, START_DRAINED: "true"} if drained else labels
        created = self.client.call("POST", "/containers/create", body)
        if drained:
            self._unready.add(created["Id"])
        self.client.call("POST", f"/containers/{created['Id']}/start")

    def network_container_of(self, service: str) -> str | None:
        """The container a network_mode: service:X service joins (compose's container:<id>), or
        None for other services."""
        svc = self.project.services[service]
        if not (svc.network_mode or "").startswith("service:"):
            return None
        return self._network_container(service, svc)

    def _network_container(self, service: str, svc) -> str | None:
        """network_mode: service:X: the container of X to join, as compose picks it: the
        lowest-numbered one that runs (the reconciler starts this service only after X's)."""
        other = svc.network_mode.removeprefix("service:")
        observed = self._last_observed or self.observe()
        mine = sorted((c for c in observed.containers if c.service == other and not c.one_off), key=lambda c: (not c.running, c.number))
        if not mine:
            raise InvalidArgument(f"service {service}: network_mode service:{other} needs a container of service {other}; "
                                  f"start {other} first (orch compose up {other})")
        return mine[0].id

    def _name_ready(self, observed) -> None:
        """Give DNS names back to drained new replicas that turned healthy."""
        for c in observed.containers:
            if c.id in self._unready and c.health == "healthy":
                try:
                    self.client.call("POST", f"/containers/{c.id}/drain?undo=1")
                except NotFound:
                    pass  # removed meanwhile
                self._unready.discard(c.id)

    def _remove(self, target: str, *, drain: bool = False, name: str | None = None) -> None:
        """Stop gracefully (the container's stop signal and grace period), then remove: one
        request (`DELETE ?stop=1`), so a stack of twenty goes in twenty requests, not forty.

        With `drain` (a replica replaced while others serve) the network DNS first stops
        answering with its address, and the node waits until no client holds a connection to
        it and none arrives for a moment, at most its stop_grace_period (orch.compose.drain):
        no client sees a failed request."""
        if drain:
            from orch.compose.drain import drain_replica

            drain_replica(self.client, target, name or target, self.report)
        query = "" if self.stop_timeout is None else f"&t={self.stop_timeout:g}"
        try:
            self.client.call("DELETE", f"/containers/{target}?stop=1&force=1{query}")
        except NotFound:
            pass

    def converge(self, options: ReconcileOptions, *, wait: bool = False, timeout: float | None = None, node=None) -> int:
        """Run the converge loop until the stack is settled; 0, or 1 when a service failed
        (or runs a rolled back configuration). With `wait` (up --wait), also until every
        container runs, healthy if it has a check. `node`: the loop's view of the node and its
        clock, AgentNode unless a test gives one on a mock clock."""
        from orch.scheduler.converge import converge

        node = node or AgentNode(self)
        desired = self.desired()
        self.recall(desired, options)
        selected = set(options.services or desired.services)
        self.draining = True
        deadline = None if timeout is None else node.now() + timeout
        for p in converge(desired, node, options=options):
            self._name_ready(p.observed)
            self._serving = {c.service for c in p.observed.containers if c.running and c.health in ("none", "healthy")}
            for notice in p.plan.warnings:
                if not (notice.kind == NOTICE_ROLLED_BACK and notice.service in self.remembered):
                    self.report.once(f"WARN[0000] {notice}")  # (a remembered rollback has its own line)
            if p.todo:
                continue
            if p.plan.failed:
                for w in p.plan.failed:
                    self.report.failed("Service", w.service, w.reason)
                return 1
            if p.settled:
                if not p.acted:
                    for c in p.observed.containers:
                        if not c.one_off and c.service in selected and c.running:
                            self.report.done("Container", c.name, "Running")
                if self.rolled_back or selected & set(self.remembered):
                    # The stack runs, but not as the file says: a failed update was rolled back
                    # (by this up, or by an earlier one whose file is still the same).
                    return 1
                if not wait:
                    return 0
                verdict = _health_verdict(p.observed, desired, options)
                if verdict == "ok":
                    for c in p.observed.containers:
                        if c.health == "healthy":
                            self.report.once(f" ✔ Container {c.name:<28} Healthy")
                    return 0
                if verdict != "wait":
                    self.report.failed("Service", verdict.split(":")[0], verdict)
                    return 1
            else:
                for w in p.plan.waiting:
                    self.report.once(f" ⠿ Service {w.service:<30} Waiting: {w.reason}")
            if deadline is not None and p.now > deadline:
                self.report.failed("Stack", self.name, f"not converged after {timeout:g}s: {p.plan.summary()}")
                return 1
        return 1  # AgentNode never ends the loop itself

    def down(self, *, remove_orphans: bool = False, volumes: bool = False, rmi: str | None = None, timeout: float | None = None) -> None:
        from orch.scheduler.reconcile import plan_down

        desired = None
        try:
            desired = self.desired_without_images()
        except OrchError:
            pass
        self.stop_timeout = timeout
        self.draining = False  # the whole stack goes: nothing is left to serve in its place
        plan = plan_down(self.observe(), desired=desired, remove_orphans=remove_orphans)
        for text in plan.warnings:
            self.report.once(f"WARN[0000] {text}")
        self.apply(plan)
        from orch.compose import memory

        memory.forget(self.client, self.name)  # the stack is gone: so are its rolled back updates
        self._remove_labelled("networks", "Network")
        if volumes:
            self._remove_labelled("volumes", "Volume")
        if rmi:
            for name, svc in self.project.services.items():
                if rmi == "all" or svc.build is not None:
                    try:
                        self.client.call("DELETE", f"/images/{quoted(svc.image, safe='/:@')}")
                        self.report.done("Image", svc.image, "Removed")
                    except (NotFound, Conflict):
                        pass

    def desired_without_images(self):
        """The stack's shape for `down` (order and membership), with no image lookups."""
        from orch.scheduler.desired import desired_from_project

        return desired_from_project(self.project, image_ids={n: "-" for n in self.project.services})

    def _remove_labelled(self, kind: str, title: str) -> None:
        answer = self.client.call("GET", f"/{kind}")
        items = answer.get("Volumes") or [] if isinstance(answer, dict) else answer
        for item in items or ():
            if (item.get("Labels") or {}).get(t.PROJECT) != self.name:
                continue
            try:
                self.client.call("DELETE", f"/{kind}/{quoted(item['Name'])}")
                self.report.done(title, item["Name"], "Removed")
            except NotFound:
                pass


class AgentNode:
    """The node as the converge loop (orch.scheduler.converge) sees it: the agent's containers
    of this stack, the stack's `apply`, and the wall clock, polled."""

    def __init__(self, stack: Stack):
        self.stack = stack

    def now(self) -> float:
        return time.time()

    def observe(self) -> ObservedState:
        return self.stack.observe()

    def apply(self, plan: Plan) -> None:
        self.stack.apply(plan)

    def wait(self, until: float | None) -> bool:
        time.sleep(poll_pause(until, time.time()))
        return True


def poll_pause(until: float | None, now: float) -> float:
    """The agent sends no events to the executor: it looks again after POLL, or at the plan's
    next check when that is sooner, and at least once a second."""
    return POLL if until is None else min(max(until - now, 0.01), 1.0)


def _health_verdict(observed: ObservedState, desired, options: ReconcileOptions) -> str:
    """--wait: "ok" when every container runs (healthy if it has a check), "wait", or why not."""
    selected = set(options.services or desired.services)
    for c in observed.containers:
        if c.one_off or c.service not in selected or c.service not in desired.services:
            continue
        if not c.running:
            if c.state == "exited" and c.exit_code == 0:
                continue  # a one-shot service that completed
            return "wait" if c.state != "exited" else f"{c.service}: container {c.name} exited ({c.exit_code})"
        if c.health == "unhealthy":
            return f"{c.service}: container {c.name} is unhealthy"
        if c.health == "starting":
            return "wait"
    return "ok"
