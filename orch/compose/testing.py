"""FakeAgent: the agent's container API over a FakeNode, for unit tests of the executor.

The executor (orch.compose.engine.Stack) speaks HTTP to an agent; here the same calls land on
orch.scheduler.testing.FakeNode, which plays containers forward on a mock clock. So a test
runs the executor's real code (the converge loop, its reporting, how it performs each action,
drains, removes a stage in one request) over minutes of simulated time, with no node.

Only what the executor uses is served; any other call is not-implemented, as the agent
answers an unknown route. `calls` keeps every (method, path) in order.
"""

from __future__ import annotations

import json
import threading
import time
from urllib.parse import parse_qs, urlsplit

from orch.compose import translate as t
from orch.errors import NotFound, NotImplementedHere
from orch.scheduler.model import Action, Plan
from orch.scheduler.testing import FakeNode


def _stamp(seconds: float | None) -> str:
    if seconds is None:
        return "0001-01-01T00:00:00Z"
    whole = int(seconds // 1)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{round((seconds - whole) * 1e9):09d}Z"


class FakeAgent:
    def __init__(self, fake: FakeNode):
        self.fake = fake
        self.calls: list[tuple[str, str]] = []
        self.drained: set[str] = set()
        self.project_state: dict = {}
        self.images: dict[str, str] = {}  # image reference -> id, for GET /images/{ref}/json
        self.lock = threading.Lock()  # the executor acts in parallel threads; the FakeNode is not thread-safe

    # -- the client's interface (orch.client.Client) ------------------------------------------------
    def call(self, method: str, path: str, body=None):
        with self.lock:
            return self._call(method, path, body)

    def _call(self, method: str, path: str, body=None):
        self.calls.append((method, path))
        url = urlsplit(path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        parts = url.path.strip("/").split("/")
        if parts[0] == "containers":
            return self._containers(method, parts[1:], query, body)
        if parts[0] == "projects" and parts[2:] == ["state"]:
            if method == "GET":
                return json.loads(json.dumps(self.project_state))
            self.project_state = dict(body) if method == "PUT" else {}
            return None
        if path in ("/networks", "/volumes") and method == "GET":
            return [] if path == "/networks" else {"Volumes": []}
        if parts[0] == "images" and method == "GET" and parts[-1] == "json":
            ref = "/".join(parts[1:-1])
            if ref not in self.images:
                raise NotFound(f"no such image: {ref}")
            return {"Id": self.images[ref]}
        raise NotImplementedHere(f"the agent has no API {method} {url.path}")

    def stream(self, method: str, path: str, body=None):
        """POST /containers/{id}/drain?wait=1 (orch.compose.drain): unnamed at once, and drained
        at once (nobody is connected to a fake replica)."""
        with self.lock:
            self.calls.append((method, path))
            url = urlsplit(path)
            parts = url.path.strip("/").split("/")
            if method == "POST" and len(parts) == 3 and parts[0] == "containers" and parts[2] == "drain":
                if parts[1] not in self.fake.containers:
                    raise NotFound(f"no such container: {parts[1]}")
                self.drained.add(parts[1])
                events = [{"Status": "drained", "Reason": "quiet", "Open": 0, "Waited": 0}]
            else:
                raise NotImplementedHere(f"the agent has no API {method} {url.path}")
        for event in events:
            yield (json.dumps(event) + "\n").encode()

    # -- containers -------------------------------------------------------------------------
    def _containers(self, method, rest, query, body):
        if rest == ["json"] and method == "GET":
            self.fake.observe()  # play the node forward to now
            return [self._record(c) for c in self.fake.containers.values()]
        if rest == ["create"] and method == "POST":
            labels = body.get("labels") or {}
            action = Action("create", labels[t.SERVICE], "api", name=body["name"], number=int(labels[t.NUMBER]),
                            config_hash=labels[t.CONFIG_HASH])
            self._do(action)
            cid = next(c.id for c in self.fake.containers.values() if c.name == body["name"])
            if labels.get("orch.start-drained") == "true":
                self.drained.add(cid)
            return {"Id": cid, "Name": "/" + body["name"]}
        if rest == ["remove"] and method == "POST":
            for cid in body["ids"]:
                if cid in self.fake.containers:
                    self._do(Action("remove", self.fake.containers[cid].service, "api", target=cid))
            return {"removed": list(body["ids"]), "errors": []}
        cid, verb = rest[0], "/".join(rest[1:])
        c = self.fake.containers.get(cid)
        if c is None:
            raise NotFound(f"no such container: {cid}")
        if method == "DELETE" and not verb:
            self._do(Action("remove", c.service, "api", target=cid))
        elif method == "GET" and verb == "json":
            return self._record(c)
        elif method == "POST" and verb == "start":
            if c.state != "running":
                self._do(Action("start", c.service, "api", target=cid))
        elif method == "POST" and verb in ("restart", "stop"):
            self._do(Action(verb, c.service, "api", target=cid))
        elif method == "POST" and verb == "drain":
            (self.drained.discard if query.get("undo") else self.drained.add)(cid)
        else:
            raise NotImplementedHere(f"the agent has no API {method} /containers/{cid}/{verb}")
        return None

    def _do(self, action: Action) -> None:
        self.fake.apply(Plan(self.fake.desired.project, (action,)))

    def _record(self, c) -> dict:
        """The container in docker's inspect shape, as GET /containers/json?full=1 lists it."""
        health = None
        if c.health != "none":
            log = [{"End": _stamp(c.health_changed_at), "ExitCode": 0}] if c.health == "healthy" else []
            health = {"Status": c.health, "Log": log}
        svc = self.fake.desired.services.get(c.service)
        return {
            "Id": c.id, "Name": "/" + c.name, "Created": _stamp(c.created_at), "Image": "sha256:fake", "RestartCount": c.restart_count,
            "StoppedByUser": c.stopped_by_user,
            "State": {"Status": c.state, "Running": c.state == "running", "ExitCode": c.exit_code or 0, "Health": health,
                      "StartedAt": _stamp(c.started_at), "FinishedAt": _stamp(c.finished_at),
                      "Restarting": c.id in self.fake.restarts},
            "Config": {"Labels": {t.PROJECT: self.fake.desired.project, t.SERVICE: c.service, t.NUMBER: str(c.number),
                                  t.CONFIG_HASH: c.config_hash, t.ONEOFF: "False"}, "Env": [], "Image": "busybox"},
            "HostConfig": {"RestartPolicy": {"Name": svc.restart.mode if svc else "no", "MaximumRetryCount": 0}},
        }


class MockClockNode:
    """The converge loop's node for an executor under test: the executor observes and applies
    through FakeAgent (its own code), and time is the FakeNode's mock clock."""

    def __init__(self, stack, fake: FakeNode):
        from orch.compose.engine import AgentNode

        self.agent_node, self.fake = AgentNode(stack), fake

    def now(self) -> float:
        return self.fake.time

    def observe(self):
        return self.agent_node.observe()

    def apply(self, plan) -> None:
        self.agent_node.apply(plan)

    def wait(self, until: float | None) -> bool:
        """As AgentNode polls (engine.poll_pause), on the mock clock; straight to the node's
        next event when that comes first."""
        from orch.compose.engine import poll_pause

        target = self.fake.time + poll_pause(until, self.fake.time)
        event = self.fake.next_event()
        self.fake.time = min(target, event) if event is not None else target
        return True
